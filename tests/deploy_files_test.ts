/**
 * The deploy files agree with each other and with the code: Dockerfile,
 * .dockerignore and fly.toml are read as text (Docker cannot run here) and
 * checked against deno.json, main.ts's shutdown deadline, the Deno release
 * that .ci/run and the README pin, and the module graph `deno info` reports for the two entry points.
 */
import assert from "node:assert/strict";
import { SHUTDOWN_DEADLINE_MS } from "../main.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, ROOT));

// --- Dockerfile ------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}

/** Instructions in order: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const joined = text.split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace(/\\\n/g, " ");
  return joined.split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(" ") };
    });
}

const docker = parseDockerfile(read("Dockerfile"));
const indexOf = (pred: (i: Instruction) => boolean) => docker.findIndex(pred);

/** `ENV A=1 B=2` and `ENV A 1` forms. */
function dockerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of docker.filter((i) => i.op === "ENV")) {
    if (!args.includes("=")) {
      const [key, ...value] = args.split(/\s+/);
      env[key] = value.join(" ");
      continue;
    }
    for (const [, key, value] of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      env[key] = value.replace(/^"|"$/g, "");
    }
  }
  return env;
}

// --- fly.toml: the subset of TOML it uses ------------------------------------

type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
interface TomlTable {
  [key: string]: TomlValue;
}

/** Tables, arrays of tables, and key = string | number | boolean | [strings] lines. */
function parseToml(text: string): TomlTable {
  const root: TomlTable = {};
  let current = root;
  const walk = (path: string[]) => {
    let t = root;
    for (const key of path) {
      t[key] ??= {};
      const next = t[key];
      t = (Array.isArray(next) ? next.at(-1) : next) as TomlTable;
    }
    return t;
  };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^\[\[([\w.]+)\]\]$/))) {
      const path = m[1].split(".");
      const parent = walk(path.slice(0, -1));
      const key = path.at(-1)!;
      const list = (parent[key] ??= []) as TomlTable[];
      current = {};
      list.push(current);
    } else if ((m = line.match(/^\[([\w.]+)\]$/))) {
      current = walk(m[1].split("."));
    } else if ((m = line.match(/^(\w+)\s*=\s*(.+)$/))) {
      current[m[1]] = JSON.parse(m[2]) as TomlValue;
    } else {
      throw new Error(`fly.toml: cannot read line "${raw}"`);
    }
  }
  return root;
}

const fly = parseToml(read("fly.toml"));
const table = (value: TomlValue | undefined) => value as TomlTable;
const http = table(fly.http_service);

/** "15s", "500ms", "1m" or a bare number of seconds, in ms. */
function durationMs(value: TomlValue | undefined): number {
  if (typeof value === "number") return value * 1000;
  const m = String(value).match(/^(\d+(?:\.\d+)?)(ms|s|m)$/);
  assert.ok(m, `"${value}" is not a duration`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"];
}

// --- .dockerignore, with Docker's matching rules -----------------------------

/** Patterns from the root, `*` within one path segment, a matching folder excluding its contents, `!` re-including. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text.split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const negate = line.startsWith("!");
      const pattern = (negate ? line.slice(1) : line).replace(/^\/+|\/+$/g, "");
      const source = pattern.split("").map((ch) =>
        ch === "*" ? "[^/]*" : ch === "?" ? "[^/]" : ch.replace(/[.+^${}()|[\]\\]/g, "\\$&")
      ).join("").replaceAll("[^/]*[^/]*", ".*");
      return { negate, regex: new RegExp(`^${source}$`) };
    });
  return (path) => {
    const parts = path.split("/");
    let excluded = false;
    for (const { negate, regex } of rules) {
      if (parts.some((_, i) => regex.test(parts.slice(0, i + 1).join("/")))) excluded = !negate;
    }
    return excluded;
  };
}

const ignored = dockerignore(read(".dockerignore"));

function* filesUnder(dir: URL, prefix = ""): Generator<string> {
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) yield* filesUnder(new URL(`${entry.name}/`, dir), `${path}/`);
    else if (entry.isFile) yield path;
  }
}

// --- the tests ---------------------------------------------------------------

Deno.test("the image, CI and the README's commands pin one Deno release", () => {
  const from = docker.filter((i) => i.op === "FROM");
  assert.equal(from.length, 1, "one stage");
  const image = from[0].args.split(/\s+/)[0];
  assert.doesNotMatch(image, /:latest$|^[^:]+$/, `${image} is not pinned`);
  const m = image.match(
    /^denoland\/deno:(?:(?:debian|alpine|distroless|ubuntu)-)?(\d+\.\d+\.\d+)(@sha256:[0-9a-f]{64})?$/,
  );
  assert.ok(m, `${image} is not denoland/deno:<exact version>`);
  const pinned = m[1];
  // `npx -y deno@2` would fetch whatever 2.x is newest on the day CI runs: a new
  // release's lint or type checks could fail a commit that passed here.
  const ci = [...read(".ci/run").matchAll(/npx -y deno@(\S+)/g)].map((x) => x[1]);
  assert.ok(ci.length > 0, ".ci/run does not run Deno through npx");
  assert.deepEqual(new Set(ci), new Set([pinned]), `.ci/run runs deno@${ci}, the image ${pinned}`);
  const readme = [...read("README.md").matchAll(/npx -y deno@(\S+)/g)].map((x) => x[1]);
  assert.ok(readme.length >= 2, "the README's two commands are not npx commands");
  assert.deepEqual(
    new Set(readme),
    new Set([pinned]),
    `the README runs deno@${[...new Set(readme)]}, the image ${pinned}`,
  );
  assert.match(read("docs/operations.md"), new RegExp(`deno@${pinned.replaceAll(".", "\\.")}\\b`));
});

Deno.test("the image runs as a non-root user who can change nothing but the data directory", () => {
  const users = docker.filter((i) => i.op === "USER");
  assert.ok(users.length > 0, "no USER instruction: the service would run as root");
  const user = users.at(-1)!.args;
  assert.doesNotMatch(user, /^(root|0)(:|$)/, `USER ${user} is root`);
  // Installed and copied as root: the service (run with --allow-write) cannot
  // replace its code, node_modules or Deno's cache of them for the next start.
  const lastUser = docker.findLastIndex((i) => i.op === "USER");
  const lastBuildStep = docker.findLastIndex((i) => ["RUN", "COPY", "ADD"].includes(i.op));
  assert.ok(lastUser > lastBuildStep, "a RUN, COPY or ADD runs as the runtime user");
  const name = user.split(":")[0];
  for (const { op, args } of docker) {
    assert.doesNotMatch(args, new RegExp(`--chown=${name}\\b`), `${op} ${args}`);
    for (const [, owner, paths] of args.matchAll(/chown\s+(?:-\S+\s+)*(\S+)\s+([^&;|]+)/g)) {
      if (owner.split(":")[0] !== name) continue;
      assert.deepEqual(paths.trim().split(/\s+/), [dockerEnv().DATA_DIR], `${op} ${args}`);
    }
  }
  // The base image gives its DENO_DIR to that user; the cache holds the compiled code.
  assert.ok(
    docker.some((i) => i.op === "RUN" && /chown -R root:root \/deno-dir\b/.test(i.args)),
    "/deno-dir (DENO_DIR) is left to the runtime user",
  );
});

Deno.test("dependencies are cached in a layer of their own, before the source is copied", () => {
  const manifests = indexOf((i) =>
    i.op === "COPY" && /\bdeno\.json\b/.test(i.args) && /\bdeno\.lock\b/.test(i.args)
  );
  const install = indexOf((i) => i.op === "RUN" && /deno (install|cache) .*--frozen/.test(i.args));
  const source = indexOf((i) => i.op === "COPY" && /^(--\S+\s+)*\.\s+\S+$/.test(i.args));
  const cacheEntries = indexOf((i) =>
    i.op === "RUN" && /deno cache\b/.test(i.args) && /\bmain\.ts\b/.test(i.args) &&
    /\bscripts\/migrate\.ts\b/.test(i.args)
  );
  assert.ok(manifests >= 0, "COPY deno.json deno.lock is missing");
  assert.ok(install > manifests, "no `deno install --frozen` (or cache --frozen) after it");
  assert.ok(source > install, "the source COPY must come after the dependency layer");
  assert.ok(cacheEntries > source, "main.ts and scripts/migrate.ts are not cached after the COPY");
  // The copy of deno.json/deno.lock must be the only thing in the dependency layer.
  assert.equal(
    docker.slice(manifests + 1, install).filter((i) => i.op === "COPY" || i.op === "ADD").length,
    0,
  );
});

Deno.test("CMD runs exactly what `deno task start` runs", () => {
  const tasks = JSON.parse(read("deno.json")).tasks as Record<string, string>;
  const cmd = docker.filter((i) => i.op === "CMD").at(-1);
  assert.ok(cmd, "no CMD");
  assert.deepEqual(JSON.parse(cmd.args), tasks.start.split(/\s+/));
});

Deno.test("PORT, EXPOSE, fly's internal_port and [env] PORT are one port", () => {
  const port = Number(dockerEnv().PORT);
  assert.ok(port > 0, "the Dockerfile sets no ENV PORT");
  const exposed = docker.filter((i) => i.op === "EXPOSE").map((i) => Number(i.args.split("/")[0]));
  assert.deepEqual(exposed, [port]);
  assert.equal(http.internal_port, port);
  assert.equal(Number(table(fly.env).PORT), port);
});

Deno.test("DATA_DIR points into a directory the non-root user owns", () => {
  const dataDir = dockerEnv().DATA_DIR;
  assert.ok(dataDir, "the Dockerfile sets no ENV DATA_DIR");
  const chown = docker.find((i) =>
    i.op === "RUN" && /chown/.test(i.args) && i.args.includes(dataDir)
  );
  assert.ok(chown, `no RUN ... chown ... ${dataDir}`);
});

Deno.test(".dockerignore keeps out tests, data, docs, node_modules and git; keeps the runtime files", () => {
  for (
    const path of [
      "tests/webhook_test.ts",
      "tests/_db.ts",
      "data/pglite/PG_VERSION",
      "docs/operations.md",
      "node_modules/hono/package.json",
      ".git/HEAD",
      "test-artifacts/x",
      ".env",
    ]
  ) {
    assert.ok(ignored(path), `${path} would be copied into the image`);
  }
  for (
    const path of ["main.ts", "deno.json", "deno.lock", "scripts/migrate.ts", "core/config.ts"]
  ) {
    assert.ok(!ignored(path), `${path} would be left out of the image`);
  }
});

Deno.test("every module the two entry points load, and every migration, is in the image", async () => {
  const root = ROOT.href;
  const needed = new Set<string>();
  for (const entry of ["main.ts", "scripts/migrate.ts"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    for (const { specifier } of graph.modules) {
      if (specifier.startsWith(root)) needed.add(specifier.slice(root.length));
    }
  }
  // Files read at run time rather than imported.
  for (const dir of ["supabase/migrations/", "dashboard/"]) {
    try {
      for (const f of filesUnder(new URL(dir, ROOT), dir)) needed.add(f);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  assert.ok(needed.has("main.ts") && needed.has("db/migrate.ts"));
  assert.deepEqual(
    [...needed].filter(ignored),
    [],
    "needed at run time, excluded by .dockerignore",
  );
});

Deno.test("fly.toml serves on the service's port with a /health check and HTTPS", () => {
  assert.equal(fly.app, "optionstrat-backend");
  assert.equal(table(fly.build).dockerfile, "Dockerfile");
  assert.equal(http.force_https, true);
  const checks = http.checks as TomlTable[];
  const health = checks?.find((c) => c.path === "/health");
  assert.ok(health, "no [[http_service.checks]] on /health");
  assert.equal(health.method ?? "GET", "GET");
  // Fly must give the check less time than its interval, and start-up its grace period.
  assert.ok(durationMs(health.timeout) < durationMs(health.interval));
  assert.ok(durationMs(health.grace_period) >= 5_000);
  const env = table(fly.env);
  assert.equal(env.NODE_ENV, "production");
});

Deno.test("fly.toml never carries a secret", () => {
  const text = read("fly.toml");
  for (const name of ["DATABASE_URL", "WEBHOOK_SECRET", "OPERATOR_TOKEN"]) {
    assert.doesNotMatch(text, new RegExp(`^\\s*${name}\\s*=`, "m"), `${name} is set in fly.toml`);
    assert.equal(table(fly.env)[name], undefined);
  }
});

Deno.test("the release command runs the migrate task, which exists", () => {
  const tasks = JSON.parse(read("deno.json")).tasks as Record<string, string>;
  const release = String(table(fly.deploy).release_command);
  const m = release.match(/^deno task (\S+)$/);
  assert.ok(m, `release_command "${release}" is not a deno task`);
  assert.equal(m[1], "migrate");
  assert.match(tasks.migrate, /\bscripts\/migrate\.ts$/);
  Deno.statSync(new URL("scripts/migrate.ts", ROOT));
  assert.equal(table(fly.deploy).strategy, "rolling");
});

Deno.test("Fly's kill_timeout leaves main.ts time to drain, and SIGTERM is the signal", () => {
  assert.equal(fly.kill_signal, "SIGTERM");
  const killTimeoutMs = durationMs(fly.kill_timeout);
  assert.ok(
    killTimeoutMs >= SHUTDOWN_DEADLINE_MS + 5_000,
    `kill_timeout ${killTimeoutMs} ms must exceed the ${SHUTDOWN_DEADLINE_MS} ms deadline by 5 s`,
  );
  assert.ok(killTimeoutMs <= 300_000, "Fly's maximum kill_timeout is 300 s");
});

Deno.test("a TradingView alert never waits for a cold start: at least one machine always runs", () => {
  assert.ok(Number(http.min_machines_running) >= 1);
  assert.ok(
    http.auto_stop_machines === "off" || http.auto_stop_machines === false,
    `auto_stop_machines = ${http.auto_stop_machines}: idle machines would be stopped`,
  );
  const concurrency = table(http.concurrency);
  assert.equal(concurrency.type, "requests");
  assert.ok(Number(concurrency.soft_limit) <= Number(concurrency.hard_limit));
  assert.ok((fly.vm as TomlTable[])?.[0]?.size, "no [[vm]] size");
});

Deno.test("Fly restarts the app's machines whatever their exit, without a retry limit", () => {
  const restart = (fly.restart as TomlTable[] | undefined)?.find((r) =>
    (r.processes as string[] | undefined)?.includes("app") ?? true
  );
  assert.ok(restart, "no [[restart]] for the app's machines: Fly gives up after 10 failed starts");
  assert.equal(restart.policy, "always");
});

Deno.test("operations.md finds pending migrations with the files of the release to deploy", () => {
  const guide = read("docs/operations.md");
  const backups = guide.slice(guide.indexOf("## Backups"), guide.indexOf("## Rollback"));
  const check = /`([^`]*deno task migrate --status[^`]*)`/.exec(backups)?.[1] ?? "";
  // In a running machine (fly ssh console) it is the deployed image's files, all of them applied
  // already: it says "0 pending" before every deploy, so the dump would never seem needed.
  assert.doesNotMatch(check, /fly ssh/);
  assert.match(check, /^DATABASE_URL=\S+ deno task migrate --status$/);
});
