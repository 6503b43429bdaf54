/**
 * The decision write, for a batch of claimed jobs.
 * The worker keeps the open book in memory (`BookCache`) and runs the pure
 * decision for each job in turn, each seeing the book as the ones before it
 * left it; then one statement writes every decision, position change, job
 * completion and live event, and NOTIFYs, all or nothing. It writes only if
 * the book is still the one decided on: the transaction that last changed
 * `positions` (book_version, kept by a trigger) is checked under a row lock
 * on it, so writes on every instance take turns and none can pass the
 * exposure limit on a stale book. If another writer came first, the book is
 * read again and the batch decided again; after `OPTIMISTIC_TRIES` such
 * losses it takes the lock before reading, so it cannot lose again (a batch
 * is never given up for being slower than another instance's). One instance
 * never has to: its batches take turns (pipeline/worker.ts) on the book, which
 * is read once and then kept, and a batch costs the claim and this one statement.
 */
import { applyDecision, type Book, type ClosedPosition, type OpenPosition } from "../core/book.ts";
import type { Decision } from "../core/decision.ts";
import type { ReceivedSignal } from "../core/signal.ts";
import type { NewEvent } from "./events.ts";
import type { Database, Queryable } from "./port.ts";
import { byOpening, insertByOpening, readOpenBook } from "./positions.ts";
import { EVENTS_CHANNEL } from "./signals.ts";
import { jsonKeys } from "./sql.ts";

/**
 * Tries a batch gets on the book as last read, without holding it, before it
 * takes the book's lock first: a batch that keeps losing the book to other
 * instances is then written on its next try, never given up.
 */
const OPTIMISTIC_TRIES = 3;

/**
 * The advisory lock that the releases before book_version (3ec25f7, 11-30)
 * hold from reading the book to their commit. Every write here takes it
 * first, before the book's row: during a rolling deploy or a rollback both
 * kinds decide on one database, and without it a write here landed between
 * such a release's read and its write, which then opened positions on a book
 * that no longer held (past MAX_OPEN_POSITIONS and MAX_EXPOSURE). Writes here
 * already take turns on book_version's row, so it costs them no concurrency.
 */
export const LEGACY_BOOK_LOCK = 727_002;

export class JobLostError extends Error {
  constructor(readonly jobIds: number[]) {
    super(`Jobs ${jobIds.join(", ")} are no longer claimed by this worker (their claim expired)`);
    this.name = "JobLostError";
  }
}

/**
 * The open book as this worker last read or wrote it, and its version (the
 * transaction that last changed it); `writer` null means read it first.
 */
export interface BookCache {
  writer: string | null;
  open: OpenPosition[];
  /** Batches decided again because another writer changed the book first. */
  retries: number;
  /** Batches written holding the book's lock, after losing it `OPTIMISTIC_TRIES` times. */
  locked: number;
}

export function newBookCache(): BookCache {
  return { writer: null, open: [], retries: 0, locked: 0 };
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
 * Decides and records `inputs` (in job order, so per symbol in receipt order) on the book
 * in `cache`, which it keeps up to date. Throws `JobLostError` (and writes
 * nothing) if any job is no longer claimed by `workerId`.
 */
export async function recordDecisions(
  db: Database,
  inputs: readonly DecisionInput[],
  options: {
    workerId: string;
    now: () => number;
    book: BookCache;
    /** How long the batch waited for its turn on the book; counted to its book stage. */
    waitedMs?: number;
  },
): Promise<RecordedDecision[]> {
  const cache = options.book;
  const jobIds = inputs.map((i) => i.jobId);
  /** Counted once, on the first try. */
  let waitedMs = options.waitedMs ?? 0;

  /** One attempt on `q`: the decisions written, or null if another writer changed the book first. */
  async function attempt(q: Queryable): Promise<RecordedDecision[] | null> {
    const t0 = performance.now();
    if (cache.writer === null) {
      const read = await readOpenBook(q);
      // In byOpening order (the database's may differ below a millisecond) so each
      // write only has to place the positions it opened (insertByOpening).
      Object.assign(cache, { writer: read.writer, open: read.open.sort(byOpening) });
    }
    const decidedOn = cache.writer!;
    const bookMs = round(performance.now() - t0 + waitedMs);
    waitedMs = 0;
    const { recorded, book } = decideAll(inputs, { open: cache.open }, bookMs);
    // Until completeTimings() runs after the commit, end to end stops here.
    const now = options.now();
    for (const r of recorded) {
      r.timings.end_to_end_ms = round(now - Date.parse(r.signal.receivedAt));
    }
    const tw = performance.now();
    const outcome = await writeBatch(q, recorded, inputs, {
      jobIds,
      workerId: options.workerId,
      bookWriter: decidedOn,
    });
    if (outcome.lostJobs.length > 0) throw new JobLostError(outcome.lostJobs);
    if (outcome.writer === null) return null;
    cache.writer = outcome.writer;
    // Positions from before keep the cache's order; those this batch opened are placed.
    const openedIds = new Set(recorded.flatMap((r) => (r.opened ? [r.opened.id] : [])));
    cache.open = insertByOpening(
      book.open.filter((p) => !openedIds.has(p.id)),
      book.open.filter((p) => openedIds.has(p.id)),
    );
    const writeMs = round(performance.now() - tw);
    for (const r of recorded) r.timings.write_ms = writeMs;
    return recorded;
  }

  for (let tries = 1;; tries++) {
    let recorded: RecordedDecision[] | null;
    try {
      recorded = tries <= OPTIMISTIC_TRIES
        ? await attempt(db)
        : await db.transaction(async (tx) => {
          // Another writer won the book every time: hold it while reading and writing, so
          // this batch cannot lose it again (other writers of positions wait for the commit).
          // The legacy lock first, in the order every writer takes the two.
          await tx.query(
            `select 1 from book_version, (select pg_advisory_xact_lock(${LEGACY_BOOK_LOCK})) l
             where id = 1 for update of book_version`,
          );
          cache.writer = null;
          const written = await attempt(tx);
          if (written === null) throw new Error("The book changed while this worker held its lock");
          return written;
        });
    } catch (error) {
      cache.writer = null; // nothing was written; whether the book changed is unknown
      throw error;
    }
    if (recorded !== null) {
      if (tries > OPTIMISTIC_TRIES) cache.locked++;
      return recorded;
    }
    // Another writer changed the book after it was read: nothing was written.
    cache.writer = null;
    cache.retries++;
  }
}

/** Each input's decision on the book the ones before it left, with the positions' table ids. */
function decideAll(
  inputs: readonly DecisionInput[],
  start: Book,
  bookMs: number,
): { recorded: RecordedDecision[]; book: Book } {
  let book = start;
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
  return { recorded, book };
}

interface WriteOutcome {
  /** Jobs no longer claimed by this worker; if any, nothing was written. */
  lostJobs: number[];
  /** The book's version after the write; null if it had changed first and nothing was written. */
  writer: string | null;
}

/**
 * The whole batch in one statement (so one round trip and one commit), or
 * nothing of it: positions closed and opened, decisions, job completions,
 * live events and the NOTIFY.
 */
async function writeBatch(
  db: Queryable,
  recorded: readonly RecordedDecision[],
  inputs: readonly DecisionInput[],
  batch: { jobIds: number[]; workerId: string; bookWriter: string },
): Promise<WriteOutcome> {
  // A position opened and closed within the batch (two jobs of one symbol) is
  // inserted closed: the statement cannot update a row it inserts itself.
  const closedById = new Map(recorded.flatMap((r) => r.closed).map((p) => [p.id, p]));
  const opens = recorded.flatMap((r) => r.opened ? [closedById.get(r.opened.id) ?? r.opened] : []);
  const openedHere = new Set(opens.map((p) => p.id));
  const closes = [...closedById.values()].filter((p) => !openedHere.has(p.id));
  const [row] = await db.query<{ ok: boolean; xid: string; mine: string[] | null }>(
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
      JSON.stringify(batch.jobIds),
      batch.workerId,
      batch.bookWriter,
      closes.length,
    ],
    // Planned again at every run (Postgres) or every second (PGlite): a plan kept from a
    // fresh database's first batches read every job and every position on each later
    // batch (the jobs fell behind at 1,000/s).
    { replan: true },
  );
  const mine = new Set((row.mine ?? []).map(Number));
  const lostJobs = batch.jobIds.filter((id) => !mine.has(id));
  if (!row.ok) return { lostJobs, writer: null };
  // The trigger on positions made this transaction the book's writer if a position changed.
  return { lostJobs, writer: closes.length + opens.length > 0 ? row.xid : batch.bookWriter };
}

/**
 * One batch's write. `ok` gates every change: the batch's jobs are still
 * this worker's (locked, by primary key as in db/jobs.ts CLAIM_JOBS_SQL) and
 * the book is still the version it was decided on (locked: concurrent
 * batches take turns here, and a waiting one re-reads the row once the other
 * commits, so it sees the new version). A gate is a one-time filter,
 * evaluated before its statement reads a row, so no lock is taken out of
 * order. Closing a position the book says is open cannot miss; if it did,
 * the statement fails, so the batch is undone. Returns `ok`, this
 * transaction's id (the book's version after the write if a position
 * changed: the trigger on positions sets it) and the jobs still this worker's.
 */
export const WRITE_BATCH_SQL = `with turn as (
   -- Before the row below: LEGACY_BOOK_LOCK's writers take the two in this order.
   select pg_advisory_xact_lock(${LEGACY_BOOK_LOCK})
 ), book as (
   select writer from book_version, turn where id = 1 for update of book_version
 ), mine as (
   select id from pipeline_jobs
   where id = any (${jsonKeys("$6", "bigint")})
     and (status = 'running') is true and locked_by = $7::text
   for update
 ), gate as (
   select (select writer from book) = $8::bigint
     and (select count(*) from mine) = jsonb_array_length($6::text::jsonb) as ok
 ), done as (
   update pipeline_jobs set status = 'done', finished_at = now(), last_error = null
   where id = any (array(select id from mine)) and (select ok from gate)
 ), closes as (
   update positions p set is_closed = true, exit_price = x.exit_price,
     exit_signal_id = x.exit_signal_id, closed_at = x.closed_at,
     realized_pnl = x.realized_pnl, updated_at = now()
   from jsonb_to_recordset($1::text::jsonb) as x(id uuid, exit_price numeric,
     exit_signal_id uuid, closed_at timestamptz, realized_pnl numeric)
   where p.id = any (${jsonKeys("$1", "uuid", "id")})
     and p.id = x.id and not p.is_closed and (select ok from gate)
   returning p.id
 ), opens as (
   insert into positions (id, symbol, direction, quantity, entry_price, entry_signal_id,
     opened_at, is_closed, exit_price, exit_signal_id, closed_at, realized_pnl)
   select id, symbol, direction, quantity, entry_price, entry_signal_id, opened_at, is_closed,
     exit_price, exit_signal_id, closed_at, realized_pnl
   from jsonb_to_recordset($2::text::jsonb) as x(id uuid, symbol text, direction text,
     quantity numeric, entry_price numeric, entry_signal_id uuid, opened_at timestamptz,
     is_closed boolean, exit_price numeric, exit_signal_id uuid, closed_at timestamptz,
     realized_pnl numeric)
   where (select ok from gate)
 ), decided as (
   insert into decisions (id, signal_id, outcome, reason_code, message, price, quantity,
     notional, size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings)
   select id, signal_id, outcome, reason_code, message, price, quantity, notional,
     size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings
   from jsonb_to_recordset($3::text::jsonb) as x(n integer, id uuid, signal_id uuid,
     outcome text, reason_code text, message text, price numeric, quantity numeric,
     notional numeric, size_multiplier numeric, degraded boolean, notes jsonb,
     context_snapshot_id uuid, gex_signal_id uuid, timings jsonb)
   where (select ok from gate)
   order by n
 ), live as (
   insert into events (kind, symbol, payload)
   select kind, symbol, payload
   from jsonb_to_recordset($4::text::jsonb) as x(n integer, kind text, symbol text,
     payload jsonb)
   where (select ok from gate)
   order by n
 ), notified as (
   select pg_notify($5::text, '') where (select ok from gate)
 )
 select (select ok from gate) as ok,
   case when (select ok from gate) and (select count(*) from closes) <> $9::integer
     then fail_statement('A position to close was no longer open')
   end as failed,
   (select count(*) from notified) as notified,
   txid_current()::text as xid,
   (select array_agg(id::text) from mine) as mine`;

/**
 * After the commit, the stages a transaction cannot time in itself: the write
 * and the end-to-end time to the committed decision. Best effort: a failure
 * leaves the pre-write figures, and so its commit need not wait for the disk
 * (synchronous_commit off for this one statement's transaction: a crash may
 * lose the figures, never a decision). A HOT update (the table's fillfactor
 * leaves room), so no index is touched.
 */
export async function completeTimings(
  db: Queryable,
  recorded: readonly Pick<RecordedDecision, "decisionId" | "timings">[],
) {
  await db.query(COMPLETE_TIMINGS_SQL, [
    JSON.stringify(recorded.map((r) => ({
      id: r.decisionId,
      timings: { write_ms: r.timings.write_ms, end_to_end_ms: r.timings.end_to_end_ms },
    }))),
  ], {
    // Kept, its plan was the one made for the first batches: on a fresh database a
    // sequential scan of decisions, slower with every decision until the next analyze
    // (on PGlite 758, 1,024 and 1,275 µs a call at 3,000, 4,500 and 6,000 decisions).
    replan: true,
  });
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
