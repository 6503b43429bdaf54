/**
 * The real service as a child process, for tests that stop, kill or starve
 * it: `deno run --allow-all main.ts` started with only the environment it is
 * given, its JSON log lines collected, and helpers for the databases such
 * tests need (a throw-away Postgres database the service migrates itself, a
 * seeded PGlite directory).
 *
 * Deno.execPath() is the real Deno binary (not npm's Node wrapper), so a
 * signal sent to the child reaches the service itself.
 */
import { cpSync } from "node:fs";
import type { Database } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { SECRET } from "./_app.ts";
import { pgliteTemplate, POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";

const ROOT = new URL("../", import.meta.url);
export const IN_CI = Deno.env.get("CI") === "true";

export interface Service {
  base: string;
  port: number;
  child: Deno.ChildProcess;
  /** stdout lines so far: the service's JSON logs. */
  lines: string[];
  /** stderr lines so far: only the runtime's own warnings belong there. */
  errors: string[];
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** SIGKILL, then waits for the process to be gone. */
  kill9(): Promise<void>;
}

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `promise`, or a failure naming `what` if it has not settled in 30 s: a guard against a hung
 * suite where the code under test would otherwise wait forever, not a measure of its speed
 * (the deadlines such tests exercise are the service's own, hundreds of ms).
 */
export function unlessHung<T>(promise: T | Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hung: ${what}, 30 s on`)), 30_000);
  });
  return Promise.race([promise, hung]).finally(() => clearTimeout(timer));
}

/** Polls `check` every 50 ms until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await delay(50);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** What a child Deno process needs of this one's environment (where Deno and its cache are). */
export function inheritedEnv(): Record<string, string> {
  const inherited: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) inherited[name] = value;
  }
  return inherited;
}

/** `deno run --allow-all main.ts` with only `env` (and inheritedEnv()), output piped. */
export function spawnMain(env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: { ...inheritedEnv(), NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Starts `deno run --allow-all main.ts` with only `env` (plus PATH, HOME,
 * DENO_DIR) and waits until it answers. `port` reuses an address (a restart).
 */
export async function startService(
  env: Record<string, string>,
  options: { port?: number; readyTimeoutMs?: number } = {},
): Promise<Service> {
  const port = options.port ?? freePort();
  const child = spawnMain({
    NODE_ENV: "development",
    LOG_LEVEL: "info",
    PORT: String(port),
    WEBHOOK_SECRET: SECRET,
    // The stream comes from one address; the default per-address limit is not under test.
    RATE_LIMIT_PER_MINUTE: "1000000",
    ...env,
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const waiters = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>, lines: string[]) => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      lines.push(...parts.filter((l) => l !== ""));
      for (const wake of waiters) wake();
    }
    if (rest !== "") lines.push(rest);
  };
  void pump(child.stdout, lines);
  void pump(child.stderr, errors);
  const exited = child.status.then(() => {
    for (const wake of waiters) wake();
  });
  const service: Service = {
    base: `http://127.0.0.1:${port}`,
    port,
    child,
    lines,
    errors,
    async waitForLine(pattern, timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (true) {
        const found = lines.find((l) => pattern.test(l));
        if (found !== undefined) return found;
        if (Date.now() > until) {
          throw new Error(`No log line matching ${pattern} in ${timeoutMs} ms`);
        }
        await Promise.race([
          new Promise<void>((resolve) => {
            const wake = () => {
              waiters.delete(wake);
              resolve();
            };
            waiters.add(wake);
            setTimeout(wake, 50);
          }),
          exited,
        ]);
      }
    },
    async kill9() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited already.
      }
      await child.status;
    },
  };
  // Ready when GET /webhook answers (the listener opens after migrations).
  const until = Date.now() + (options.readyTimeoutMs ?? 30_000);
  while (true) {
    try {
      const res = await fetch(`${service.base}/webhook`);
      await res.body?.cancel();
      if (res.status === 200) return service;
    } catch {
      // Not listening yet.
    }
    const done = await Promise.race([child.status.then(() => true), delay(50).then(() => false)]);
    if (done || Date.now() > until) {
      await service.kill9();
      throw new Error(`The service did not start:\n${[...lines, ...errors].slice(-20).join("\n")}`);
    }
  }
}

/** The migrated PGlite directory tests/_db.ts keeps, copied in: saves the child seconds of initdb. */
export async function seedPglite(dataDir: string): Promise<void> {
  cpSync(await pgliteTemplate(), `${dataDir}/pglite`, { recursive: true });
}

/** An empty Postgres database of the test's own (the service migrates it at start-up), dropped after. */
export interface ScratchDatabase {
  url: string;
  open(max?: number): Promise<Database>;
  drop(): Promise<void>;
}

export async function scratchPostgres(label: string): Promise<ScratchDatabase> {
  if (!POSTGRES_REACHABLE) throw new Error(`Postgres is not reachable at ${TEST_DATABASE_URL}`);
  const name = `ostest_${label}_${Date.now()}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = await openPostgres(TEST_DATABASE_URL, { max: 1 });
  await admin.exec(`create database ${name}`);
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  const opened: Database[] = [];
  return {
    url: url.toString(),
    async open(max = 2) {
      const db = await openPostgres(url.toString(), { max });
      opened.push(db);
      return db;
    },
    async drop() {
      for (const db of opened) await db.close().catch(() => {});
      await admin.exec(`drop database if exists ${name} with (force)`).catch(() => {});
      await admin.close();
    },
  };
}
