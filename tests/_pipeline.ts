/** Driving the pipeline in tests: a settable clock, market data pushes, and reading results. */
import type { Services } from "../compose.ts";
import type { Database } from "../db/port.ts";
import { createWorker, type Worker, type WorkerDeps } from "../pipeline/worker.ts";
import { signed, testServices } from "./_app.ts";

/** Tue 2026-03-10 10:30 New York (EDT): a normal trading day, past the opening window. */
export const MARKET_OPEN_INSTANT = Date.parse("2026-03-10T14:30:00Z");

export interface Clock {
  now: () => number;
  set(ms: number | string): void;
  advance(ms: number): void;
}

export function clock(start: number | string = MARKET_OPEN_INSTANT): Clock {
  let t = typeof start === "string" ? Date.parse(start) : start;
  return {
    now: () => t,
    set: (ms) => {
      t = typeof ms === "string" ? Date.parse(ms) : ms;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

export async function pipelineServices(
  db: Database,
  c: Clock,
  env: Record<string, string> = {},
): Promise<Services> {
  return await testServices(db, { now: c.now, env });
}

/**
 * A worker of its own on `s`'s database, rules and providers, clocked by `c`,
 * with `deps` changed (a second worker, a different deferral, a book to look at).
 */
export function workerOn(s: Services, c: Clock, deps: Partial<WorkerDeps> = {}): Worker {
  return createWorker({
    db: s.db,
    workerId: "test-worker",
    config: s.config.worker,
    rules: s.config.rules,
    context: s.context,
    gex: s.gex,
    now: c.now,
    ...deps,
  });
}

/** Pushes context (spot, VIX, trend) for `symbol`, timed now. */
export async function pushContext(
  s: Services,
  c: Clock,
  symbol: string,
  spot: number,
  extra: { vix?: number; trend?: string } = {},
): Promise<void> {
  const res = await s.app.request("/context", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(contextBody(symbol, spot, c.now(), extra)),
  });
  if (res.status !== 201) throw new Error(`POST /context: ${res.status} ${await res.text()}`);
}

/** Pushes a small chain for `symbol` with walls well away from spot and positive GEX. */
export async function pushChain(
  s: Services,
  c: Clock,
  symbol: string,
  spot: number,
): Promise<void> {
  const res = await s.app.request("/gex/chain", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(chainBody(symbol, spot, c.now())),
  });
  if (res.status !== 201) throw new Error(`POST /gex/chain: ${res.status} ${await res.text()}`);
}

/** A POST /context body: `symbol` at `spot`, calm VIX, up trend, timed `nowMs`. */
export function contextBody(
  symbol: string,
  spot: number,
  nowMs: number,
  extra: { vix?: number; trend?: string } = {},
) {
  return {
    symbol,
    spot,
    vix: extra.vix ?? 15,
    trend: extra.trend ?? "UP",
    asOf: new Date(nowMs).toISOString(),
  };
}

/** A POST /gex/chain body: a small chain with walls well away from spot and positive GEX. */
export function chainBody(symbol: string, spot: number, nowMs: number) {
  const expiry = new Date(nowMs + 30 * 86_400_000).toISOString().slice(0, 10);
  const strikes = [0.9, 0.95, 1, 1.05, 1.1].map((k) => Math.round(spot * k));
  const contracts = strikes.flatMap((strike) => [
    { type: "CALL", strike, expiry, iv: 0.2, openInterest: strike > spot ? 5000 : 1000 },
    { type: "PUT", strike, expiry, iv: 0.2, openInterest: strike < spot ? 3000 : 500 },
  ]);
  return { symbol, spot, asOf: new Date(nowMs).toISOString(), contracts };
}

/** Sends a signal (timestamp = the clock) and returns the webhook's JSON. */
export async function send(
  s: Services,
  c: Clock,
  fields: Record<string, unknown>,
): Promise<{ status: string; signal_id: string }> {
  const body = JSON.stringify({
    source: "TradingView",
    timeframe: "5m",
    timestamp: new Date(c.now()).toISOString(),
    metadata: { score: 85, confidence: 0.85 },
    ...fields,
  });
  const res = await s.app.request("/webhook", await signed(body));
  const json = await res.json();
  if (res.status !== 200) throw new Error(`webhook: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export interface DecisionRow {
  signal_id: string;
  outcome: string;
  reason_code: string;
  message: string;
  quantity: number | null;
  degraded: boolean;
  context_snapshot_id: string | null;
  gex_signal_id: string | null;
  timings: Record<string, number>;
}

export async function decisionFor(db: Database, signalId: string): Promise<DecisionRow> {
  const [row] = await db.query<DecisionRow>(
    `select signal_id, outcome, reason_code, message, quantity::float8 as quantity, degraded,
       context_snapshot_id, gex_signal_id, timings
     from decisions where signal_id = $1::uuid`,
    [signalId],
  );
  if (!row) throw new Error(`No decision for signal ${signalId}`);
  return row;
}

export interface PositionRow {
  symbol: string;
  direction: string;
  quantity: number;
  entry_price: number;
  exit_price: number | null;
  is_closed: boolean;
  realized_pnl: number | null;
}

export async function positions(db: Database): Promise<PositionRow[]> {
  return await db.query<PositionRow>(
    `select symbol, direction, quantity::float8 as quantity, entry_price::float8 as entry_price,
       exit_price::float8 as exit_price, is_closed, realized_pnl::float8 as realized_pnl
     from positions order by opened_at, symbol, direction`,
  );
}
