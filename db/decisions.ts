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
import { insertEvents, type NewEvent } from "./events.ts";
import type { Database, Queryable } from "./port.ts";
import { listOpenPositions } from "./positions.ts";
import { EVENTS_CHANNEL } from "./signals.ts";

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
    await tx.query("select pg_advisory_xact_lock($1::bigint)", [BOOK_LOCK]);
    let book: Book = { open: await listOpenPositions(tx) };
    const bookMs = round(performance.now() - t0);

    const recorded: Omit<RecordedDecision, "decisionId">[] = [];
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
        jobId: input.jobId,
        signal: input.signal,
        decision,
        opened,
        closed: applied.closed,
        timings: { ...input.timings, book_ms: bookMs, decide_ms: decideMs },
      });
    }

    const tw = performance.now();
    await completeJobs(tx, inputs.map((i) => i.jobId), options.workerId);
    await writePositions(tx, recorded);
    // Stored timings stop before the decision rows are written; the commit is not in them.
    const writeMs = round(performance.now() - tw);
    const now = options.now();
    for (const r of recorded) {
      r.timings.write_ms = writeMs;
      r.timings.end_to_end_ms = round(now - Date.parse(r.signal.receivedAt));
    }
    const ids = await insertDecisions(tx, recorded, inputs);
    const done = recorded.map((r, i) => ({ ...r, decisionId: ids[i] }));
    await insertEvents(tx, done.flatMap(eventsFor));
    await tx.query("select pg_notify($1::text, '')", [EVENTS_CHANNEL]);
    return done;
  });
}

async function completeJobs(tx: Queryable, jobIds: number[], workerId: string): Promise<void> {
  const rows = await tx.query<{ id: string | number }>(
    `update pipeline_jobs set status = 'done', finished_at = now(), last_error = null
     where id in (select jsonb_array_elements_text($1::text::jsonb)::bigint)
       and status = 'running' and locked_by = $2::text
     returning id`,
    [JSON.stringify(jobIds), workerId],
  );
  if (rows.length !== jobIds.length) {
    const kept = new Set(rows.map((r) => Number(r.id)));
    throw new JobLostError(jobIds.filter((id) => !kept.has(id)));
  }
}

async function writePositions(
  tx: Queryable,
  recorded: readonly Omit<RecordedDecision, "decisionId">[],
): Promise<void> {
  const closes = recorded.flatMap((r) => r.closed);
  if (closes.length > 0) {
    const rows = await tx.query(
      `update positions p set is_closed = true, exit_price = x.exit_price,
         exit_signal_id = x.exit_signal_id, closed_at = x.closed_at,
         realized_pnl = x.realized_pnl, updated_at = now()
       from jsonb_to_recordset($1::text::jsonb) as x(id uuid, exit_price numeric,
         exit_signal_id uuid, closed_at timestamptz, realized_pnl numeric)
       where p.id = x.id and not p.is_closed
       returning p.id`,
      [JSON.stringify(closes.map((c) => ({
        id: c.id,
        exit_price: c.exitPrice,
        exit_signal_id: c.exitSignalId,
        closed_at: c.closedAt,
        realized_pnl: c.realizedPnl,
      })))],
    );
    // Impossible under the book lock; if it happens, write nothing.
    if (rows.length !== closes.length) throw new Error("A position to close was no longer open");
  }
  const opens = recorded.flatMap((r) => (r.opened ? [r.opened] : []));
  if (opens.length > 0) {
    await tx.query(
      `insert into positions (id, symbol, direction, quantity, entry_price, entry_signal_id, opened_at)
       select id, symbol, direction, quantity, entry_price, entry_signal_id, opened_at
       from jsonb_to_recordset($1::text::jsonb) as x(id uuid, symbol text, direction text,
         quantity numeric, entry_price numeric, entry_signal_id uuid, opened_at timestamptz)`,
      [JSON.stringify(opens.map((p) => ({
        id: p.id,
        symbol: p.symbol,
        direction: p.direction,
        quantity: p.quantity,
        entry_price: p.entryPrice,
        entry_signal_id: p.entrySignalId,
        opened_at: p.openedAt,
      })))],
    );
  }
}

async function insertDecisions(
  tx: Queryable,
  recorded: readonly Omit<RecordedDecision, "decisionId">[],
  inputs: readonly DecisionInput[],
): Promise<string[]> {
  const rows = await tx.query<{ id: string; signal_id: string }>(
    `insert into decisions (signal_id, outcome, reason_code, message, price, quantity, notional,
       size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings)
     select signal_id, outcome, reason_code, message, price, quantity, notional, size_multiplier,
       degraded, notes, context_snapshot_id, gex_signal_id, timings
     from jsonb_to_recordset($1::text::jsonb) as x(n integer, signal_id uuid, outcome text,
       reason_code text, message text, price numeric, quantity numeric, notional numeric,
       size_multiplier numeric, degraded boolean, notes jsonb, context_snapshot_id uuid,
       gex_signal_id uuid, timings jsonb)
     order by n
     returning id, signal_id`,
    [JSON.stringify(recorded.map((r, n) => ({
      n,
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
    })))],
  );
  const bySignal = new Map(rows.map((r) => [r.signal_id, r.id]));
  return recorded.map((r) => bySignal.get(r.signal.id)!);
}

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

/** A position change as the read API spells positions. */
function positionPayload(change: "opened" | "closed", p: OpenPosition | ClosedPosition) {
  const closed = "exitPrice" in p ? p : null;
  return {
    change,
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
