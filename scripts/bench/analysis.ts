/**
 * What the database says after a scenario, read directly with SQL (the
 * service's own timestamps and timings, not the client's):
 * - counts: signals stored vs ACCEPTED answers, DUPLICATE records, jobs left;
 * - group commit: batch sizes (signals sharing one ingest transaction, by the
 *   `txid` of their 'signal' events) and how long a signal waited for its
 *   batch to start (`signals.created_at` is the transaction's now(), i.e. its
 *   start; `received_at` is stamped by the handler before submit);
 * - decisions: end-to-end and stage timings as the worker stored them, and
 *   `decisions.created_at - signals.received_at`;
 * (per-symbol order is order_check.ts).
 * A phase's signals are selected by their alert id prefix.
 */
import type { Queryable } from "../../db/port.ts";
import { histogram, summarizeMs, type Summary } from "./stats.ts";

export interface IngestCounts {
  /** Signals of this phase stored. */
  stored: number;
  /** Every signal in the database (all phases of the scenario). */
  storedAll: number;
  /** DUPLICATE deliveries recorded in processing_errors (whole database). */
  duplicatesRecorded: number;
  /** Other refusals recorded (whole database), by code. */
  refusals: Record<string, number>;
  jobs: Record<string, number>;
  decisions: number;
}

const like = (prefix: string) => `${prefix}-%`;

export async function ingestCounts(db: Queryable, prefix: string): Promise<IngestCounts> {
  const [row] = await db.query<Record<string, number | string>>(
    `select (select count(*) from signals where alert_id like $1::text)::integer as stored,
            (select count(*) from signals)::integer as stored_all,
            (select count(*) from decisions)::integer as decisions`,
    [like(prefix)],
  );
  const refusals = await db.query<{ code: string; n: number }>(
    `select code, count(*)::integer as n from processing_errors where stage = 'ingest' group by code`,
  );
  const jobs = await db.query<{ status: string; n: number }>(
    `select status, count(*)::integer as n from pipeline_jobs group by status`,
  );
  const byCode = Object.fromEntries(refusals.map((r) => [r.code, Number(r.n)]));
  const duplicatesRecorded = byCode.DUPLICATE ?? 0;
  delete byCode.DUPLICATE;
  return {
    stored: Number(row.stored),
    storedAll: Number(row.stored_all),
    duplicatesRecorded,
    refusals: byCode,
    jobs: Object.fromEntries(jobs.map((r) => [r.status, Number(r.n)])),
    decisions: Number(row.decisions),
  };
}

export interface GroupCommitStats {
  transactions: number;
  batchSize: Summary;
  /** Batch size -> how many transactions had it. */
  batchSizes: Record<string, number>;
  /** Handler stamp to the start of the signal's ingest transaction. */
  waitForBatchMs: Summary;
  /** Between consecutive batch starts; with one flush at a time (PGlite) ~ one transaction. */
  batchStartGapMs: Summary;
}

export async function groupCommitStats(db: Queryable, prefix: string): Promise<GroupCommitStats> {
  const batches = await db.query<{ n: number; started: number }>(
    `select count(*)::integer as n,
            min(extract(epoch from s.created_at) * 1000)::float8 as started
     from events e join signals s on s.id = (e.payload->>'id')::uuid
     where e.kind = 'signal' and s.alert_id like $1::text
     group by e.txid
     order by started`,
    [like(prefix)],
  );
  const waits = await db.query<{ ms: number }>(
    `select (extract(epoch from (created_at - received_at)) * 1000)::float8 as ms
     from signals where alert_id like $1::text`,
    [like(prefix)],
  );
  const sizes = batches.map((b) => Number(b.n));
  const starts = batches.map((b) => Number(b.started));
  return {
    transactions: batches.length,
    batchSize: summarizeMs(sizes),
    batchSizes: histogram(sizes),
    waitForBatchMs: summarizeMs(waits.map((w) => Number(w.ms))),
    batchStartGapMs: summarizeMs(starts.slice(1).map((s, i) => s - starts[i])),
  };
}

export interface DecisionStats {
  decided: number;
  /** Signals of the phase without a committed decision. */
  undecided: number;
  /**
   * `timings.end_to_end_ms`: receipt to the decision's commit, timed by the worker once its
   * write returned and stored by the final-timings update (db/decisions.ts completeTimings);
   * where that update failed, receipt to just before the write.
   */
  storedEndToEndMs: Summary;
  /** `decisions.created_at - signals.received_at`: receipt to the decision transaction's start. */
  createdAtMs: Summary;
  /** Each stored stage (queue, load, context, gex, book, decide, write incl. waiting for the book row). */
  stagesMs: Record<string, Summary>;
  outcomes: Record<string, number>;
  /** Epoch ms: first and last receipt, last decision transaction start, last stored end-to-end. */
  firstReceivedMs: number | null;
  lastReceivedMs: number | null;
  lastDecisionStartMs: number | null;
  lastStoredDecisionMs: number | null;
}

export async function decisionStats(db: Queryable, prefix: string): Promise<DecisionStats> {
  const rows = await db.query<
    { timings: Record<string, number>; created: number; outcome: string }
  >(
    `select d.timings,
            (extract(epoch from (d.created_at - s.received_at)) * 1000)::float8 as created,
            d.outcome || ' ' || d.reason_code as outcome
     from decisions d join signals s on s.id = d.signal_id
     where s.alert_id like $1::text`,
    [like(prefix)],
  );
  const [edges] = await db.query<Record<string, number | null>>(
    `select (select count(*) from signals s where s.alert_id like $1::text
               and not exists (select 1 from decisions d where d.signal_id = s.id))::integer
              as undecided,
            (select extract(epoch from min(received_at)) * 1000 from signals
               where alert_id like $1::text)::float8 as first_received,
            (select extract(epoch from max(received_at)) * 1000 from signals
               where alert_id like $1::text)::float8 as last_received,
            (select extract(epoch from max(d.created_at)) * 1000
               from decisions d join signals s on s.id = d.signal_id
               where s.alert_id like $1::text)::float8 as last_decision,
            (select max(extract(epoch from s.received_at) * 1000
                        + (d.timings->>'end_to_end_ms')::float8)
               from decisions d join signals s on s.id = d.signal_id
               where s.alert_id like $1::text)::float8 as last_stored`,
    [like(prefix)],
  );
  const stages: Record<string, number[]> = {};
  const outcomes: Record<string, number> = {};
  for (const r of rows) {
    const timings = typeof r.timings === "string" ? JSON.parse(r.timings) : r.timings;
    for (const [name, ms] of Object.entries(timings as Record<string, number>)) {
      (stages[name] ??= []).push(Number(ms));
    }
    outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
  }
  const endToEnd = stages.end_to_end_ms ?? [];
  delete stages.end_to_end_ms;
  const num = (v: number | null | undefined) => (v === null || v === undefined ? null : Number(v));
  return {
    decided: rows.length,
    undecided: Number(edges.undecided),
    storedEndToEndMs: summarizeMs(endToEnd),
    createdAtMs: summarizeMs(rows.map((r) => Number(r.created))),
    stagesMs: Object.fromEntries(
      Object.entries(stages).map(([name, v]) => [name.replace(/_ms$/, ""), summarizeMs(v)]),
    ),
    outcomes,
    firstReceivedMs: num(edges.first_received),
    lastReceivedMs: num(edges.last_received),
    lastDecisionStartMs: num(edges.last_decision),
    lastStoredDecisionMs: num(edges.last_stored),
  };
}

/** Decisions whose transaction started within the window [$1, $2) (epoch ms). */
const DECIDED_IN_WINDOW =
  "d.created_at >= to_timestamp($1::float8 / 1000) and d.created_at < to_timestamp($2::float8 / 1000)";

/** What `countSql` (one row, `n`, over the window's edges $1 and $2) counts, per second of it. */
async function perSecond(
  db: Queryable,
  countSql: string,
  window: { fromMs: number; toMs: number },
): Promise<number> {
  const { fromMs, toMs } = window;
  const [row] = await db.query<{ n: number }>(countSql, [fromMs, toMs]);
  return Math.round((Number(row.n) / ((toMs - fromMs) / 1000)) * 10) / 10;
}

/** Decisions whose transaction started within [fromMs, toMs) (epoch ms), per second. */
export function decisionRate(
  db: Queryable,
  window: { fromMs: number; toMs: number },
): Promise<number> {
  return perSecond(
    db,
    `select count(*)::integer as n from decisions d where ${DECIDED_IN_WINDOW}`,
    window,
  );
}

/**
 * The worker's claims (one `locked_at` each: the claim's transaction time)
 * of the jobs whose decision committed within the window, per second.
 */
export function claimRate(
  db: Queryable,
  window: { fromMs: number; toMs: number },
): Promise<number> {
  return perSecond(
    db,
    `select count(distinct j.locked_at)::integer as n
     from decisions d join pipeline_jobs j on j.signal_id = d.signal_id
     where ${DECIDED_IN_WINDOW}`,
    window,
  );
}

/** Jobs not finished yet (pending or running): 0 means every signal has its decision. */
export async function unfinishedJobs(db: Queryable): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `select count(*)::integer as n from pipeline_jobs where status in ('pending', 'running')`,
  );
  return Number(row.n);
}
