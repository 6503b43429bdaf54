/**
 * `GET /health` in the deployment guide's shape, and each component alone at
 * `/health/database`, `/health/context`, `/health/gex`, `/health/pipeline`.
 * - database: a real `select 1`, timed, with a deadline;
 * - context and GEX: age of the newest stored data against its max age;
 * - pipeline: the job queue's backlog, and whether this instance decides
 *   (WORKER_ENABLED); the backlog is shared by every instance.
 * `healthy` when all are; `degraded` (still 200) when market data is
 * missing or stale or the queue lags; `unhealthy` (503) when the database
 * cannot be reached. Open to everyone: it says nothing secret.
 */
import { Hono } from "hono";
import type { AppEnv } from "../app_env.ts";
import { type QueueDepth, queueDepth } from "../db/jobs.ts";
import { marketDataFreshness, type SymbolAsOf } from "../db/market_data.ts";
import type { Database } from "../db/port.ts";
import type { ContextProvider } from "../providers/context.ts";
import type { GexProvider } from "../providers/gex.ts";
import { withinMs } from "../deadline.ts";
import { logger } from "../logging.ts";

const log = logger("health");

export interface HealthDeps {
  db: Database;
  context: ContextProvider;
  gex: GexProvider;
  contextMaxAgeSeconds: number;
  gexMaxAgeSeconds: number;
  /** Oldest a pending job may be before the pipeline counts as lagging. */
  maxQueueAgeSeconds: number;
  contextSource: string;
  gexSource: string;
  /**
   * Whether each symbol's context is expected to stay fresh (pushed, POST
   * /context), or only fetched when a signal needs it (CONTEXT_URL), so a quiet
   * symbol's is old by design. GEX is always judged per symbol: pushed, or
   * fetched for GEX_SYMBOLS on a schedule.
   */
  contextPerSymbol: boolean;
  /** False when this instance only acknowledges (WORKER_ENABLED=false): another one decides. */
  workerEnabled: boolean;
  now: () => number;
}

export interface Component {
  healthy: boolean;
  status: string;
  [detail: string]: unknown;
}

export interface HealthReport {
  healthy: boolean;
  status: "healthy" | "degraded" | "unhealthy";
  message: string;
  timestamp: string;
  components: { context: Component; gex: Component; database: Component; pipeline: Component };
}

/** The whole database part of a check (the probe and the reads after it) answers within this. */
const DB_DEADLINE_MS = 2000;

const UNKNOWN: Component = {
  healthy: false,
  status: "unknown",
  checked: "not checked: database unreachable",
};

export async function checkHealth(deps: HealthDeps): Promise<HealthReport> {
  const deadline = performance.now() + DB_DEADLINE_MS;
  let database = await checkDatabase(deps.db, deadline);
  let reads: [Awaited<ReturnType<typeof marketDataFreshness>>, QueueDepth] | null = null;
  if (database.healthy) {
    try {
      // The database can go away between the probe and these reads (a partition, a
      // restart): that is an unhealthy database, answered in time, never a 500.
      reads = await beforeDeadline(
        Promise.all([marketDataFreshness(deps.db), queueDepth(deps.db)]),
        deadline,
      );
    } catch (error) {
      database = {
        healthy: false,
        status: "down",
        checked: "select 1, then the market data and queue reads",
        driver: deps.db.driver,
        error: `the reads after select 1 failed: ${shownError(error)}`,
      };
    }
  }
  let context: Component = { ...UNKNOWN }, gex: Component = { ...UNKNOWN };
  let pipeline: Component = { ...UNKNOWN };
  if (reads !== null) {
    const [fresh, queue] = reads;
    const now = deps.now();
    const rate = (s: { hits: number; misses: number }) =>
      s.hits + s.misses === 0 ? null : Math.round((s.hits / (s.hits + s.misses)) * 1000) / 1000;
    context = marketDataComponent(
      deps.contextPerSymbol
        ? "newest context snapshot of each symbol updated in the last day"
        : "newest context snapshot",
      fresh.context,
      deps.contextMaxAgeSeconds,
      now,
      deps.contextPerSymbol,
      { source: deps.contextSource, cache_hit_rate: rate(deps.context.stats()) },
    );
    gex = marketDataComponent(
      "newest GEX levels of each symbol updated in the last day",
      fresh.gex,
      deps.gexMaxAgeSeconds,
      now,
      true,
      { source: deps.gexSource, fetch_errors: deps.gex.stats().fetchErrors },
    );
    const lagging = queue.oldestPendingSeconds > deps.maxQueueAgeSeconds;
    pipeline = {
      healthy: !lagging,
      status: lagging ? "lagging" : "ok",
      checked: "pipeline_jobs backlog",
      pending: queue.pending,
      running: queue.running,
      failed: queue.failed,
      oldest_pending_seconds: Math.round(queue.oldestPendingSeconds * 10) / 10,
      max_pending_seconds: deps.maxQueueAgeSeconds,
      worker_on_this_instance: deps.workerEnabled,
    };
  }

  const problems: string[] = [];
  if (!database.healthy) problems.push("database unreachable");
  else {
    if (!context.healthy) problems.push(`context ${context.status}`);
    if (!gex.healthy) problems.push(`GEX ${gex.status}`);
    if (!pipeline.healthy) problems.push(`pipeline ${pipeline.status}`);
  }
  const status = !database.healthy ? "unhealthy" : problems.length > 0 ? "degraded" : "healthy";
  return {
    healthy: status === "healthy",
    status,
    message: status === "healthy"
      ? "All systems operational"
      : status === "degraded"
      ? `Degraded: ${problems.join(", ")}`
      : "Unhealthy: database unreachable",
    timestamp: new Date(deps.now()).toISOString(),
    components: { context, gex, database, pipeline },
  };
}

async function checkDatabase(db: Database, deadline: number): Promise<Component> {
  const started = performance.now();
  try {
    await beforeDeadline(db.query("select 1"), deadline);
    return {
      healthy: true,
      status: "up",
      checked: "select 1",
      driver: db.driver,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
    };
  } catch (error) {
    return {
      healthy: false,
      status: "down",
      checked: "select 1",
      driver: db.driver,
      error: shownError(error),
    };
  }
}

/** `work`, or a rejection once `deadline` (a `performance.now()` time) has passed. */
function beforeDeadline<T>(work: Promise<T>, deadline: number): Promise<T> {
  return withinMs(
    work,
    Math.max(0, deadline - performance.now()),
    () => new Error(`no answer within ${DB_DEADLINE_MS} ms`),
  );
}

/** The error for /health's answer, logged whole (the answer leaves out the address). */
function shownError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  log.warn("Database check failed: {error}", { error: message });
  return errorMessage(message);
}

/**
 * The driver's message without the database's address: /health is public,
 * and a refused connection names the host and port (`connect ECONNREFUSED
 * 10.0.0.5:5432`).
 */
export function errorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .replace(/\[[0-9a-fA-F:.]+\](:\d+)?/g, "<database>")
    .replace(/\b(?:[\w-]+\.)+[\w-]+:\d{1,5}\b/g, "<database>")
    .replace(/\b(ENOTFOUND|EAI_AGAIN) \S+/g, "$1 <database>")
    .replace(/\b\d{1,3}(\.\d{1,3}){3}\b/g, "<database>");
}

/** How long a symbol's data may be silent before it no longer counts: it has left the watchlist. */
export const WATCHED_FOR_SECONDS = 24 * 3600;
/** At most this many lagging symbols are named in the answer. */
const STALE_SYMBOLS_SHOWN = 20;

/**
 * A market-data component from each symbol's newest time. Missing without
 * any; stale when even the newest is older than `maxAgeSeconds`. With
 * `perSymbol` (data pushed, or fetched on a schedule), also stale when a
 * symbol updated within WATCHED_FOR_SECONDS has fallen behind while others
 * are fresh: its pushes stopped, and its signals are decided without it.
 */
export function marketDataComponent(
  checked: string,
  latest: readonly SymbolAsOf[],
  maxAgeSeconds: number,
  now: number,
  perSymbol: boolean,
  extra: Record<string, unknown>,
): Component {
  if (latest.length === 0) {
    return {
      healthy: false,
      status: "missing",
      checked,
      newest_as_of: null,
      age_seconds: null,
      max_age_seconds: maxAgeSeconds,
      symbols: 0,
      ...extra,
    };
  }
  const ageOf = (s: SymbolAsOf) => Math.max(0, (now - s.asOf.getTime()) / 1000);
  const newest = latest.reduce((a, b) => (b.asOf > a.asOf ? b : a));
  const age = ageOf(newest);
  const lagging = perSymbol
    ? latest.filter((s) => ageOf(s) > maxAgeSeconds && ageOf(s) <= WATCHED_FOR_SECONDS)
      .sort((a, b) => a.asOf.getTime() - b.asOf.getTime() || a.symbol.localeCompare(b.symbol))
    : [];
  const fresh = age <= maxAgeSeconds && lagging.length === 0;
  return {
    healthy: fresh,
    status: fresh ? "fresh" : "stale",
    checked,
    newest_as_of: newest.asOf.toISOString(),
    age_seconds: Math.round(age),
    max_age_seconds: maxAgeSeconds,
    symbols: latest.length,
    ...(perSymbol
      ? {
        // Oldest first; a symbol silent for longer than a day has left the watchlist.
        stale_symbols: lagging.slice(0, STALE_SYMBOLS_SHOWN).map((s) => ({
          symbol: s.symbol,
          as_of: s.asOf.toISOString(),
          age_seconds: Math.round(ageOf(s)),
        })),
        stale_symbol_count: lagging.length,
      }
      : {}),
    ...extra,
  };
}

/**
 * `check`, with concurrent calls sharing the one in flight: /health is public, and each
 * check takes three queries on the pool the webhooks commit through, so a flood of
 * requests holds at most one check's worth of its connections.
 */
export function sharedWhileRunning<T>(check: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () =>
    running ??= check().finally(() => {
      running = null;
    });
}

export function healthRoutes(deps: HealthDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const checkHealthShared = sharedWhileRunning(() => checkHealth(deps));
  app.get("/health", async (c) => {
    const report = await checkHealthShared();
    return c.json(report, report.status === "unhealthy" ? 503 : 200);
  });
  for (const name of ["database", "context", "gex", "pipeline"] as const) {
    app.get(`/health/${name}`, async (c) => {
      const report = await checkHealthShared();
      const component = report.components[name];
      const down = name === "database" ? !component.healthy : report.status === "unhealthy";
      return c.json({ ...component, timestamp: report.timestamp }, down ? 503 : 200);
    });
  }
  return app;
}
