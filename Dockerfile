# optionstrat-backend: the webhook service and its pipeline worker, on Fly.io.
#
# Base image: the official Deno image, Debian variant, pinned to the exact
# Deno release the code is developed and tested with: .ci/run and the README
# run `npx -y deno@2.9.6` (tests/deploy_files_test.ts fails when they drift
# apart). Debian rather than alpine or distroless: Deno's release binary is
# built against glibc (the alpine image carries a glibc shim), every npm
# package we use is plain JS/WASM so nothing needs building, and a shell is
# there for
# `fly ssh console`. The image runs /tini as PID 1, which passes Fly's
# SIGTERM on to Deno, so main.ts can drain before it exits.
# When you can reach Docker Hub, pin the digest too:
#   docker buildx imagetools inspect denoland/deno:debian-2.9.6
FROM denoland/deno:debian-2.9.6

# The image's `deno` user (uid 1993) owns the app directory, so `deno install`
# can create node_modules/ there, and the data directory for the embedded
# PGlite fallback. The source files themselves are copied as root: the
# service can read its code but not change it.
RUN mkdir -p /app /data && chown deno:deno /app /data
WORKDIR /app
USER deno

ENV DENO_NO_UPDATE_CHECK=1 \
    NODE_ENV=production \
    PORT=8080 \
    DATA_DIR=/data

# Dependencies in their own layer: rebuilt only when deno.json or deno.lock
# change. nodeModulesDir is "auto", so `deno install` fills /app/node_modules
# (and DENO_DIR, /deno-dir/) with every package deno.json imports; --frozen
# refuses to run if deno.lock does not match deno.json instead of updating it.
COPY deno.json deno.lock ./
RUN deno install --frozen

# The source (.dockerignore keeps out tests/, docs/, data/, node_modules/,
# .git and local files), then everything the two entry points load is cached
# (and the embedded database's worker, loaded by URL) so a new machine starts
# without downloading anything.
COPY . .
RUN deno cache --frozen main.ts scripts/migrate.ts db/pglite_worker.ts

EXPOSE 8080

# Exactly `deno task start` (deno.json), run directly so Deno is the process
# tini signals, with no task runner in between. fly.toml's release_command
# runs `deno task migrate` in this image before new machines start.
CMD ["deno", "run", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-sys", "main.ts"]
