/**
 * What `decide()` may rely on from its inputs: the market context and GEX
 * levels when they are for the signal's symbol and carry a usable spot, the
 * VIX when it is a number, the price to trade at, and the market status.
 * Anything unusable counts as missing and leaves a note saying why.
 */
import { num } from "./_format.ts";
import type { GexLevels, MarketContext } from "./market_data.ts";
import { type MarketStatus, marketStatus } from "./market_hours.ts";
import type { Rules } from "./rules.ts";
import type { ReceivedSignal } from "./signal.ts";

export interface UsableData {
  context: MarketContext | null;
  gex: GexLevels | null;
  /** The context's VIX when it is a finite number at or above 0. */
  vix: number | null;
}

/** Context and GEX for the signal's symbol with a usable spot; anything else is null. */
export function usableData(
  signal: ReceivedSignal,
  context: MarketContext | null,
  gex: GexLevels | null,
  notes: string[],
): UsableData {
  const usable = (what: string, data: MarketContext | GexLevels | null | undefined) => {
    if (data === null || data === undefined) {
      notes.push(`No ${what} for ${signal.symbol}`);
      return false;
    }
    if (data.symbol !== signal.symbol) {
      notes.push(`Ignored ${what} for ${data.symbol}: the signal is for ${signal.symbol}`);
      return false;
    }
    if (!isPrice(data.spot)) {
      notes.push(`Ignored ${what} for ${signal.symbol}: spot ${data.spot} is not a price`);
      return false;
    }
    return true;
  };
  const ctx = usable("market context", context) ? context : null;
  const levels = usable("GEX levels", gex) ? gex : null;
  let vix: number | null = null;
  if (ctx !== null) {
    if (typeof ctx.vix === "number" && Number.isFinite(ctx.vix) && ctx.vix >= 0) vix = ctx.vix;
    else notes.push("VIX unknown: entries are sized or refused as degraded");
  }
  return { context: ctx, gex: levels, vix };
}

export interface UsablePrice {
  /** The price to trade at, or null when there is none. */
  price: number | null;
  /**
   * Why the signal's own price was not believed (too far from the context
   * spot, which is then the price), or null. An entry is refused for it.
   */
  mismatch: string | null;
}

/**
 * The signal's price when it is a positive finite number within
 * `maxDeviationPct` of the usable context's spot (0: any), else that spot.
 * A price far from the market (a plot value in `price`, an alert set up on
 * another chart) would size the position and count its exposure at that
 * price: 17,000 units of a $500 ETF booked as $8,500.
 */
export function usablePrice(
  signal: ReceivedSignal,
  context: MarketContext | null,
  maxDeviationPct: number,
  notes: string[],
): UsablePrice {
  if (isPrice(signal.price)) {
    if (context === null || !(maxDeviationPct > 0)) return { price: signal.price, mismatch: null };
    const deviationPct = Math.abs(signal.price - context.spot) / context.spot * 100;
    if (deviationPct <= maxDeviationPct) return { price: signal.price, mismatch: null };
    const mismatch = `Signal price ${num(signal.price)} is ${num(deviationPct)}% from the ` +
      `context spot ${num(context.spot)} as of ${context.asOf} (at most ${num(maxDeviationPct)}%)`;
    notes.push(`${mismatch}: using the spot`);
    return { price: context.spot, mismatch };
  }
  if (signal.price !== null && signal.price !== undefined) {
    notes.push(`Signal price ${signal.price} is not a price`);
  }
  if (context === null) return { price: null, mismatch: null };
  notes.push(`Using the context spot ${num(context.spot)} as of ${context.asOf}`);
  return { price: context.spot, mismatch: null };
}

/**
 * `lastKnown`'s spot (the newest context however old) when it is this
 * symbol's and a price, with a note saying so; else null. Only a close's last
 * resort: see `decide()`.
 */
export function lastKnownPrice(
  signal: ReceivedSignal,
  lastKnown: MarketContext | null,
  notes: string[],
): number | null {
  if (lastKnown === null || lastKnown.symbol !== signal.symbol || !isPrice(lastKnown.spot)) {
    return null;
  }
  notes.push(
    `No current price: closing at the last known spot ${
      num(lastKnown.spot)
    } as of ${lastKnown.asOf}`,
  );
  return lastKnown.spot;
}

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * Epoch milliseconds of an ISO 8601 date-time with a zone, NaN for anything
 * else: `Date.parse` would read other shapes in the host's time zone.
 */
export function parseInstant(text: unknown): number {
  return typeof text === "string" && ISO_INSTANT.test(text) ? Date.parse(text) : NaN;
}

export function noPriceMessage(symbol: string): string {
  return `No price for ${symbol}: the signal has none and there is no usable market context`;
}

/**
 * Whether `receivedMs` falls within `exitMinutesAfterClose` after the regular
 * close of its day: a signal then still closes positions (see `decide()`), so
 * it needs its market data as in the session.
 */
export function inExitGrace(status: MarketStatus, receivedMs: number, rules: Rules): boolean {
  const close = status.regularClose?.getTime();
  return close !== undefined && receivedMs >= close &&
    receivedMs < close + rules.marketHours.exitMinutesAfterClose * 60_000;
}

/** The market status at `at`, or CLOSED when it cannot be computed: refusing is the safe answer. */
export function statusAt(at: Date, rules: Rules): MarketStatus {
  try {
    return marketStatus(at, {
      extendedHours: rules.marketHours.extendedHours,
      extraClosedDates: rules.marketHours.extraClosedDates,
    });
  } catch {
    return {
      open: false,
      session: "CLOSED",
      date: "unknown date",
      tradingDay: false,
      holiday: "market status unavailable",
      earlyClose: false,
      regularOpen: null,
      regularClose: null,
    };
  }
}

function isPrice(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}
