/**
 * The servers under test as subprocesses of the real deno binary: the
 * service (`run --allow-all main.ts`, exactly as deployed, on its own fresh
 * database) and the ceiling server. Each gets a clean environment (nothing
 * inherited but what deno itself needs, so a stray WORKER_CONCURRENCY or
 * DATABASE_URL in the caller's shell cannot change what is measured), a free
 * loopback port, and is ready when it answers. stop() sends SIGTERM (the
 * service drains and exits on its own) and SIGKILL after a timeout.
 */
import type { BenchDatabase } from "./bench_database.ts";

const REPO = new URL("../../", import.meta.url);
/** Above main.ts's SHUTDOWN_DEADLINE_MS (20 s), so a draining service is not cut short. */
const STOP_TIMEOUT_MS = 25_000;
const START_TIMEOUT_MS = 60_000;
const PASS_THROUGH = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "DENO_CERT"];

export interface ServerProcess {
  name: string;
  pid: number;
  /**
   * Processes whose CPU counts as this server's (`--split`: the deciding
   * instance beside the loaded one).
   */
  companionPids?: number[];
  port: number;
  origin: string;
  /** Its inspector's port with `--profile` (cpu_watch.ts), else null. */
  inspectPort: number | null;
  /** The last lines it printed (warnings and errors; LOG_LEVEL is warning). */
  logTail(): string;
  stop(): Promise<StopResult>;
}

export interface StopResult {
  code: number;
  signal: string | null;
  ms: number;
  /** It had to be killed with SIGKILL. */
  killed: boolean;
}

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * The service's environment: everything on the full decision path (no
 * market-hours short cut, limits that never refuse an entry, no rate limit
 * in the way), quiet logs, then the caller's overrides.
 */
export function serviceEnvironment(o: {
  port: number;
  secret: string;
  database: Record<string, string>;
  overrides?: Record<string, string>;
}): Record<string, string> {
  return {
    NODE_ENV: "development",
    PORT: String(o.port),
    WEBHOOK_SECRET: o.secret,
    ...BENCH_SERVICE_SETTINGS,
    ...o.database,
    ...o.overrides,
  };
}

/**
 * What the bench sets for every server it starts, apart from the port, the
 * secret and the database. The report's header prints them with the
 * caller's overrides, since they are not a deployment's defaults.
 */
export const BENCH_SERVICE_SETTINGS: Readonly<Record<string, string>> = {
  // At info an accepted webhook logs three lines, which cost (README, Performance); warnings and
  // errors still show.
  LOG_LEVEL: "warning",
  RATE_LIMIT_PER_MINUTE: "10000000",
  // So every decision takes the full path: context + GEX, book, decide, write.
  ENFORCE_MARKET_HOURS: "false",
  MAX_OPEN_POSITIONS: "1000000",
  MAX_EXPOSURE: "1000000000000",
  INSTANCE_ID: "bench",
};

/** The settings line of the report's header: the bench's own, then `--service-env`'s. */
export function serviceSettingsLine(overrides: Readonly<Record<string, string>>): string {
  const own = Object.entries(BENCH_SERVICE_SETTINGS).filter(([k]) => !(k in overrides));
  const set = [...own, ...Object.entries(overrides)].map(([k, v]) => `${k}=${v}`);
  return `service settings: ${set.join(" ")}` +
    (Object.keys(overrides).length > 0
      ? ` (from --service-env: ${Object.keys(overrides).join(", ")})`
      : "");
}

function baseEnvironment(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  for (const name of PASS_THROUGH) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

interface SpawnOptions {
  name: string;
  script: string;
  port: number;
  env: Record<string, string>;
  /** Open an inspector on a free loopback port (for `--profile`). */
  inspect: boolean;
  /** Resolves true once the server answers as expected. */
  ready: (origin: string) => Promise<boolean>;
}

async function spawnServer(o: SpawnOptions): Promise<ServerProcess> {
  const inspectPort = o.inspect ? freePort() : null;
  const inspect = inspectPort === null ? [] : [`--inspect=127.0.0.1:${inspectPort}`];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...inspect, o.script],
    cwd: REPO,
    clearEnv: true,
    env: { ...baseEnvironment(), ...o.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const tail: string[] = [];
  const keep = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      tail.push(text);
      while (tail.length > 200) tail.shift();
    }
  };
  const drained = Promise.all([keep(child.stdout), keep(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const origin = `http://127.0.0.1:${o.port}`;
  const logTail = () => tail.join("").slice(-4000);

  const stop = async (): Promise<StopResult> => {
    const started = performance.now();
    let killed = false;
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Exited meanwhile.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        status.then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS)),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        killed = true;
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }
    }
    const s = await status;
    await drained;
    return { code: s.code, signal: s.signal, ms: Math.round(performance.now() - started), killed };
  };

  const deadline = performance.now() + START_TIMEOUT_MS;
  while (true) {
    if (exited) {
      await drained;
      throw new Error(`${o.name} exited during start-up (${(await status).code}):\n${logTail()}`);
    }
    if (performance.now() > deadline) {
      await stop();
      throw new Error(`${o.name} did not answer within ${START_TIMEOUT_MS} ms:\n${logTail()}`);
    }
    if (await o.ready(origin).catch(() => false)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { name: o.name, pid: child.pid, port: o.port, origin, inspectPort, logTail, stop };
}

/** The real service (main.ts) on `db`. */
export function startService(o: {
  db: BenchDatabase;
  secret: string;
  overrides?: Record<string, string>;
  inspect?: boolean;
  /** Said in its name, e.g. "deciding" for `--split`'s second instance. */
  role?: string;
}): Promise<ServerProcess> {
  const port = freePort();
  return spawnServer({
    name: `service (${[o.db.driver, o.role].filter(Boolean).join(", ")})`,
    script: "main.ts",
    port,
    inspect: o.inspect ?? false,
    env: serviceEnvironment({
      port,
      secret: o.secret,
      database: o.db.serviceEnv,
      overrides: o.overrides,
    }),
    ready: async (origin) => {
      const res = await fetch(`${origin}/health/database`);
      const body = await res.json() as { healthy?: boolean };
      return res.status === 200 && body.healthy === true;
    },
  });
}

/** The no-database ceiling (ceiling_server.ts), configured like the service. */
export function startCeiling(o: {
  secret: string;
  overrides?: Record<string, string>;
  inspect?: boolean;
}): Promise<ServerProcess> {
  const port = freePort();
  return spawnServer({
    name: "ceiling server",
    script: "scripts/bench/ceiling_server.ts",
    port,
    inspect: o.inspect ?? false,
    env: serviceEnvironment({ port, secret: o.secret, database: {}, overrides: o.overrides }),
    ready: async (origin) => {
      const res = await fetch(`${origin}/webhook`);
      await res.body?.cancel();
      return res.status === 200;
    },
  });
}

/** A rung of issue 6's reference table (ladder_server.ts): `mode` and its database, if any. */
export function startLadder(o: {
  mode: string;
  secret: string;
  env?: Record<string, string>;
}): Promise<ServerProcess> {
  const port = freePort();
  return spawnServer({
    name: `ladder server (${o.mode})`,
    script: "scripts/bench/ladder_server.ts",
    port,
    inspect: false,
    env: { LADDER_MODE: o.mode, PORT: String(port), WEBHOOK_SECRET: o.secret, ...o.env },
    ready: async (origin) => {
      const res = await fetch(`${origin}/webhook`);
      await res.body?.cancel();
      return res.status === 200;
    },
  });
}
