/**
 * `deno task bench` flags: parsed with node:util parseArgs into a checked
 * `BenchOptions`. Pure (the environment is passed in); a bad flag throws
 * `UsageError` with a message saying what and why.
 */
import { parseArgs } from "node:util";
import { databaseUrlProblem } from "../../core/config.ts";

export const SCENARIOS = ["ceiling", "ingest", "steady", "e2e", "burst", "memory"] as const;
export type ScenarioName = typeof SCENARIOS[number];
export type DbChoice = "pglite" | "postgres";
export type DriverChoice = "auto" | "wrk" | "deno";

export interface BenchOptions {
  dbs: DbChoice[];
  /** Postgres server (DATABASE_URL) the bench creates its databases on; null without one. */
  postgresUrl: string | null;
  scenarios: ScenarioName[];
  durationS: number;
  warmupS: number;
  /** Connection counts of the ingest (max throughput) scenario. */
  ingestConnections: number[];
  ceilingConnections: number;
  steadyRate: number;
  e2eRate: number;
  /** Symbols the load scenarios spread alerts over. */
  symbols: number;
  burstAlerts: number;
  burstSymbols: number;
  burstConnections: number;
  memoryMinutes: number;
  memoryRate: number;
  memorySampleS: number;
  /** Longest wait for the pipeline to decide everything after a load. */
  drainTimeoutS: number;
  driver: DriverChoice;
  wrkThreads: number;
  /** Extra environment for the service (and the ceiling server), KEY=VALUE. */
  serviceEnv: Record<string, string>;
  /**
   * Postgres scenarios run two instances on the database: the loaded one
   * with WORKER_ENABLED=false, and a second that takes no webhooks and decides.
   */
  split: boolean;
  /** Rounds of every scenario but memory; each row reports its median round. */
  repeat: number;
  /** Take each server's V8 CPU profile over every measured load (cpu_watch.ts). */
  profile: boolean;
  outDir: string;
  quiet: boolean;
}

export const DEFAULT_SCENARIOS: ScenarioName[] = ["ceiling", "ingest", "steady", "e2e", "burst"];

export const HELP = `Benchmark the webhook service: throughput, acknowledgement and
end-to-end latency, a bar-close burst and memory, against the no-database ceiling.

Usage: deno task bench [flags]

Database (a fresh one per scenario, dropped afterwards):
  --db pglite|postgres|both   default: postgres when DATABASE_URL is set, else pglite
                              (postgres creates bench_* databases on DATABASE_URL's server)
Scenarios:
  --scenarios LIST            comma-separated, of ${SCENARIOS.join(", ")}
                              (default ${DEFAULT_SCENARIOS.join(",")}; memory when --memory-minutes)
  --duration S                seconds per measured load (default 10)
  --warmup S                  seconds of load before each measurement (default 2)
  --connections LIST          ingest scenario connection counts (default 16,64)
  --ceiling-connections N     (default 16)
  --steady-rate R             steady scenario requests/s (default 1000); the same rate
                              also goes to the no-store route first (the latency floor)
  --e2e-rate R                end-to-end scenario signals/s (default 500)
  --symbols N                 symbols the load scenarios use (default 200)
  --burst-alerts N            (default 2000)   --burst-symbols N (default 200)
  --burst-connections N       (default 200)
  --memory-minutes N          memory run length (default 0 = off; the issue asks for 5)
  --memory-rate R             (default 1000)   --memory-sample S (default 5)
  --drain-timeout S           wait for decisions after a load at most this long (default 60)
Load generator:
  --driver auto|wrk|deno      max-throughput client: wrk when installed (auto), or the
                              built-in Deno closed-loop client (default auto)
  --wrk-threads N             (default 1: two cores are shared with the server)
Other:
  --service-env KEY=VALUE     extra service environment, repeatable (e.g. WORKER_CONCURRENCY=8);
                              not DATABASE_URL, DATA_DIR, PORT or WEBHOOK_SECRET (the bench's own)
  --split                     Postgres scenarios as a split deployment: the loaded instance
                              with WORKER_ENABLED=false, and a second instance on the same
                              database that takes no webhooks and decides (both on this
                              machine; the service's CPU is the two together)
  --repeat N                  rounds of every scenario but memory (default 1); each row is
                              its median round (ceiling, ingest: by accepted/s; steady: by ack
                              p99; e2e: by e2e p99; burst: by time to decided), with the range
                              over the rounds; a failed check in any round is reported
  --profile                   also take each server's V8 CPU profile over every measured
                              load (its inspector on loopback): <out>/*.cpuprofile, and a
                              block of where its main thread spent the time
  --out DIR                   where the JSON goes (default bench-results)
  --quiet                     no progress lines on stderr
  -h, --help                  this text

Prints one table (plus burst, memory and diagnostics blocks) and writes
<out>/<ISO time>-<git short sha>.json with every raw figure. To put runs side
by side (an interleaved A/B): deno task bench:compare FILE... (--help there).`;

/**
 * Set by the bench for each server it starts: overridden, the service would
 * store and decide the bench's alerts in another database (whatever
 * DATABASE_URL named), or answer on a port, or to a secret, the bench does not use.
 */
const BENCH_OWNED = ["DATABASE_URL", "DATA_DIR", "PORT", "WEBHOOK_SECRET"] as const;

/** The longest a timer can wait (setTimeout's 32-bit delay). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type ParsedBenchArgs = { help: true } | { help: false; options: BenchOptions };

function positive(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !(n > 0) || n > max) {
    throw new UsageError(`--${name} must be a number above 0 and at most ${max}, got "${raw}"`);
  }
  return n;
}

/** A flag's whole number as written ("1e12", "0x10" and "" are not), within bounds. */
export function whole(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

export function parseBenchArgs(
  args: string[],
  env: Record<string, string | undefined>,
): ParsedBenchArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        db: { type: "string" },
        scenarios: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        connections: { type: "string" },
        "ceiling-connections": { type: "string" },
        "steady-rate": { type: "string" },
        "e2e-rate": { type: "string" },
        symbols: { type: "string" },
        "burst-alerts": { type: "string" },
        "burst-symbols": { type: "string" },
        "burst-connections": { type: "string" },
        "memory-minutes": { type: "string" },
        "memory-rate": { type: "string" },
        "memory-sample": { type: "string" },
        "drain-timeout": { type: "string" },
        driver: { type: "string" },
        "wrk-threads": { type: "string" },
        "service-env": { type: "string", multiple: true },
        repeat: { type: "string" },
        out: { type: "string" },
        profile: { type: "boolean" },
        split: { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split(". ")[0] : String(error));
  }
  const v = parsed.values;
  if (v.help) return { help: true };

  const postgresUrl = env.DATABASE_URL?.trim() || null;
  const dbFlag = v.db ?? (postgresUrl !== null ? "postgres" : "pglite");
  const dbs: DbChoice[] = dbFlag === "both"
    ? ["pglite", "postgres"]
    : dbFlag === "pglite" || dbFlag === "postgres"
    ? [dbFlag]
    : (() => {
      throw new UsageError(`--db must be pglite, postgres or both, got "${dbFlag}"`);
    })();
  if (dbs.includes("postgres") && postgresUrl === null) {
    throw new UsageError(
      "--db postgres needs DATABASE_URL (a server the bench may create and drop bench_* databases on)",
    );
  }
  // As the service checks it: one it cannot read made the driver throw an error quoting it whole.
  const urlProblem = postgresUrl === null ? null : databaseUrlProblem(postgresUrl);
  if (urlProblem !== null) throw new UsageError(urlProblem);

  const memoryMinutes = v["memory-minutes"] === undefined
    ? 0
    : Number(v["memory-minutes"]) >= 0 && /^\d+(\.\d+)?$/.test(v["memory-minutes"])
    ? Number(v["memory-minutes"])
    : (() => {
      throw new UsageError(
        `--memory-minutes must be a number of minutes, got "${v["memory-minutes"]}"`,
      );
    })();
  let scenarios: ScenarioName[];
  if (v.scenarios !== undefined) {
    const names = v.scenarios.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const name of names) {
      if (!(SCENARIOS as readonly string[]).includes(name)) {
        throw new UsageError(`Unknown scenario "${name}"; choose from ${SCENARIOS.join(", ")}`);
      }
    }
    if (names.length === 0) throw new UsageError("--scenarios must name at least one scenario");
    scenarios = [...new Set(names)] as ScenarioName[];
  } else {
    scenarios = [...DEFAULT_SCENARIOS, ...(memoryMinutes > 0 ? ["memory" as const] : [])];
  }

  const ingestConnections = (v.connections ?? "16,64").split(",").map((s) =>
    whole("connections", s.trim(), 16, 1, 1000)
  );
  const driver = (v.driver ?? "auto") as DriverChoice;
  if (!["auto", "wrk", "deno"].includes(driver)) {
    throw new UsageError(`--driver must be auto, wrk or deno, got "${driver}"`);
  }
  const serviceEnv: Record<string, string> = {};
  for (const pair of v["service-env"] ?? []) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (!m) throw new UsageError(`--service-env must be KEY=VALUE, got "${pair}"`);
    if ((BENCH_OWNED as readonly string[]).includes(m[1])) {
      throw new UsageError(
        `--service-env cannot set ${m[1]}: the bench gives each server its own (a fresh ` +
          "database, port and secret); for Postgres set DATABASE_URL in the environment",
      );
    }
    serviceEnv[m[1]] = m[2];
  }
  const burstAlerts = whole("burst-alerts", v["burst-alerts"], 2000, 1, 100_000);
  const burstSymbols = whole("burst-symbols", v["burst-symbols"], 200, 1, 10_000);
  if (burstSymbols > burstAlerts) {
    throw new UsageError("--burst-symbols must not exceed --burst-alerts");
  }
  const options: BenchOptions = {
    dbs,
    postgresUrl,
    scenarios,
    durationS: positive("duration", v.duration, 10, 3600),
    warmupS: v.warmup === "0" ? 0 : positive("warmup", v.warmup, 2, 600),
    ingestConnections,
    ceilingConnections: whole("ceiling-connections", v["ceiling-connections"], 16, 1, 1000),
    steadyRate: positive("steady-rate", v["steady-rate"], 1000, 100_000),
    e2eRate: positive("e2e-rate", v["e2e-rate"], 500, 100_000),
    symbols: whole("symbols", v.symbols, 200, 1, 10_000),
    burstAlerts,
    burstSymbols,
    burstConnections: whole("burst-connections", v["burst-connections"], 200, 1, 10_000),
    memoryMinutes: scenarios.includes("memory") && memoryMinutes === 0 ? 5 : memoryMinutes,
    memoryRate: positive("memory-rate", v["memory-rate"], 1000, 100_000),
    memorySampleS: positive("memory-sample", v["memory-sample"], 5, 600),
    drainTimeoutS: positive("drain-timeout", v["drain-timeout"], 60, 3600),
    driver,
    wrkThreads: whole("wrk-threads", v["wrk-threads"], 1, 1, 64),
    serviceEnv,
    split: v.split ?? false,
    repeat: whole("repeat", v.repeat, 1, 1, 15),
    profile: v.profile === true,
    outDir: v.out ?? "bench-results",
    quiet: v.quiet === true,
  };
  if (options.split && !dbs.includes("postgres")) {
    throw new UsageError(
      "--split needs --db postgres or both: PGlite lives inside one process, so no second instance can decide",
    );
  }
  if (options.split && "WORKER_ENABLED" in serviceEnv) {
    throw new UsageError("--split sets WORKER_ENABLED itself; leave it out of --service-env");
  }
  // The watchdog is a timer: past 2^31 - 1 ms it fires at once, and the run would stop itself
  // at its start ("exceeded its time bound").
  const boundS = timeBoundS(options);
  if (boundS * 1000 > MAX_TIMER_MS) {
    throw new UsageError(
      `These flags allow a run of up to ${Math.round(boundS / 86_400)} days, more than the ` +
        "24 the bench can bound: ask for less (--memory-minutes, --duration, --repeat)",
    );
  }
  for (const c of [...options.ingestConnections, options.ceilingConnections]) {
    if (c < options.wrkThreads) {
      throw new UsageError(
        `Connections (${c}) must be at least --wrk-threads (${options.wrkThreads})`,
      );
    }
  }
  return { help: false, options };
}

/**
 * The longest a run with these options may take, in seconds: per scenario
 * its load, the waits for decisions it may do, and a minute for starting,
 * seeding, stopping (the service may take 25 s to drain) and analysis, for
 * every round (memory runs once); doubled. Past it the entry point gives up and cleans up: the bench is
 * bounded in time even if a server or the database hangs.
 */
export function timeBoundS(o: BenchOptions): number {
  const load = o.warmupS + o.durationS;
  const perDb = (o.scenarios.includes("ingest") ? o.ingestConnections.length * (load + 60) : 0) +
    (o.scenarios.includes("steady") ? load + 60 : 0) +
    (o.scenarios.includes("e2e") ? load + 2 * o.drainTimeoutS + 60 : 0) +
    (o.scenarios.includes("burst") ? o.warmupS + 2 * o.drainTimeoutS + 60 : 0);
  const memory = o.scenarios.includes("memory") ? o.memoryMinutes * 60 + 60 : 0;
  const noStore = (o.scenarios.includes("ceiling") ? load + 30 : 0) +
    (o.scenarios.includes("steady") ? load + 30 : 0);
  const round = noStore + perDb * o.dbs.length;
  return Math.ceil(2 * (o.repeat * round + memory * o.dbs.length) + 60);
}
