/**
 * The shape of a decision: outcome, stable reason code, human message, and
 * the position effects (`close`, `open`) that `applyDecision()` and the
 * database layer carry out. Plain data, shared by `decide()` and the book.
 */
import type { PositionDirection } from "./book.ts";

export type Outcome = "ENTER" | "EXIT" | "REJECT";

export const REASON_CODES = [
  "ENTRY_APPROVED",
  "EXIT_APPROVED",
  "FLIPPED",
  "CLOSED_BY_OPPOSITE",
  "INVALID_SIGNAL",
  "MARKET_CLOSED",
  "STALE_SIGNAL",
  "FUTURE_SIGNAL",
  "OPENING_WINDOW",
  "CLOSING_WINDOW",
  "LOW_CONFIDENCE",
  "LOW_SCORE",
  "NO_CONTEXT",
  "NO_GEX",
  "NO_PRICE",
  "PRICE_MISMATCH",
  "HIGH_VOLATILITY",
  "GEX_CONFLICT",
  "ALREADY_OPEN",
  "MAX_POSITIONS",
  "SIZE_TOO_SMALL",
  "MAX_EXPOSURE",
  "NO_POSITION",
] as const;
export type ReasonCode = typeof REASON_CODES[number];

/** Why a signal is refused: the reason code and a human message with the numbers. */
export interface Rejection {
  reason: ReasonCode;
  message: string;
}

export interface PositionSize {
  quantity: number;
  /** Target dollars, baseNotional x multiplier, rounded to cents; quantity = floor(notional / price). */
  notional: number;
  /** Product of the applied multipliers (confidence, VIX band, GEX regime, degraded). */
  multiplier: number;
}

export interface PositionClose {
  positionId: string;
  exitPrice: number;
  realizedPnl: number;
}

export interface PositionOpen {
  symbol: string;
  direction: PositionDirection;
  quantity: number;
  entryPrice: number;
  /** quantity x entryPrice: the exposure the position adds. */
  notional: number;
}

export interface Decision {
  outcome: Outcome;
  reason: ReasonCode;
  /** Human, sentence case, says why with numbers. */
  message: string;
  /** Price used (signal.price, else the context's spot), when usable; set on rejections too. */
  price: number | null;
  /** Size of the new position; null unless one opens. */
  size: PositionSize | null;
  /** Positions to close, all at `price`. */
  close: PositionClose[];
  open: PositionOpen | null;
  /** Context, its VIX or GEX was missing (or unusable) and the REDUCE policy was in force. */
  degraded: boolean;
  /** Secondary facts, e.g. "VIX 24.1 in caution band (20 to 30): size x0.5". */
  notes: string[];
}
