/**
 * The decision transaction, for a batch of claimed jobs (at most one per
 * symbol). Under one advisory lock on the book (so decisions on any instance
 * never both pass the exposure limit) it reads the open book, runs the pure
 * decision for each job in turn, each seeing the book as the ones before it
 * left it, then writes every decision, position change, job completion and
 * live event, and NOTIFYs. All or nothing: one commit for the whole batch.
 */
import { applyDecision, type Book, type ClosedPosition, type OpenPosition } from "../core/book.ts";
import type { Decision } from "../core/decision.ts";
import type { ReceivedSignal } from "../core/signal.ts";
import type { NewEvent } from "./events.ts";
import type { Database, Queryable } from "./port.ts";
import { listOpenPositions } from "./positions.ts";
import { EVENTS_CHANNEL } from "./signals.ts";
import { jsonKeys } from "./sql.ts";

// Any constant; every instance must use the same one.
const BOOK_LOCK = 727_002;

export class JobLostError extends Error {
  constructor(readonly jobIds: number[]) {
    super(`Jobs ${jobIds.join(", ")} are no longer claimed by this worker (their claim expired)`);
    this.name = "JobLostError";
  }
}

export interface DecisionInput {
  jobId: number;
  signal: ReceivedSignal;
  /** The pure decision for this signal on `book`. */
  decideWith(book: Book): Decision;
  contextSnapshotId: string | null;
  gexSignalId: string | null;
  /** Stage timings so far, ms; book, decide, write and end_to_end are added here. */
  timings: Record<string, number>;
}

export interface RecordedDecision {
  decisionId: string;
  jobId: number;
  signal: ReceivedSignal;
  decision: Decision;
  opened: OpenPosition | null;
  closed: ClosedPosition[];
  timings: Record<string, number>;
}

/**
 * Decides and records `inputs` (distinct symbols, in job order) in one
 * transaction. Throws `JobLostError` (and writes nothing) if any job is no
 * longer claimed by `workerId`.
 */
export function recordDecisions(
  db: Database,
  inputs: readonly DecisionInput[],
  options: { workerId: string; now: () => number },
): Promise<RecordedDecision[]> {
  return db.transaction(async (tx) => {
    const t0 = performance.now();
    // Sent together, run in order on the transaction's connection: the book is read once the
    // lock is held, so its snapshot includes every earlier batch, and no round trip passes
    // between the two while the lock (and, on PGlite, its one thread) is held.
    const [, open] = await inOrder(
      lockBookAndCompleteJobs(tx, inputs.map((i) => i.jobId), options.workerId),
      listOpenPositions(tx),
    );
    let book: Book = { open };
    const bookMs = round(performance.now() - t0);

    const recorded: RecordedDecision[] = [];
    for (const input of inputs) {
      const t = performance.now();
      const decision = input.decideWith(book);
      const decideMs = round(performance.now() - t);
      const applied = applyDecision(book, decision, input.signal);
      let opened = applied.opened;
      if (opened !== null) {
        // The pure book names new positions after their signal; the table wants a uuid.
        const id = crypto.randomUUID();
        const before = opened.id;
        opened = { ...opened, id };
        book = { open: applied.book.open.map((p) => (p.id === before ? opened! : p)) };
      } else {
        book = applied.book;
      }
      recorded.push({
        decisionId: crypto.randomUUID(),
        jobId: input.jobId,
        signal: input.signal,
        decision,
        opened,
        closed: applied.closed,
        timings: { ...input.timings, book_ms: bookMs, decide_ms: decideMs },
      });
    }
    // Until completeTimings() runs after the commit, end to end stops here.
    const now = options.now();
    for (const r of recorded) {
      r.timings.end_to_end_ms = round(now - Date.parse(r.signal.receivedAt));
    }
    const tw = performance.now();
    await writeBatch(tx, recorded, inputs);
    const writeMs = round(performance.now() - tw);
    for (const r of recorded) r.timings.write_ms = writeMs;
    return recorded;
  });
}

/**
 * Both results, or the first failure in the order given (a statement after a
 * failed one fails too, "transaction aborted", which would hide the cause).
 */
async function inOrder<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === "rejected") throw ra.reason;
  if (rb.status === "rejected") throw rb.reason;
  return [ra.value, rb.value];
}

/**
 * Takes the book lock and marks the batch's jobs done, in one round trip; a job
 * no longer claimed by this worker (its claim expired) aborts the batch.
 */
async function lockBookAndCompleteJobs(tx: Queryable, jobIds: number[], workerId: string) {
  const [row] = await tx.query<{ done: number[] | null }>(COMPLETE_JOBS_SQL, [
    JSON.stringify(jobIds),
    workerId,
    BOOK_LOCK,
  ]);
  const kept = new Set((row.done ?? []).map(Number));
  if (kept.size !== jobIds.length) throw new JobLostError(jobIds.filter((id) => !kept.has(id)));
}

/**
 * By primary key (db/sql.ts jsonKeys). With `status = 'running'` the planner
 * could read every active job through their partial index instead (12 ms per
 * batch under the bench's backlog); `(...) is true` keeps that index out, as
 * in db/jobs.ts CLAIM_JOBS_SQL (tests/query_plans_test.ts).
 */
export const COMPLETE_JOBS_SQL = `with done as (
     update pipeline_jobs set status = 'done', finished_at = now(), last_error = null
     where id = any (${jsonKeys("$1", "bigint")})
       and (status = 'running') is true and locked_by = $2::text
     returning id
   )
   select pg_advisory_xact_lock($3::bigint) as locked,
     (select array_agg(id::integer) from done) as done`;

/** Positions closed and opened, decisions, live events and the NOTIFY: one statement. */
async function writeBatch(
  tx: Queryable,
  recorded: readonly RecordedDecision[],
  inputs: readonly DecisionInput[],
): Promise<void> {
  const closes = recorded.flatMap((r) => r.closed);
  const opens = recorded.flatMap((r) => (r.opened ? [r.opened] : []));
  const [row] = await tx.query<{ closed: number }>(
    WRITE_BATCH_SQL,
    [
      // jsonb_to_recordset takes the columns it names and ignores the rest.
      JSON.stringify(closes.map(positionRow)),
      JSON.stringify(opens.map(positionRow)),
      JSON.stringify(recorded.map((r, n) => ({
        n,
        id: r.decisionId,
        signal_id: r.signal.id,
        outcome: r.decision.outcome,
        reason_code: r.decision.reason,
        message: r.decision.message,
        price: finiteOrNull(r.decision.price),
        quantity: r.decision.size?.quantity ?? null,
        notional: r.decision.size?.notional ?? null,
        size_multiplier: r.decision.size?.multiplier ?? null,
        degraded: r.decision.degraded,
        notes: r.decision.notes,
        context_snapshot_id: inputs[n].contextSnapshotId,
        gex_signal_id: inputs[n].gexSignalId,
        timings: r.timings,
      }))),
      JSON.stringify(recorded.flatMap(eventsFor).map((e, n) => ({ n, ...e }))),
      EVENTS_CHANNEL,
    ],
  );
  // Impossible under the book lock; if it happens, the transaction writes nothing.
  if (row.closed !== closes.length) throw new Error("A position to close was no longer open");
}

/** Positions closed and opened, decisions, live events and the NOTIFY of one batch. */
export const WRITE_BATCH_SQL = `with closes as (
   update positions p set is_closed = true, exit_price = x.exit_price,
     exit_signal_id = x.exit_signal_id, closed_at = x.closed_at,
     realized_pnl = x.realized_pnl, updated_at = now()
   from jsonb_to_recordset($1::text::jsonb) as x(id uuid, exit_price numeric,
     exit_signal_id uuid, closed_at timestamptz, realized_pnl numeric)
   where p.id = any (${jsonKeys("$1", "uuid", "id")})
     and p.id = x.id and not p.is_closed
   returning p.id
 ), opens as (
   insert into positions (id, symbol, direction, quantity, entry_price, entry_signal_id,
     opened_at)
   select id, symbol, direction, quantity, entry_price, entry_signal_id, opened_at
   from jsonb_to_recordset($2::text::jsonb) as x(id uuid, symbol text, direction text,
     quantity numeric, entry_price numeric, entry_signal_id uuid, opened_at timestamptz)
 ), decided as (
   insert into decisions (id, signal_id, outcome, reason_code, message, price, quantity,
     notional, size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings)
   select id, signal_id, outcome, reason_code, message, price, quantity, notional,
     size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings
   from jsonb_to_recordset($3::text::jsonb) as x(n integer, id uuid, signal_id uuid,
     outcome text, reason_code text, message text, price numeric, quantity numeric,
     notional numeric, size_multiplier numeric, degraded boolean, notes jsonb,
     context_snapshot_id uuid, gex_signal_id uuid, timings jsonb)
   order by n
 ), live as (
   insert into events (kind, symbol, payload)
   select kind, symbol, payload
   from jsonb_to_recordset($4::text::jsonb) as x(n integer, kind text, symbol text,
     payload jsonb)
   order by n
 ), notified as (
   select pg_notify($5::text, '')
 )
 select (select count(*)::integer from closes) as closed,
   (select count(*) from notified) as notified`;

/**
 * After the commit, the stages a transaction cannot time in itself: the write
 * and the end-to-end time to the committed decision. Best effort: a failure
 * leaves the pre-write figures, and so its commit need not wait for the disk
 * (synchronous_commit off for this one statement's transaction: a crash may
 * lose the figures, never a decision). A HOT update (the table's fillfactor
 * leaves room), so no index is touched.
 */
export async function completeTimings(db: Queryable, recorded: readonly RecordedDecision[]) {
  await db.query(COMPLETE_TIMINGS_SQL, [
    JSON.stringify(recorded.map((r) => ({
      id: r.decisionId,
      timings: { write_ms: r.timings.write_ms, end_to_end_ms: r.timings.end_to_end_ms },
    }))),
  ]);
}

/** By primary key (db/sql.ts jsonKeys: a plain join took 2 ms per batch at 12,000 decisions). */
export const COMPLETE_TIMINGS_SQL =
  `with no_wait as (select set_config('synchronous_commit', 'off', true))
   update decisions d set timings = d.timings || x.timings
   from jsonb_to_recordset($1::text::jsonb) as x(id uuid, timings jsonb), no_wait
   where d.id = any (${jsonKeys("$1", "uuid", "id")}) and d.id = x.id`;

function eventsFor(r: RecordedDecision): NewEvent[] {
  const d = r.decision;
  const events: NewEvent[] = [{
    kind: "decision",
    symbol: r.signal.symbol,
    payload: {
      id: r.decisionId,
      signal_id: r.signal.id,
      symbol: r.signal.symbol,
      direction: r.signal.direction,
      action: r.signal.action,
      outcome: d.outcome,
      reason_code: d.reason,
      message: d.message,
      price: finiteOrNull(d.price),
      quantity: d.size?.quantity ?? null,
      degraded: d.degraded,
      end_to_end_ms: r.timings.end_to_end_ms,
    },
  }];
  for (const p of r.closed) {
    events.push({ kind: "position", symbol: p.symbol, payload: positionPayload("closed", p) });
  }
  if (r.opened) {
    events.push({
      kind: "position",
      symbol: r.opened.symbol,
      payload: positionPayload("opened", r.opened),
    });
  }
  return events;
}

/** A position change (live event) as the read API spells positions. */
function positionPayload(change: "opened" | "closed", p: OpenPosition | ClosedPosition) {
  return { change, ...positionRow(p) };
}

/** A position as a `positions` row, open or closed. */
function positionRow(p: OpenPosition | ClosedPosition) {
  const closed = "exitPrice" in p ? p : null;
  return {
    id: p.id,
    symbol: p.symbol,
    direction: p.direction,
    quantity: p.quantity,
    entry_price: p.entryPrice,
    entry_signal_id: p.entrySignalId,
    opened_at: p.openedAt,
    is_closed: closed !== null,
    exit_price: closed?.exitPrice ?? null,
    exit_signal_id: closed?.exitSignalId ?? null,
    closed_at: closed?.closedAt ?? null,
    realized_pnl: closed?.realizedPnl ?? null,
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function finiteOrNull(n: number | null): number | null {
  return n !== null && Number.isFinite(n) ? n : null;
}
