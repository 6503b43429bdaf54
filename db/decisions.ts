/**
 * The decision transaction: under one advisory lock on the book (so two
 * symbols decided at once cannot both pass the exposure limit), it reads the
 * open book, runs the pure decision on it, writes the decision, closes and
 * opens positions, completes the job and adds the live events, then
 * NOTIFYs. All or nothing.
 */
import type { Book, ClosedPosition, OpenPosition } from "../core/book.ts";
import type { Decision } from "../core/decision.ts";
import type { ReceivedSignal } from "../core/signal.ts";
import { insertEvents, type NewEvent } from "./events.ts";
import { completeJob } from "./jobs.ts";
import type { Database } from "./port.ts";
import { closePositions, listOpenPositions, openPosition } from "./positions.ts";
import { EVENTS_CHANNEL } from "./signals.ts";

// Any constant; every instance must use the same one.
const BOOK_LOCK = 727_002;

export class JobLostError extends Error {
  constructor(jobId: number) {
    super(`Job ${jobId} is no longer claimed by this worker (its claim expired)`);
    this.name = "JobLostError";
  }
}

export interface DecisionRecord {
  job: { id: number; workerId: string };
  signal: ReceivedSignal;
  /** The pure decision, given the book as it is inside the transaction. */
  decideWith(book: Book): Decision;
  contextSnapshotId: string | null;
  gexSignalId: string | null;
  /** Stage timings so far, ms; book, decide, write and end_to_end are added here. */
  timings: Record<string, number>;
  /** Epoch ms clock for the end-to-end time. */
  now(): number;
}

export interface RecordedDecision {
  decisionId: string;
  decision: Decision;
  opened: OpenPosition | null;
  closed: ClosedPosition[];
  timings: Record<string, number>;
}

export function recordDecision(db: Database, r: DecisionRecord): Promise<RecordedDecision> {
  return db.transaction(async (tx) => {
    const t0 = performance.now();
    await tx.query("select pg_advisory_xact_lock($1::bigint)", [BOOK_LOCK]);
    const book: Book = { open: await listOpenPositions(tx) };
    const t1 = performance.now();
    const decision = r.decideWith(book);
    const t2 = performance.now();
    if (!await completeJob(tx, r.job.id, r.job.workerId)) throw new JobLostError(r.job.id);

    const at = new Date(r.signal.receivedAt);
    const closed = await closePositions(tx, decision.close, { signalId: r.signal.id, at });
    const opened = decision.open === null
      ? null
      : await openPosition(tx, decision.open, { signalId: r.signal.id, at });
    // Stored timings stop before the decision row is written; the commit is not in them.
    const timings = {
      ...r.timings,
      book_ms: round(t1 - t0),
      decide_ms: round(t2 - t1),
      write_ms: round(performance.now() - t2),
      end_to_end_ms: round(r.now() - Date.parse(r.signal.receivedAt)),
    };
    const [{ id: decisionId }] = await tx.query<{ id: string }>(
      `insert into decisions (signal_id, outcome, reason_code, message, price, quantity, notional,
         size_multiplier, degraded, notes, context_snapshot_id, gex_signal_id, timings)
       values ($1::uuid, $2::text, $3::text, $4::text, $5::numeric, $6::numeric, $7::numeric,
         $8::numeric, $9::boolean, $10::text::jsonb, $11::uuid, $12::uuid, $13::text::jsonb)
       returning id`,
      [
        r.signal.id,
        decision.outcome,
        decision.reason,
        decision.message,
        finiteOrNull(decision.price),
        decision.size?.quantity ?? null,
        decision.size?.notional ?? null,
        decision.size?.multiplier ?? null,
        decision.degraded,
        JSON.stringify(decision.notes),
        r.contextSnapshotId,
        r.gexSignalId,
        JSON.stringify(timings),
      ],
    );

    const events: NewEvent[] = [{
      kind: "decision",
      symbol: r.signal.symbol,
      payload: {
        id: decisionId,
        signal_id: r.signal.id,
        symbol: r.signal.symbol,
        direction: r.signal.direction,
        action: r.signal.action,
        outcome: decision.outcome,
        reason_code: decision.reason,
        message: decision.message,
        price: finiteOrNull(decision.price),
        quantity: decision.size?.quantity ?? null,
        degraded: decision.degraded,
        end_to_end_ms: timings.end_to_end_ms,
      },
    }];
    for (const p of closed) {
      events.push({ kind: "position", symbol: p.symbol, payload: positionPayload("closed", p) });
    }
    if (opened) {
      events.push({
        kind: "position",
        symbol: opened.symbol,
        payload: positionPayload("opened", opened),
      });
    }
    await insertEvents(tx, events);
    await tx.query("select pg_notify($1::text, '')", [EVENTS_CHANNEL]);
    return { decisionId, decision, opened, closed, timings };
  });
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
