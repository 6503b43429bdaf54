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

# The code, node_modules and Deno's cache (DENO_DIR, /deno-dir/) belong to
# root; the image's `deno` user (uid 1993), which runs the service, can read
# them and owns only /data, the embedded PGlite fallback's directory. The
# service runs with --allow-write: owning /app (or the cache, which holds
# the compiled code) would let a compromised process replace the code the
# next start runs.
RUN mkdir -p /app /data && chown deno:deno /data
WORKDIR /app

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
# The base image hands /deno-dir to `deno`: it goes back to root here, with
# everything installed, readable by all.
COPY . .
RUN deno cache --frozen main.ts scripts/migrate.ts db/pglite_worker.ts \
 && chown -R root:root /deno-dir \
 && chmod -R a+rX /app /deno-dir

# Only now the runtime user: everything above was installed as root.
USER deno

EXPOSE 8080

# Exactly `deno task start` (deno.json), run directly so Deno is the process
# tini signals, with no task runner in between. fly.toml's release_command
# runs `deno task migrate` in this image before new machines start.
CMD ["deno", "run", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-sys", "main.ts"]
