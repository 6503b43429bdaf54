/**
 * Metrics read from the database, so every instance reports the same
 * numbers and they survive restarts.
 */
import type { LatencySummary } from "../core/stats.ts";
import { queueDepth } from "./jobs.ts";
import type { Queryable } from "./port.ts";

export interface SignalCounts {
  total: number;
  /** Decided ENTER or EXIT. */
  accepted: number;
  /** Decided REJECT. */
  rejected: number;
  /** Accepted at the webhook, not yet decided. */
  pending: number;
  /** Gave up after retries (see processing_errors). */
  failed: number;
  decisionsByOutcome: Record<string, number>;
  rejectionsByReason: Record<string, number>;
  /**
   * Webhook refusals and duplicates still kept (maintenance deletes them after
   * REFUSALS_RETENTION_DAYS), by processing_errors code: it falls as they go.
   */
  refusalsByCode: Record<string, number>;
}

export interface SignalCounter {
  /** The counts now; concurrent reads take turns, so none counts a row twice. */
  read(): Promise<SignalCounts>;
}

/**
 * Signals added since the last read, through signals_seq_key: those with
 * `seq` in ($1, $2]. Signals draw `seq` under the ingest order lock
 * (db/signals.ts) and decisions under the lock on the book's version row
 * (db/decisions.ts), each held to the commit, so rows become visible in `seq`
 * order: once `seq` n is seen (NEWEST_SEQ_SQL), every row at or below it is
 * visible and none can appear later, so counting up to n misses none and
 * counts none twice.
 */
export const SIGNALS_SINCE_SQL = `select count(*)::integer as n
   from signals where seq > $1::bigint and seq <= $2::bigint`;
/** Decisions with `seq` in ($1, $2], by outcome and reason, through decisions_seq_key. */
export const DECISIONS_SINCE_SQL = `select outcome, reason_code, count(*)::integer as n
   from decisions where seq > $1::bigint and seq <= $2::bigint group by outcome, reason_code`;
/** The newest `seq` of each table, by its index. */
const NEWEST_SEQ_SQL = `select (select max(seq) from signals)::text as signals,
     (select max(seq) from decisions)::text as decisions`;

/**
 * Most `seq` values one counting statement covers. PGlite runs one statement
 * at a time and the webhooks wait behind each: the first read of a process
 * counts the whole history, and at 500,000 signals and decisions in one
 * statement each it held that thread 0.8-3.2 s (17 of 132 webhooks beside it
 * answered 503 past their 2 s deadline), so it counts in slices, with room
 * for the webhooks between them.
 */
export const COUNT_SLICE = 100_000;

/** `[from, to]` ranges of at most `slice` seq values covering (after, newest]. */
export function countSlices(
  after: string,
  newest: string | null,
  slice: number,
): [string, string][] {
  const out: [string, string][] = [];
  if (newest === null) return out;
  const top = BigInt(newest);
  for (let from = BigInt(after); from < top; from += BigInt(slice)) {
    const to = from + BigInt(slice) < top ? from + BigInt(slice) : top;
    out.push([String(from), String(to)]);
  }
  return out;
}

/**
 * Running totals for /metrics: the first read counts every signal and
 * decision, later ones add only the rows committed since (see
 * SIGNALS_SINCE_SQL), so a scrape costs what arrived since the last one, not
 * the whole history (at 300,000 signals a full recount took 67 ms on
 * Postgres and 161 ms of PGlite's one thread, growing with the tables); a
 * long stretch is counted `slice` seq values a statement (COUNT_SLICE).
 * Jobs (unfinished, failed) and refusals are read whole, through their
 * partial indexes and a far smaller table. Rows deleted by hand from
 * decisions stay counted until the process restarts (signals cannot be
 * deleted).
 */
export function createSignalCounter(
  db: Queryable,
  options: { slice?: number } = {},
): SignalCounter {
  const slice = options.slice ?? COUNT_SLICE;
  let signals = { total: 0, after: "0" };
  const decided = new Map<string, { outcome: string; reason: string; n: number }>();
  let decidedAfter = "0";
  let turn: Promise<unknown> = Promise.resolve();

  async function catchUp(): Promise<SignalCounts> {
    const [newest] = await db.query<{ signals: string | null; decisions: string | null }>(
      NEWEST_SEQ_SQL,
    );
    // Each slice is added with its end, so a read that fails part way keeps what it counted.
    for (const [from, to] of countSlices(signals.after, newest.signals, slice)) {
      const [s] = await db.query<{ n: number }>(SIGNALS_SINCE_SQL, [from, to]);
      signals = { total: signals.total + Number(s.n), after: to };
    }
    for (const [from, to] of countSlices(decidedAfter, newest.decisions, slice)) {
      const added = await db.query<{ outcome: string; reason_code: string; n: number }>(
        DECISIONS_SINCE_SQL,
        [from, to],
      );
      for (const row of added) {
        const key = `${row.outcome}\u0000${row.reason_code}`;
        const n = (decided.get(key)?.n ?? 0) + Number(row.n);
        decided.set(key, { outcome: row.outcome, reason: row.reason_code, n });
      }
      decidedAfter = to;
    }
    const jobs = await queueDepth(db);
    // Only the webhook's: a pipeline give-up (PIPELINE_FAILED) is a failed signal, counted above.
    const refusals = await db.query<{ code: string; n: number }>(
      `select code, count(*)::integer as n from processing_errors where stage = 'ingest'
       group by code`,
    );
    const decisionsByOutcome: Record<string, number> = { ENTER: 0, EXIT: 0, REJECT: 0 };
    const rejectionsByReason: Record<string, number> = {};
    for (const { outcome, reason, n } of decided.values()) {
      decisionsByOutcome[outcome] = (decisionsByOutcome[outcome] ?? 0) + n;
      if (outcome === "REJECT") rejectionsByReason[reason] = n;
    }
    return {
      total: signals.total,
      accepted: decisionsByOutcome.ENTER + decisionsByOutcome.EXIT,
      rejected: decisionsByOutcome.REJECT,
      pending: jobs.pending + jobs.running,
      failed: jobs.failed,
      decisionsByOutcome,
      rejectionsByReason,
      refusalsByCode: Object.fromEntries(refusals.map((r) => [r.code, Number(r.n)])),
    };
  }

  return {
    read() {
      const counts = turn.then(catchUp, catchUp);
      turn = counts.catch(() => {});
      return counts;
    },
  };
}

export interface MarkedPosition {
  id: string;
  symbol: string;
  direction: "CALL" | "PUT";
  quantity: number;
  entryPrice: number;
  openedAt: string;
  /** Latest context spot for the symbol, null when none is stored. */
  mark: number | null;
  markAsOf: string | null;
}

export interface PositionsSnapshot {
  open: MarkedPosition[];
  closed: number;
  realizedPnl: number;
}

/**
 * Open positions, with the latest context spot of their symbol as the mark,
 * and the count and realized PnL of closed ones, in one statement: read
 * apart, a close committed between the reads counted its position open
 * (exposure, unrealized PnL) and closed (realized PnL) at once.
 */
export async function positionsSnapshot(db: Queryable): Promise<PositionsSnapshot> {
  const rows = await db.query<{
    closed: number;
    realized: string | number;
    id: string | null;
    symbol: string;
    direction: "CALL" | "PUT";
    quantity: string | number;
    entry_price: string | number;
    opened_at: Date;
    spot: string | number | null;
    as_of: Date | null;
  }>(
    `with closed as (
       select count(*)::integer as closed, coalesce(sum(realized_pnl), 0) as realized
       from positions where is_closed
     )
     select closed.closed, closed.realized, o.*
     from closed
     left join lateral (
       select p.id, p.symbol, p.direction, p.quantity, p.entry_price, p.opened_at, c.spot, c.as_of
       from positions p
       left join lateral (
         select spot, as_of from context_snapshots cs
         where cs.symbol = p.symbol order by as_of desc, created_at desc limit 1
       ) c on true
       where not p.is_closed
     ) o on true
     order by o.opened_at, o.id`,
  );
  return {
    open: rows.filter((r) => r.id !== null).map((r) => ({
      id: r.id!,
      symbol: r.symbol,
      direction: r.direction,
      quantity: Number(r.quantity),
      entryPrice: Number(r.entry_price),
      openedAt: r.opened_at.toISOString(),
      mark: r.spot === null ? null : Number(r.spot),
      markAsOf: r.as_of?.toISOString() ?? null,
    })),
    closed: Number(rows[0].closed),
    realizedPnl: Number(rows[0].realized),
  };
}

/** p50/p95/p99 per pipeline stage over the most recent `window` decisions. */
export async function stageLatencies(
  db: Queryable,
  window = 1000,
): Promise<Record<string, LatencySummary>> {
  const rows = await db.query<
    { stage: string; n: number; p50: number; p95: number; p99: number; max: number }
  >(
    `with recent as (select timings from decisions order by created_at desc limit $1::integer)
     select t.key as stage, count(*)::integer as n,
       percentile_cont(0.5) within group (order by t.value::float8) as p50,
       percentile_cont(0.95) within group (order by t.value::float8) as p95,
       percentile_cont(0.99) within group (order by t.value::float8) as p99,
       max(t.value::float8) as max
     from recent, jsonb_each_text(recent.timings) as t(key, value)
     group by t.key`,
    [window],
  );
  const round = (n: number) => Math.round(Number(n) * 100) / 100;
  return Object.fromEntries(rows.map((r) => [
    r.stage.replace(/_ms$/, ""),
    {
      count: Number(r.n),
      p50: round(r.p50),
      p95: round(r.p95),
      p99: round(r.p99),
      max: round(r.max),
    },
  ]));
}
