/**
 * `decide()`: what to do with one received signal, given the market context,
 * the GEX levels and the open book. Pure and total: it never throws, and a
 * missing or unusable input (NaN price, context for another symbol) is a
 * reason, not an error.
 *
 * Checks, in order; the first failure is the decision's reason:
 * 1. INVALID_SIGNAL: `receivedAt` or `timestamp` is not an ISO 8601 time
 *    with a zone, or the direction or action is unknown.
 * 2. MARKET_CLOSED: the market is not open at `receivedAt` (never the time
 *    the signal claims), unless `rules.marketHours.enforce` is off. Within
 *    `exitMinutesAfterClose` of a regular close, a signal that closes a
 *    position (an exit, or an entry opposite one) still closes it; it opens
 *    nothing.
 * 3. FUTURE_SIGNAL, STALE_SIGNAL: the timestamp against `receivedAt`, and
 *    against `decidedAtMs` when given (see `checkFreshness`): a signal
 *    decided late, behind a backlog, is as stale as its age then. A stale
 *    signal that closes positions (an exit, or an entry opposite them) still
 *    closes those whose entry alert is dated before it, at the context spot
 *    when that is newer than the signal, and opens nothing; with none such it
 *    is refused.
 * Then an exit (action EXIT; direction EXIT flattens every position of the
 * symbol, CALL or PUT closes that one):
 * 4. NO_POSITION: nothing to close. 5. NO_PRICE: no price from the signal,
 *    a usable context, or even `lastKnown`. Else EXIT_APPROVED, at the
 *    signal's price, or at the context spot when the two are further apart
 *    than `maxPriceDeviationPct`, or at last at `lastKnown`'s spot.
 * An entry with no opposite position open runs the entry checks of
 * `checkEntry` (time of day, quality, missing data, price and PRICE_MISMATCH, VIX, GEX, book,
 * size, exposure) and gives ENTRY_APPROVED or the first failure.
 *
 * An entry opposite an open position of its symbol (a CALL while a PUT is
 * open) is first an exit: it needs only checks 1 to 3 and a price (else
 * NO_PRICE), and closes that position whatever the entry's own checks say,
 * because closing reduces risk and the strategy has left that side; leaving
 * it open would drift from the strategy. Then, with `rules.flip` on and the
 * entry passing its checks against the book after the close, it also opens
 * the new position (ENTER, FLIPPED). Otherwise it only closes (EXIT,
 * CLOSED_BY_OPPOSITE), and a note says why no entry was made: "Flip is off",
 * or the entry's own reason code and message ("LOW_CONFIDENCE: ...").
 *
 * A REJECT never closes or opens anything.
 */
import { money, num, nyTime } from "./_format.ts";
import { type Book, type OpenPosition, type PositionDirection, realizedPnl } from "./book.ts";
import {
  inExitGrace,
  lastKnownPrice,
  noPriceMessage,
  parseInstant,
  statusAt,
  usableData,
  usablePrice,
} from "./decision_inputs.ts";
import { checkEntry } from "./entry_checks.ts";
import { checkFreshness } from "./freshness.ts";
import type { GexLevels, MarketContext } from "./market_data.ts";
import type { Rules } from "./rules.ts";
import type { ReceivedSignal } from "./signal.ts";
import type { Decision, Outcome, PositionClose, ReasonCode, Rejection } from "./decision.ts";

export type {
  Decision,
  Outcome,
  PositionClose,
  PositionOpen,
  PositionSize,
  ReasonCode,
  Rejection,
} from "./decision.ts";
export { REASON_CODES } from "./decision.ts";

/**
 * The decision for `signal` (see the module doc for the order of checks).
 * `lastKnown`, the newest context of the symbol however old, is only the last
 * resort price of a close: a position the strategy has left must not stay
 * open (NO_PRICE is final) because the context went stale. `decidedAtMs` is
 * when the decision is made (the worker's clock; null: as of receipt).
 */
export function decide(
  signal: ReceivedSignal,
  context: MarketContext | null,
  gex: GexLevels | null,
  book: Book,
  rules: Rules,
  lastKnown: MarketContext | null = null,
  decidedAtMs: number | null = null,
): Decision {
  const notes: string[] = [];
  const data = usableData(signal, context, gex, notes);
  const { price, mismatch } = usablePrice(signal, data.context, rules.maxPriceDeviationPct, notes);
  const degraded = (data.context === null || data.gex === null || data.vix === null) &&
    rules.degraded.policy === "REDUCE";
  // The price a decision shows: a close's last resort price once it is known.
  let shownPrice = price;
  const decision = (outcome: Outcome, reason: ReasonCode, message: string): Decision => ({
    outcome,
    reason,
    message,
    price: shownPrice,
    size: null,
    close: [],
    open: null,
    degraded,
    notes,
  });
  const reject = (r: Rejection) => decision("REJECT", r.reason, r.message);

  const receivedMs = parseInstant(signal.receivedAt);
  const claimedMs = parseInstant(signal.timestamp);
  const invalid = Number.isNaN(receivedMs)
    ? `receivedAt "${String(signal.receivedAt).slice(0, 40)}" is not an ISO 8601 time`
    : Number.isNaN(claimedMs)
    ? `timestamp "${String(signal.timestamp).slice(0, 40)}" is not an ISO 8601 time`
    : !["CALL", "PUT", "EXIT"].includes(signal.direction)
    ? `direction "${String(signal.direction).slice(0, 40)}" is not CALL, PUT or EXIT`
    : !["ENTRY", "EXIT"].includes(signal.action)
    ? `action "${String(signal.action).slice(0, 40)}" is not ENTRY or EXIT`
    : null;
  if (invalid !== null) return reject({ reason: "INVALID_SIGNAL", message: `Signal ${invalid}` });

  const symbol = signal.symbol;
  const isExit = signal.action === "EXIT" || signal.direction === "EXIT";
  const side = signal.direction === "EXIT" ? null : signal.direction;
  // An exit closes its targets; an entry closes the opposite side's positions.
  let targets = book.open.filter((p) =>
    p.symbol === symbol && (isExit ? side === null || p.direction === side : p.direction !== side)
  );

  const receivedAt = new Date(receivedMs);
  const status = rules.marketHours.enforce ? statusAt(receivedAt, rules) : null;
  const closedMessage = status === null || status.open
    ? null
    : `Market is closed at ${nyTime(receivedAt)} on ${status.date} (${
      status.holiday ?? (status.tradingDay ? `session ${status.session}` : "not a trading day")
    })`;
  if (closedMessage !== null) {
    if (targets.length === 0 || !inExitGrace(status!, receivedMs, rules)) {
      return reject({ reason: "MARKET_CLOSED", message: closedMessage });
    }
    notes.push(
      `After the ${nyTime(status!.regularClose!)} close: closing only, ` +
        `within ${rules.marketHours.exitMinutesAfterClose} minutes of it`,
    );
  }
  const freshness = checkFreshness(claimedMs, receivedMs, signal.timeframe, rules, decidedAtMs);
  let late: string | null = null;
  if (!freshness.fresh) {
    // A late close still closes what the strategy had entered before it: left
    // open, such a position would stay in the book (and count against the
    // limits) until the next exit. One whose entry alert is dated at the
    // signal's time or later may postdate the exit, so it stays.
    const earlier = freshness.reason === "STALE_SIGNAL"
      ? targets.filter((p) => parseInstant(p.entrySignalTime) < claimedMs)
      : [];
    if (earlier.length === 0) return reject(freshness);
    late = `${freshness.reason}: ${freshness.message}`;
    notes.push(`${late}; closing only positions whose entry alert is dated before it`);
    for (const kept of targets.filter((p) => !earlier.includes(p))) {
      notes.push(
        `Left open: ${kept.direction} ${symbol}, its entry alert dated ${kept.entrySignalTime}`,
      );
    }
    targets = earlier;
  }

  if (isExit && targets.length === 0) {
    return reject({
      reason: "NO_POSITION",
      message: `No open ${side ? `${side} ` : ""}position in ${symbol} to close`,
    });
  }
  const closePrice =
    (late !== null ? lateClosePrice(data.context, claimedMs, price, notes) : null) ?? price ??
      (targets.length > 0 ? lastKnownPrice(signal, lastKnown, notes) : null);
  if (targets.length > 0 && closePrice === null) {
    return reject({ reason: "NO_PRICE", message: noPriceMessage(symbol) });
  }
  const close = closePrice === null ? [] : closesAt(targets, closePrice);
  shownPrice = closePrice;
  const closing = close.length > 0 ? closeMessage(targets, close) : "";
  if (isExit) return { ...decision("EXIT", "EXIT_APPROVED", closing), close };

  const direction: PositionDirection = side === "PUT" ? "PUT" : "CALL";
  if (late !== null) {
    const message = `${closing}; the ${direction} entry is refused (STALE_SIGNAL)`;
    return { ...decision("EXIT", "CLOSED_BY_OPPOSITE", message), close };
  }
  if (closedMessage !== null) {
    notes.push(`MARKET_CLOSED: ${closedMessage}`);
    const message = `${closing}; the ${direction} entry is refused (MARKET_CLOSED)`;
    return { ...decision("EXIT", "CLOSED_BY_OPPOSITE", message), close };
  }
  if (close.length > 0 && !rules.flip) {
    notes.push(`Flip is off: the ${direction} entry is not opened`);
    return { ...decision("EXIT", "CLOSED_BY_OPPOSITE", closing), close };
  }
  const entry = checkEntry({
    signal,
    direction,
    receivedAt,
    status,
    context: data.context,
    gex: data.gex,
    vix: data.vix,
    price,
    priceMismatch: mismatch,
    book: { open: book.open.filter((p) => !targets.includes(p)) },
  }, rules);
  if ("reason" in entry) {
    if (close.length === 0) return reject(entry);
    notes.push(`${entry.reason}: ${entry.message}`);
    const message = `${closing}; the ${direction} entry is refused (${entry.reason})`;
    return { ...decision("EXIT", "CLOSED_BY_OPPOSITE", message), close };
  }
  notes.push(...entry.notes);
  const entryPrice = entry.price;
  const opening = `${direction} ${symbol}: ${entry.quantity} units at ${num(entryPrice)} ` +
    `(${money(entry.notional)} target, size x${num(entry.multiplier)})`;
  return {
    ...decision(
      "ENTER",
      close.length > 0 ? "FLIPPED" : "ENTRY_APPROVED",
      close.length > 0 ? `${closing}; open ${opening}` : `Open ${opening}`,
    ),
    size: { quantity: entry.quantity, notional: entry.notional, multiplier: entry.multiplier },
    close,
    open: {
      symbol,
      direction,
      quantity: entry.quantity,
      entryPrice,
      notional: entry.quantity * entryPrice,
    },
  };
}

/**
 * The spot of a usable context newer than a late close's signal: the
 * signal's own price is as old as the signal, and the position closes now.
 * An older spot (a context may be up to its maximum age) is no better.
 */
function lateClosePrice(
  context: MarketContext | null,
  claimedMs: number,
  price: number | null,
  notes: string[],
): number | null {
  if (context === null || !(parseInstant(context.asOf) > claimedMs)) return null;
  if (price !== context.spot) {
    notes.push(`Closing at the context spot ${num(context.spot)} as of ${context.asOf}`);
  }
  return context.spot;
}

function closesAt(positions: OpenPosition[], price: number): PositionClose[] {
  return positions.map((p) => ({
    positionId: p.id,
    exitPrice: price,
    realizedPnl: realizedPnl(p, price),
  }));
}

/** "Close CALL SPY (10 at 480), PUT SPY (4 at 510) at 500: realized PnL $240.00". */
function closeMessage(positions: OpenPosition[], close: PositionClose[]): string {
  const each = positions.map((p) =>
    `${p.direction} ${p.symbol} (${p.quantity} at ${num(p.entryPrice)})`
  );
  const total = close.reduce((sum, c) => sum + c.realizedPnl, 0);
  return `Close ${each.join(", ")} at ${num(close[0].exitPrice)}: realized PnL ${money(total)}`;
}
