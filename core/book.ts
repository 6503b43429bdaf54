/**
 * Positions on the underlying and their arithmetic: exposure, realized and
 * unrealized PnL, and `applyDecision()`, which turns a decision into the
 * next book. Pure: the database layer applies the same effects, with its own
 * ids, in one transaction.
 *
 * A CALL position is long the underlying, a PUT position short it; PnL is on
 * the underlying's price, not on option premiums.
 */
import type { ReceivedSignal } from "./signal.ts";
import type { Decision } from "./decision.ts";

export type PositionDirection = "CALL" | "PUT";

export interface OpenPosition {
  id: string;
  symbol: string;
  direction: PositionDirection;
  /** Units of the underlying, a whole number above 0. */
  quantity: number;
  entryPrice: number;
  /** When the entry signal was received (ISO 8601, UTC). */
  openedAt: string;
  entrySignalId: string;
  /**
   * The entry signal's own `timestamp` (ISO 8601): its bar's open with
   * `{{time}}`, its firing time with `{{timenow}}`. A late close closes only
   * positions whose entry signal is older than its own (`decide()`).
   */
  entrySignalTime: string;
}

export interface ClosedPosition extends OpenPosition {
  exitPrice: number;
  /** When the exit signal was received (ISO 8601, UTC). */
  closedAt: string;
  exitSignalId: string;
  realizedPnl: number;
}

export interface Book {
  open: OpenPosition[];
}

/** The effects of one decision on a book. */
export interface AppliedDecision {
  book: Book;
  opened: OpenPosition | null;
  closed: ClosedPosition[];
}

type Priced = Pick<OpenPosition, "direction" | "quantity" | "entryPrice">;

/** Dollars at entry price: the sum of quantity x entry price over the open positions. */
export function exposure(book: Book): number {
  return book.open.reduce((sum, p) => sum + p.quantity * p.entryPrice, 0);
}

/**
 * PnL of closing at `exitPrice`, in dollars rounded to the cent: CALL (long)
 * earns (exit - entry) x qty, PUT (short) the reverse. Rounded because the
 * binary difference of two decimal prices carries noise (0.01 x 17 came out
 * 0.17000000000081172), which the stored `numeric` would keep for good.
 */
export function realizedPnl(position: Priced, exitPrice: number): number {
  const perUnit = position.direction === "CALL"
    ? exitPrice - position.entryPrice
    : position.entryPrice - exitPrice;
  return Math.round(perUnit * position.quantity * 100) / 100 + 0;
}

/** PnL the position would realize if closed at `mark`. */
export function unrealizedPnl(position: Priced, mark: number): number {
  return realizedPnl(position, mark);
}

/** The id `applyDecision()` gives the position a signal opens: one entry per signal. */
export function positionIdFor(signal: Pick<ReceivedSignal, "id">): string {
  return `pos-${signal.id}`;
}

/**
 * The book after `decision` (made by `decide()` for `signal` on `book`):
 * its closes removed at their exit prices, then its new position appended.
 * A REJECT returns `book` itself. A close naming a position not in the book
 * is skipped. Positions are dated by `signal.receivedAt`.
 */
export function applyDecision(
  book: Book,
  decision: Decision,
  signal: ReceivedSignal,
): AppliedDecision {
  if (decision.outcome === "REJECT") return { book, opened: null, closed: [] };
  const exits = new Map(decision.close.map((c) => [c.positionId, c.exitPrice]));
  const closed: ClosedPosition[] = [];
  const open: OpenPosition[] = [];
  for (const position of book.open) {
    const exitPrice = exits.get(position.id);
    if (exitPrice === undefined) {
      open.push(position);
      continue;
    }
    closed.push({
      ...position,
      exitPrice,
      closedAt: signal.receivedAt,
      exitSignalId: signal.id,
      realizedPnl: realizedPnl(position, exitPrice),
    });
  }
  let opened: OpenPosition | null = null;
  if (decision.open) {
    opened = {
      id: positionIdFor(signal),
      symbol: decision.open.symbol,
      direction: decision.open.direction,
      quantity: decision.open.quantity,
      entryPrice: decision.open.entryPrice,
      openedAt: signal.receivedAt,
      entrySignalId: signal.id,
      entrySignalTime: signal.timestamp,
    };
    open.push(opened);
  }
  return { book: { open }, opened, closed };
}
