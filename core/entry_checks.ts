/**
 * The checks an entry must pass after the checks every signal passes
 * (see `decide()`), in this order, the first failure giving the reason:
 * 1. OPENING_WINDOW, CLOSING_WINDOW: time of day (when market hours are enforced)
 * 2. LOW_CONFIDENCE, LOW_SCORE: the signal's own quality
 * 3. NO_CONTEXT (also a context without VIX), NO_GEX: missing market data
 *    under the REJECT policy
 * 4. NO_PRICE: neither the signal nor the context has a usable price;
 *    PRICE_MISMATCH: the signal's price is too far from the context spot
 * 5. HIGH_VOLATILITY, GEX_CONFLICT: what the market data says
 * 6. ALREADY_OPEN, MAX_POSITIONS: the book, after the decision's own closes
 * 7. SIZE_TOO_SMALL, MAX_EXPOSURE: the sized position against the limits
 * Limits are compared so that a NaN limit rejects rather than passes.
 */
import { money, num, nyTime } from "./_format.ts";
import { type Book, exposure, type PositionDirection } from "./book.ts";
import type { Rejection } from "./decision.ts";
import { noPriceMessage } from "./decision_inputs.ts";
import type { GexLevels, MarketContext } from "./market_data.ts";
import type { MarketStatus } from "./market_hours.ts";
import type { Rules } from "./rules.ts";
import type { ReceivedSignal } from "./signal.ts";
import { sizeMultiplier, unitsFor } from "./sizing.ts";

/** What an entry is judged on. `book` is the book after the decision's closes. */
export interface EntryInput {
  signal: ReceivedSignal;
  direction: PositionDirection;
  receivedAt: Date;
  /** Null when market hours are not enforced. */
  status: MarketStatus | null;
  context: MarketContext | null;
  gex: GexLevels | null;
  vix: number | null;
  price: number | null;
  /** Why the signal's own price was not believed (see `usablePrice`), or null. */
  priceMismatch: string | null;
  book: Book;
}

export interface ApprovedEntry {
  price: number;
  quantity: number;
  /** Target dollars: baseNotional x multiplier, rounded to cents. */
  notional: number;
  multiplier: number;
  notes: string[];
}

const MINUTE_MS = 60_000;

/** The first check the entry fails, or its size when it passes them all. */
export function checkEntry(input: EntryInput, rules: Rules): Rejection | ApprovedEntry {
  const { signal, direction, context, gex, vix, book } = input;
  const rejection = timeOfDay(input, rules) ?? quality(signal, rules);
  if (rejection) return rejection;

  if (rules.degraded.policy === "REJECT") {
    if (context === null) {
      return reject(
        "NO_CONTEXT",
        `No market context for ${signal.symbol}; degraded policy is REJECT`,
      );
    }
    if (vix === null) {
      // Less information must not mean a larger trade than no context at all.
      return reject(
        "NO_CONTEXT",
        `Market context for ${signal.symbol} has no VIX; degraded policy is REJECT`,
      );
    }
    if (gex === null) {
      return reject("NO_GEX", `No GEX levels for ${signal.symbol}; degraded policy is REJECT`);
    }
  }
  const price = input.price;
  if (price === null) {
    return reject("NO_PRICE", noPriceMessage(signal.symbol));
  }
  if (input.priceMismatch !== null) return reject("PRICE_MISMATCH", input.priceMismatch);
  if (vix !== null && !(vix <= rules.vix.noTradeLevel)) {
    return reject(
      "HIGH_VOLATILITY",
      `VIX ${num(vix)} is above the no-trade level ${num(rules.vix.noTradeLevel)}`,
    );
  }
  const conflict = gexConflict(direction, price, gex, rules.gex.wallProximityPct);
  if (conflict) return reject("GEX_CONFLICT", conflict);

  if (book.open.some((p) => p.symbol === signal.symbol && p.direction === direction)) {
    return reject("ALREADY_OPEN", `A ${direction} position in ${signal.symbol} is already open`);
  }
  if (!(book.open.length + 1 <= rules.maxOpenPositions)) {
    return reject(
      "MAX_POSITIONS",
      `${book.open.length} positions are open; the maximum is ${rules.maxOpenPositions}`,
    );
  }

  const missing = [
    context === null && "no market context",
    context !== null && vix === null && "no VIX in the market context",
    gex === null && "no GEX levels",
  ].filter((m) => m !== false);
  const degradedBecause = missing.length > 0
    ? `${missing.join(" and ")} for ${signal.symbol}`
    : null;
  const multiplier = sizeMultiplier({
    confidence: confidenceOf(signal, rules),
    vix,
    negativeGamma: gex?.regime === "NEGATIVE",
    degradedBecause,
  }, rules);
  const sized = unitsFor(rules.baseNotional * multiplier.factor, price);
  if (!sized.ok) return reject("SIZE_TOO_SMALL", sized.message);
  const after = exposure(book) + sized.quantity * price;
  // In whole cents, as the message shows it: summed in binary, $42,000.00 of positions plus
  // a $8,000.00 entry came to 50000.00000000001 and was refused at a $50,000 limit.
  if (!(Math.round(after * 100) <= Math.round(rules.maxExposure * 100))) {
    return reject(
      "MAX_EXPOSURE",
      `Exposure would be ${money(after)} with ${sized.quantity} units at ${num(price)}; ` +
        `the maximum is ${money(rules.maxExposure)}`,
    );
  }
  return {
    price,
    quantity: sized.quantity,
    notional: sized.notional,
    multiplier: multiplier.factor,
    notes: multiplier.notes,
  };
}

function reject(reason: Rejection["reason"], message: string): Rejection {
  return { reason, message };
}

function timeOfDay(input: EntryInput, rules: Rules): Rejection | null {
  const { status, receivedAt } = input;
  if (status === null) return null;
  const at = receivedAt.getTime();
  const { noEntryMinutesAfterOpen: afterOpen, noEntryMinutesBeforeClose: beforeClose } =
    rules.marketHours;
  const open = status.regularOpen;
  if (open && at >= open.getTime() && !(at >= open.getTime() + afterOpen * MINUTE_MS)) {
    return reject(
      "OPENING_WINDOW",
      `No entries in the ${afterOpen} minutes after the ${nyTime(open)} open; ` +
        `received at ${nyTime(receivedAt)}`,
    );
  }
  const close = status.regularClose;
  if (close && at < close.getTime() && !(at < close.getTime() - beforeClose * MINUTE_MS)) {
    return reject(
      "CLOSING_WINDOW",
      `No entries in the ${beforeClose} minutes before the ${nyTime(close)} close; ` +
        `received at ${nyTime(receivedAt)}`,
    );
  }
  return null;
}

function quality(signal: ReceivedSignal, rules: Rules): Rejection | null {
  const confidence = confidenceOf(signal, rules);
  if (confidence === null) {
    if (!(rules.minConfidence <= 0)) {
      return reject(
        "LOW_CONFIDENCE",
        `Signal carries no confidence; at least ${num(rules.minConfidence)} is required`,
      );
    }
  } else if (!(confidence >= rules.minConfidence)) {
    return reject(
      "LOW_CONFIDENCE",
      `Confidence ${num(confidence)} is below the minimum ${num(rules.minConfidence)}`,
    );
  }
  if (!(rules.minScore <= 0)) {
    const score = metadataNumber(signal, "score", 100);
    if (score === null) {
      return reject(
        "LOW_SCORE",
        `Signal carries no score; at least ${num(rules.minScore)} is required`,
      );
    }
    if (!(score >= rules.minScore)) {
      return reject("LOW_SCORE", `Score ${num(score)} is below the minimum ${num(rules.minScore)}`);
    }
  }
  return null;
}

/** The signal's confidence when it is a fraction from 0 to 1, else the rules' assumption. */
function confidenceOf(signal: ReceivedSignal, rules: Rules): number | null {
  return metadataNumber(signal, "confidence", 1) ?? rules.confidenceWhenMissing;
}

function metadataNumber(signal: ReceivedSignal, key: string, max: number): number | null {
  const metadata: unknown = signal.metadata;
  if (typeof metadata !== "object" || metadata === null) return null;
  const value = (metadata as Record<string, unknown>)[key];
  return typeof value === "number" && value >= 0 && value <= max ? value : null;
}

/** Why an entry heads into a GEX wall, or null when it does not (see `GexRules`). */
function gexConflict(
  direction: PositionDirection,
  price: number,
  gex: GexLevels | null,
  proximityPct: number,
): string | null {
  if (gex === null || proximityPct === 0) return null;
  const wall = direction === "CALL" ? gex.callWall : gex.putWall;
  if (typeof wall !== "number" || !(wall > 0) || !Number.isFinite(wall)) return null;
  const distancePct = (direction === "CALL" ? wall - price : price - wall) / wall * 100;
  if (!(distancePct >= 0) || distancePct > proximityPct) return null;
  const side = direction === "CALL" ? "below the call wall" : "above the put wall";
  return `Price ${num(price)} is ${num(distancePct)}% ${side} ${num(wall)}; ` +
    `a ${direction} within ${num(proximityPct)}% of it is refused`;
}
