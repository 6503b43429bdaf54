/**
 * The rules `decide()` applies: signal freshness and quality, market hours,
 * market context and GEX filters, degraded mode, risk limits and sizing.
 * `DEFAULT_RULES` holds every default; the config loader overlays env values
 * and validates the result with `RulesSchema`, so a bad value stops start-up.
 * Money is in dollars on the underlying; percentages are written as percent
 * (0.5 means 0.5 %), fractions as fractions (0.6 means 60 %).
 */
import { z } from "zod";

/** Market-hours rules, judged on the time a signal was received. */
export interface MarketHoursRules {
  /** Reject signals received while the market is closed (MARKET_CLOSED). Default true. */
  enforce: boolean;
  /**
   * Count pre-market and after-hours as open, for entries and exits alike.
   * The entry windows below stay tied to the regular open and close, so
   * pre-market and after-hours entries are not affected by them. Default false.
   */
  extendedHours: boolean;
  /** Unscheduled full-day closures, `YYYY-MM-DD` in New York. Default []. */
  extraClosedDates: string[];
  /** No entries in this many minutes after the regular open (OPENING_WINDOW). Default 15. */
  noEntryMinutesAfterOpen: number;
  /**
   * No entries in this many minutes before the regular close (CLOSING_WINDOW);
   * on a 13:00 early-close day the window ends at 13:00. Default 10.
   */
  noEntryMinutesBeforeClose: number;
  /**
   * Minutes after the regular close (16:00, or 13:00 on an early-close day)
   * in which a signal that closes a position still does so, the market being
   * otherwise closed: an exit on the last bar's close arrives just after the
   * close, and ETF and index options trade until 16:15 (13:15). Entries stay
   * refused MARKET_CLOSED. 0 turns it off. Default 15.
   */
  exitMinutesAfterClose: number;
}

/** Gamma-exposure filters. */
export interface GexRules {
  /**
   * Reject an entry heading into a wall (GEX_CONFLICT): a CALL whose price is
   * at most this percent below the call wall, a PUT whose price is at most
   * this percent above the put wall (distance measured as a percent of the
   * wall). A price through the wall is no conflict. 0 turns it off. Default 0.5.
   */
  wallProximityPct: number;
  /** Size multiplier in a negative-gamma regime, where moves are amplified. Default 0.5. */
  negativeRegimeMultiplier: number;
}

/** VIX bands (see reference/markets.md: 20-30 elevated, above 30 fear). */
export interface VixRules {
  /** From this VIX level (inclusive) entries are sized by `cautionMultiplier`. Default 20. */
  cautionLevel: number;
  /** Size multiplier in the caution band. Default 0.5. */
  cautionMultiplier: number;
  /** Above this VIX level (strictly) entries are rejected (HIGH_VOLATILITY). Default 30. */
  noTradeLevel: number;
}

export const DEGRADED_POLICIES = ["REDUCE", "REJECT"] as const;
export type DegradedPolicy = typeof DEGRADED_POLICIES[number];

/**
 * What to do with an entry when market context, its VIX, or GEX is missing.
 * Exits always proceed.
 */
export interface DegradedRules {
  /**
   * REDUCE: enter at `multiplier` times the size (once, however much is
   * missing). REJECT: reject with NO_CONTEXT or NO_GEX. Default REDUCE.
   */
  policy: DegradedPolicy;
  /** Size multiplier under REDUCE. Default 0.5. */
  multiplier: number;
}

export interface Rules {
  /**
   * Lowest `metadata.confidence` (a fraction) an entry may carry (LOW_CONFIDENCE).
   * 0 turns the check off. Default 0.6.
   */
  minConfidence: number;
  /**
   * Confidence assumed for a signal that carries none (or an unusable one).
   * null: such an entry fails LOW_CONFIDENCE unless `minConfidence` is 0, and
   * is then not scaled by confidence. Default null.
   */
  confidenceWhenMissing: number | null;
  /** Multiply the size by the signal's confidence (0.85 gives 85 %). Default true. */
  sizeByConfidence: boolean;
  /**
   * Lowest `metadata.score` (0 to 100) an entry may carry (LOW_SCORE); a signal
   * without a score fails when this is above 0. 0 turns the check off. Default 0.
   */
  minScore: number;
  /**
   * Oldest a signal may be when received, in seconds, on top of one bar of its
   * timeframe (STALE_SIGNAL). TradingView's `{{time}}` is the bar's OPEN time,
   * so an alert on a 5m bar's close legitimately arrives about 5 minutes after
   * its timestamp: the allowed age is this plus one bar ("30s" adds 30 s, "5m"
   * 300 s, "1h" 3600 s, "1D" a day, "1W" a week, "1M" 31 days). With
   * `{{timenow}}` the bar allowance is merely lenient. A stale exit closes
   * only positions entered on an earlier bar than its own (`decide()`), never
   * one opened since. Default 300.
   */
  maxSignalAgeSeconds: number;
  /**
   * How far a signal's timestamp may lie after the time it was received, in
   * seconds, to allow for clock skew (FUTURE_SIGNAL). Default 60.
   */
  maxFutureSkewSeconds: number;
  /**
   * Largest distance, in percent of the context spot, between a signal's own
   * price and that spot. Beyond it the signal's price is not believed: an
   * entry is refused (PRICE_MISMATCH) and a close happens at the spot. Only
   * checked when a usable context is at hand. 0 turns it off. Default 10.
   */
  maxPriceDeviationPct: number;
  marketHours: MarketHoursRules;
  /** Most positions open at once, all symbols (MAX_POSITIONS). Default 5. */
  maxOpenPositions: number;
  /**
   * Most dollars at entry price (sum of quantity x entry price) open at once,
   * after the decision's own closes and entry (MAX_EXPOSURE). Default 50000.
   */
  maxExposure: number;
  /** Dollars per entry before multipliers; quantity = floor(notional / price). Default 10000. */
  baseNotional: number;
  /**
   * An entry opposite to an open position of its symbol always closes that
   * position (CLOSED_BY_OPPOSITE); with flip on it also opens the new one when
   * the entry passes its own checks (FLIPPED). Default false.
   */
  flip: boolean;
  gex: GexRules;
  vix: VixRules;
  degraded: DegradedRules;
}

export const DEFAULT_RULES: Rules = {
  minConfidence: 0.6,
  confidenceWhenMissing: null,
  sizeByConfidence: true,
  minScore: 0,
  maxSignalAgeSeconds: 300,
  maxFutureSkewSeconds: 60,
  maxPriceDeviationPct: 10,
  marketHours: {
    enforce: true,
    extendedHours: false,
    extraClosedDates: [],
    noEntryMinutesAfterOpen: 15,
    noEntryMinutesBeforeClose: 10,
    exitMinutesAfterClose: 15,
  },
  maxOpenPositions: 5,
  maxExposure: 50_000,
  baseNotional: 10_000,
  flip: false,
  gex: { wallProximityPct: 0.5, negativeRegimeMultiplier: 0.5 },
  vix: { cautionLevel: 20, cautionMultiplier: 0.5, noTradeLevel: 30 },
  degraded: { policy: "REDUCE", multiplier: 0.5 },
};

const fraction = z.number().min(0).max(1);
const seconds = z.number().int().min(0);
const minutes = z.number().int().min(0).max(390);

/** Validates a complete `Rules` object; unknown keys are refused, so a typo cannot pass. */
export const RulesSchema = z.strictObject({
  minConfidence: fraction,
  confidenceWhenMissing: fraction.nullable(),
  sizeByConfidence: z.boolean(),
  minScore: z.number().min(0).max(100),
  maxSignalAgeSeconds: seconds,
  maxFutureSkewSeconds: seconds,
  maxPriceDeviationPct: z.number().finite().min(0).max(1000),
  marketHours: z.strictObject({
    enforce: z.boolean(),
    extendedHours: z.boolean(),
    extraClosedDates: z.array(z.iso.date()),
    noEntryMinutesAfterOpen: minutes,
    noEntryMinutesBeforeClose: minutes,
    exitMinutesAfterClose: z.number().int().min(0).max(240),
  }),
  maxOpenPositions: z.number().int().min(0),
  maxExposure: z.number().finite().min(0),
  baseNotional: z.number().finite().positive(),
  flip: z.boolean(),
  gex: z.strictObject({
    wallProximityPct: z.number().min(0).max(100),
    negativeRegimeMultiplier: fraction,
  }),
  vix: z.strictObject({
    cautionLevel: z.number().finite().min(0),
    cautionMultiplier: fraction,
    noTradeLevel: z.number().finite().min(0),
  }).refine((v) => v.cautionLevel <= v.noTradeLevel, {
    message: "must not be above VIX_NO_TRADE_LEVEL (the caution band ends where trading stops)",
    path: ["cautionLevel"],
  }),
  degraded: z.strictObject({
    policy: z.enum(DEGRADED_POLICIES),
    multiplier: fraction,
  }),
}) satisfies z.ZodType<Rules>;
