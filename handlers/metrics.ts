/**
 * `GET /metrics` in the deployment guide's shape (signals, positions,
 * latency), its parts at `/metrics/signals`, `/metrics/positions`,
 * `/metrics/latency`, and the same numbers in Prometheus text format at
 * `/metrics/prometheus`. Counts, positions and pipeline latencies come from
 * the database (the same on every instance); the webhook ack time and cache
 * hit rates are this instance's own, and say so.
 */
import { Hono } from "hono";
import { Counter, Gauge, Registry } from "prom-client";
import type { AppEnv } from "../app_env.ts";
import { unrealizedPnl } from "../core/book.ts";
import { isStale } from "../core/context.ts";
import { type LatencySummary, LatencyWindow } from "../core/stats.ts";
import {
  createSignalCounter,
  positionsSnapshot,
  type SignalCounter,
  stageLatencies,
} from "../db/metrics.ts";
import type { Database } from "../db/port.ts";
import type { ContextProvider } from "../providers/context.ts";
import type { GexProvider } from "../providers/gex.ts";
import type { Worker } from "../pipeline/worker.ts";

export interface MetricsDeps {
  db: Database;
  context: ContextProvider;
  gex: GexProvider;
  /** Webhook acknowledgement times on this instance. */
  ackLatency: LatencyWindow;
  instanceId: string;
  now: () => number;
  /** A context spot older than this does not mark a position: it counts as unmarked. */
  contextMaxAgeSeconds: number;
  /**
   * This instance's worker, when it runs one (not with WORKER_ENABLED=false,
   * nor in the bench's no-database server).
   */
  worker?: Pick<Worker, "bookConflicts" | "bookLocks">;
  /** Refused webhooks answered but not recorded on this instance (over the recording budget). */
  refusalsUnrecorded?: () => number;
  /** Operator reads this instance answered 503 QUERY_TIMEOUT (past READ_QUERY_TIMEOUT_MS). */
  readsTimedOut?: () => number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

async function signalsMetrics(counts: SignalCounter) {
  const c = await counts.read();
  const decided = c.accepted + c.rejected;
  const refusals = c.refusalsByCode;
  return {
    totalSignals: c.total,
    acceptedSignals: c.accepted,
    rejectedSignals: c.rejected,
    acceptanceRate: decided === 0 ? 0 : Math.round((c.accepted / decided) * 10_000) / 10_000,
    pendingSignals: c.pending,
    failedSignals: c.failed,
    decisionsByOutcome: c.decisionsByOutcome,
    rejectionsByReason: c.rejectionsByReason,
    duplicates: refusals.DUPLICATE ?? 0,
    authFailures: refusals.UNAUTHORIZED ?? 0,
    validationFailures: (refusals.VALIDATION_FAILED ?? 0) + (refusals.INVALID_JSON ?? 0),
    rateLimited: refusals.RATE_LIMITED ?? 0,
    tooLarge: refusals.PAYLOAD_TOO_LARGE ?? 0,
    refusalsByCode: refusals,
  };
}

async function positionsMetrics(deps: MetricsDeps) {
  const { open, ...closed } = await positionsSnapshot(deps.db);
  let unrealized = 0;
  let unmarked = 0;
  const now = deps.now();
  for (const p of open) {
    if (p.mark === null || isStale(String(p.markAsOf), now, deps.contextMaxAgeSeconds)) unmarked++;
    else unrealized += unrealizedPnl(p, p.mark);
  }
  return {
    openPositions: open.length,
    totalExposure: round2(open.reduce((sum, p) => sum + p.quantity * p.entryPrice, 0)),
    unrealizedPnL: round2(unrealized),
    realizedPnL: round2(closed.realizedPnl),
    closedPositions: closed.closed,
    /** Open positions with no fresh context spot to mark them (left out of unrealizedPnL). */
    unmarkedPositions: unmarked,
  };
}

async function latencyMetrics(deps: MetricsDeps) {
  const stages = await stageLatencies(deps.db);
  const { end_to_end: endToEnd, ...pipeline } = stages;
  const empty: LatencySummary = { count: 0, p50: null, p95: null, p99: null, max: null };
  return {
    unit: "ms",
    window: "last 1000 decisions",
    endToEnd: endToEnd ?? empty,
    stages: pipeline,
    webhookAck: { ...deps.ackLatency.summary(), scope: `instance ${deps.instanceId}` },
  };
}

/** This instance's worker: how often another writer got to the book first. */
function workerMetrics(deps: MetricsDeps) {
  return deps.worker === undefined ? null : {
    scope: `instance ${deps.instanceId}`,
    bookConflicts: deps.worker.bookConflicts,
    bookLocks: deps.worker.bookLocks,
  };
}

/** This instance's webhook: refusals answered but, over the recording budget, not stored. */
function webhookMetrics(deps: MetricsDeps) {
  return {
    scope: `instance ${deps.instanceId}`,
    refusalsUnrecorded: deps.refusalsUnrecorded?.() ?? 0,
  };
}

/** This instance's operator reads given up at READ_QUERY_TIMEOUT_MS. */
function readMetrics(deps: MetricsDeps) {
  return { scope: `instance ${deps.instanceId}`, timedOut: deps.readsTimedOut?.() ?? 0 };
}

function cacheMetrics(deps: MetricsDeps) {
  const rate = (hits: number, misses: number) =>
    hits + misses === 0 ? null : Math.round((hits / (hits + misses)) * 10_000) / 10_000;
  const ctx = deps.context.stats();
  const gex = deps.gex.stats();
  return {
    scope: `instance ${deps.instanceId}`,
    context: { ...ctx, hitRate: rate(ctx.hits, ctx.misses) },
    gex: { ...gex, hitRate: rate(gex.hits, gex.misses) },
  };
}

export function metricsRoutes(deps: MetricsDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // One per app: its running totals make a scrape cost what arrived since the last one.
  const counts = createSignalCounter(deps.db);
  app.get("/metrics", async (c) => {
    const [signals, positions, latency] = await Promise.all([
      signalsMetrics(counts),
      positionsMetrics(deps),
      latencyMetrics(deps),
    ]);
    return c.json({
      signals,
      positions,
      latency,
      cache: cacheMetrics(deps),
      worker: workerMetrics(deps),
      webhook: webhookMetrics(deps),
      reads: readMetrics(deps),
      timestamp: new Date().toISOString(),
    });
  });
  app.get("/metrics/signals", async (c) => c.json(await signalsMetrics(counts)));
  app.get("/metrics/positions", async (c) => c.json(await positionsMetrics(deps)));
  app.get("/metrics/latency", async (c) => c.json(await latencyMetrics(deps)));
  app.get("/metrics/prometheus", async (c) => {
    const registry = await prometheusRegistry(deps, counts);
    return c.body(await registry.metrics(), 200, { "content-type": registry.contentType });
  });
  return app;
}

/**
 * Every series carries `scope`: "database" when it is read from the database,
 * so every instance exports the same value (aggregate with max(), never
 * sum(): N instances would count it N times), "instance" when it is this
 * process's own (sum() over instances is the total).
 */
export type Scope = "database" | "instance";

/** A registry filled from one snapshot of the metrics, so a scrape is consistent. */
async function prometheusRegistry(deps: MetricsDeps, counts: SignalCounter): Promise<Registry> {
  const [s, p, l] = await Promise.all([
    signalsMetrics(counts),
    positionsMetrics(deps),
    latencyMetrics(deps),
  ]);
  const cache = cacheMetrics(deps);
  const registry = new Registry();
  type Labels = Record<string, string>;
  /** A series' options: its prefixed name, the `scope` label beside its own, this registry. */
  const series = (name: string, help: string, labelNames: string[]) => ({
    name: `optionstrat_${name}`,
    help,
    labelNames: [...labelNames, "scope"],
    registers: [registry],
  });
  const gauge = (scope: Scope, name: string, help: string, labelNames: string[] = []) => {
    const g = new Gauge(series(name, help, labelNames));
    return { set: (labels: Labels, n: number) => g.set({ ...labels, scope }, n) };
  };
  // Cumulative counts are counters; a fresh registry per scrape makes inc(n) report the total n.
  const counter = (scope: Scope, name: string, help: string, labelNames: string[] = []) => {
    const c = new Counter(series(name, help, labelNames));
    return { inc: (labels: Labels, n: number) => c.inc({ ...labels, scope }, n) };
  };

  counter("database", "signals_total", "Signals stored (accepted at the webhook)").inc(
    {},
    s.totalSignals,
  );
  const decisions = counter("database", "decisions_total", "Decisions by outcome", ["outcome"]);
  for (const [outcome, n] of Object.entries(s.decisionsByOutcome)) decisions.inc({ outcome }, n);
  const rejections = counter("database", "rejections_total", "REJECT decisions by reason code", [
    "reason",
  ]);
  for (const [reason, n] of Object.entries(s.rejectionsByReason)) rejections.inc({ reason }, n);
  // A gauge, not a counter: maintenance deletes refusals past their retention, so it falls.
  const refusals = gauge(
    "database",
    "webhook_refusals_retained",
    "Webhook refusals and duplicates still kept (the last REFUSALS_RETENTION_DAYS), by code",
    ["code"],
  );
  for (const [code, n] of Object.entries(s.refusalsByCode)) refusals.set({ code }, n);
  gauge("database", "acceptance_rate", "Accepted decisions over all decisions (0..1)").set(
    {},
    s.acceptanceRate,
  );
  gauge("database", "signals_pending", "Signals accepted but not decided yet").set(
    {},
    s.pendingSignals,
  );
  gauge("database", "signals_failed", "Signals whose pipeline job gave up").set(
    {},
    s.failedSignals,
  );

  gauge("database", "positions_open", "Open positions").set({}, p.openPositions);
  counter("database", "positions_closed_total", "Closed positions").inc({}, p.closedPositions);
  gauge("database", "exposure_dollars", "Sum of quantity x entry price over open positions").set(
    {},
    p.totalExposure,
  );
  gauge(
    "database",
    "unrealized_pnl_dollars",
    "Unrealized PnL marked to the latest context spot",
  ).set({}, p.unrealizedPnL);
  gauge("database", "realized_pnl_dollars", "Realized PnL of closed positions").set(
    {},
    p.realizedPnL,
  );
  gauge(
    "database",
    "positions_unmarked",
    "Open positions with no fresh context spot, left out of unrealized_pnl_dollars",
  ).set({}, p.unmarkedPositions);

  // One metric, two scopes: the pipeline's stages come from the database, the ack is this instance's.
  const latency = new Gauge({
    name: "optionstrat_latency_ms",
    help: "Latency percentiles in ms (pipeline: last 1000 decisions; webhook_ack: this instance)",
    labelNames: ["stage", "quantile", "scope"],
    registers: [registry],
  });
  const put = (scope: Scope, stage: string, summary: LatencySummary) => {
    for (
      const [q, v] of [["0.5", summary.p50], ["0.95", summary.p95], ["0.99", summary.p99]] as const
    ) {
      if (v !== null) latency.set({ stage, quantile: q, scope }, v);
    }
  };
  put("database", "end_to_end", l.endToEnd);
  for (const [stage, summary] of Object.entries(l.stages)) put("database", stage, summary);
  put("instance", "webhook_ack", l.webhookAck);

  const hits = counter("instance", "cache_requests_total", "Cache lookups on this instance", [
    "cache",
    "result",
  ]);
  hits.inc({ cache: "context", result: "hit" }, cache.context.hits);
  hits.inc({ cache: "context", result: "miss" }, cache.context.misses);
  hits.inc({ cache: "gex", result: "hit" }, cache.gex.hits);
  hits.inc({ cache: "gex", result: "miss" }, cache.gex.misses);
  counter(
    "instance",
    "webhook_refusals_unrecorded_total",
    "Refused webhooks answered on this instance but not recorded: over the recording budget",
  ).inc({}, webhookMetrics(deps).refusalsUnrecorded);
  counter(
    "instance",
    "read_queries_timed_out_total",
    "Operator reads answered 503 QUERY_TIMEOUT on this instance: past READ_QUERY_TIMEOUT_MS",
  ).inc({}, readMetrics(deps).timedOut);
  const worker = workerMetrics(deps);
  if (worker !== null) {
    counter(
      "instance",
      "book_conflicts_total",
      "Decision batches decided again on this instance: another writer changed the positions first",
    ).inc({}, worker.bookConflicts);
    counter(
      "instance",
      "book_locked_writes_total",
      "Decision batches on this instance written holding the positions' lock, after losing them three times",
    ).inc({}, worker.bookLocks);
  }
  return registry;
}
