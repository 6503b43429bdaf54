/**
 * A scenario on a fresh service: a fresh database (PGlite copy or a new
 * Postgres database), the real service on it with market data seeded, the
 * scenario's load, then, once the service has stopped, its analysis on the
 * database. The service is always stopped and the database always dropped,
 * on errors too (and on Ctrl-C, through cleanup.ts). Also the ways to watch
 * a running service: jobs left to decide, and its own ack times.
 */
import type { Database, Queryable } from "../../db/port.ts";
import { groupCommitStats, ingestCounts } from "./analysis.ts";
import { checkDurability } from "./durability.ts";
import type { LoadResult } from "./load_result.ts";
import type { ProfileSummary } from "./cpu_watch.ts";
import type { CpuSplit } from "./proc.ts";
import type { ScenarioName } from "./flags.ts";
import { type BookCounters, emptyResult, type ScenarioResult } from "./results.ts";
import { type BenchDatabase, freshPglite, freshPostgres } from "./bench_database.ts";
import { registerCleanup } from "./cleanup.ts";
import type { DbChoice } from "./flags.ts";
import type { BenchContext } from "./harness.ts";
import { seedMarketData } from "./market_seed.ts";
import { type ServerProcess, startService, type StopResult } from "./server_process.ts";
import type { Summary } from "./stats.ts";

/**
 * How many jobs are still to be decided. Postgres: asked directly (no load
 * on the service); PGlite lives inside the service, so through its own
 * `GET /health/pipeline` (a few cheap queries per poll).
 */
export function unfinishedProbe(
  svc: ServerProcess,
  live: Database | null,
): { probe: () => Promise<number>; pollMs: number } {
  if (live !== null) {
    return {
      pollMs: 10,
      probe: async () => {
        const [row] = await live.query<{ n: number }>(
          `select count(*)::integer as n from pipeline_jobs where status in ('pending', 'running')`,
        );
        return Number(row.n);
      },
    };
  }
  return {
    pollMs: 50,
    probe: async () => {
      const res = await fetch(`${svc.origin}/health/pipeline`);
      const body = await res.json() as { pending?: number; running?: number };
      if (body.pending === undefined) throw new Error("GET /health/pipeline gave no pending count");
      return (body.pending ?? 0) + (body.running ?? 0);
    },
  };
}

/** Polls until nothing is left to decide; resolves to the epoch ms it saw that, or null on timeout. */
export async function waitUntilDecided(
  probe: () => Promise<number>,
  o: { pollMs: number; timeoutMs: number },
): Promise<number | null> {
  const deadline = performance.now() + o.timeoutMs;
  while (performance.now() < deadline) {
    if (await probe() === 0) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, o.pollMs));
  }
  return null;
}

/** The service's own webhook ack summary (GET /metrics/latency). */
export async function serverAck(svc: ServerProcess): Promise<Summary | null> {
  try {
    const res = await fetch(`${svc.origin}/metrics/latency`);
    const body = await res.json() as {
      webhookAck?: { count: number; p50: number; p95: number; p99: number; max: number };
    };
    const a = body.webhookAck;
    if (a === undefined) return null;
    return {
      count: a.count,
      mean: null,
      p50: a.p50,
      p90: null,
      p95: a.p95,
      p99: a.p99,
      p999: null,
      max: a.max,
    };
  } catch {
    return null;
  }
}

/** What the instance's `GET /health/pipeline` says: does it run a worker? */
async function decidesHere(svc: ServerProcess): Promise<boolean> {
  const res = await fetch(`${svc.origin}/health/pipeline`);
  const body = await res.json() as { worker_on_this_instance?: boolean };
  return body.worker_on_this_instance === true;
}

export interface Stopped {
  stop: StopResult;
  /** The service's last output lines (warnings and errors only). */
  logTail: string;
  /** The deciding instance's book counters just before it stopped; null if unreadable. */
  book: BookCounters | null;
}

/**
 * Over a service's life, the decision batches decided again because the
 * positions changed under them, and those then written holding their lock
 * (GET /metrics `worker`; results.ts).
 */
async function bookCounters(svc: ServerProcess): Promise<BookCounters | null> {
  try {
    const res = await fetch(`${svc.origin}/metrics`);
    const body = await res.json() as { worker?: { bookConflicts?: number; bookLocks?: number } };
    const w = body.worker;
    if (typeof w?.bookConflicts !== "number" || typeof w.bookLocks !== "number") return null;
    return { conflicts: w.bookConflicts, locked: w.bookLocks };
  } catch {
    return null;
  }
}

export interface ServiceRun {
  svc: ServerProcess;
  db: BenchDatabase;
  /** A connection to the database while the service runs: Postgres only. */
  live: Database | null;
}

/**
 * Runs `load` against a fresh service on a fresh `driver` database (market
 * data seeded), stops the service, then runs `analyze` on the database
 * (PGlite can only be opened once the service is gone). The service is
 * always stopped and the database always dropped.
 */
export async function withService<T>(
  ctx: BenchContext,
  o: {
    driver: DbChoice;
    /** Names the PGlite directory. */
    label: string;
    load: (run: ServiceRun) => Promise<T>;
    analyze: (db: Database, loaded: T, stopped: Stopped) => Promise<void>;
  },
): Promise<void> {
  const { driver, load, analyze } = o;
  const db = driver === "pglite"
    ? freshPglite(await ctx.pgliteTemplate(), {
      tmpRoot: ctx.tmpDir,
      label: o.label.replace(/\W+/g, "-"),
    })
    : await freshPostgres(ctx.options.postgresUrl!);
  const forgetDb = registerCleanup(() => db.dispose());
  const split = ctx.options.split && driver === "postgres";
  let svc: ServerProcess | null = null;
  let decider: ServerProcess | null = null;
  let forgetSvc = () => {};
  let forgetDecider = () => {};
  let live: Database | null = null;
  try {
    if (split) {
      // Started first and left alone by the load: it decides what the loaded one stores.
      decider = await startService({
        db,
        secret: ctx.secret,
        overrides: ctx.options.serviceEnv,
        role: "deciding",
      });
      const startedDecider = decider;
      forgetDecider = registerCleanup(() => startedDecider.stop());
    }
    svc = await startService({
      db,
      secret: ctx.secret,
      overrides: split
        ? { ...ctx.options.serviceEnv, WORKER_ENABLED: "false" }
        : ctx.options.serviceEnv,
      inspect: ctx.options.profile,
    });
    const started = svc;
    forgetSvc = registerCleanup(() => started.stop());
    if (decider !== null) {
      svc.companionPids = [decider.pid];
      // Each instance says whether it decides: a split where both did would measure nothing new.
      for (const [server, deciding] of [[svc, false], [decider, true]] as const) {
        if (await decidesHere(server) !== deciding) {
          throw new Error(`--split: ${server.name} ${deciding ? "does not decide" : "decides"}`);
        }
      }
    }
    await seedMarketData(svc.origin, ctx.seedSymbols);
    live = driver === "postgres" ? await db.open() : null;
    const loaded = await load({ svc, db, live });
    const book = await bookCounters(decider ?? svc);
    const stops = [await svc.stop(), ...(decider === null ? [] : [await decider.stop()])];
    const logTail = [svc, decider].map((s) => s?.logTail() ?? "").join("");
    svc = decider = null;
    const stop = stops.find((s) => s.code !== 0) ?? stops[0];
    if (stop.code !== 0) ctx.progress(`  service exited with ${stop.code}:\n${logTail}`);
    await analyze(live ?? await db.open(), loaded, { stop, logTail, book });
  } finally {
    for (const s of [svc, decider]) {
      if (s === null) continue;
      const tail = s.logTail();
      await s.stop().catch(() => {});
      if (tail.trim() !== "") ctx.progress(`  ${s.name} output:\n${tail}`);
    }
    forgetSvc();
    forgetDecider();
    await db.dispose();
    forgetDb();
  }
}

/** What every load scenario's run reports, whatever else it measured. */
export interface MeasuredRun {
  warmup: LoadResult | null;
  load: LoadResult;
  cpu: CpuSplit;
  profile: ProfileSummary | null;
  ack: Summary | null;
}

/**
 * A scenario's result with the figures every load scenario shares: stored
 * counts, the durability check over warm-up and load, CPU split, the
 * service's own ack latency and the group-commit statistics of `prefix`.
 */
export async function measuredResult(
  db: Queryable,
  run: MeasuredRun,
  o: { scenario: ScenarioName; label: string; driver: DbChoice; prefix: string },
): Promise<ScenarioResult> {
  const counts = await ingestCounts(db, o.prefix);
  const r = emptyResult(o.scenario, o.label, o.driver, run.load);
  r.warmup = run.warmup;
  r.cpu = run.cpu;
  r.profile = run.profile;
  r.serverAckMs = run.ack;
  r.counts = counts;
  r.durability = checkDurability(
    [run.warmup, run.load].filter((l): l is LoadResult => l !== null),
    counts,
  );
  r.groupCommit = await groupCommitStats(db, o.prefix);
  return r;
}
