/**
 * Market context as it arrives (pushed to POST /context, or returned by a
 * context URL): validated with zod and turned into a `MarketContext`.
 */
import { z } from "zod";
import type { MarketContext } from "./market_data.ts";

/** The words feeds use for a trend, as the webhook takes bullish and bearish for a direction. */
const TREND_WORDS: Record<string, string> = {
  BULLISH: "UP",
  BULL: "UP",
  UPTREND: "UP",
  BEARISH: "DOWN",
  BEAR: "DOWN",
  DOWNTREND: "DOWN",
  FLAT: "NEUTRAL",
  SIDEWAYS: "NEUTRAL",
  RANGE: "NEUTRAL",
};

const EARLIEST = Date.parse("0001-01-01T00:00:00Z");
/** The last instant a timestamptz takes as ISO text (year 9999; the next is "+010000-..."). */
export const LATEST_STORABLE_MS = Date.parse("9999-12-31T23:59:59.999Z");

/**
 * A market data time: ISO 8601 with an offset, within the years a timestamptz
 * holds. zod's check takes year 0000, and an offset can move 0001 or 9999 out
 * of range: stored, either failed the insert (a 500, and a batch half stored).
 */
export function marketTime() {
  return z.iso.datetime({ offset: true }).refine(
    (v) => Date.parse(v) >= EARLIEST && Date.parse(v) <= LATEST_STORABLE_MS,
    "must be a time from 0001-01-01 to 9999-12-31 UTC",
  );
}

export const ContextInputSchema = z.object({
  symbol: z.string().trim().toUpperCase().regex(
    /^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/,
    "must be a ticker",
  ),
  spot: z.number().positive().finite(),
  vix: z.number().positive().finite().nullable().optional(),
  trend: z.string().trim().toUpperCase().transform((t) => TREND_WORDS[t] ?? t)
    .pipe(z.enum(["UP", "DOWN", "NEUTRAL"], {
      error: "must be UP, DOWN or NEUTRAL (or bullish, bearish, flat)",
    })).nullable().optional(),
  asOf: marketTime().optional(),
  // A text column stores no NUL.
  source: z.string().trim().min(1).max(64).refine((v) => !v.includes("\0"), "must not contain NUL")
    .optional(),
});
export type ContextInput = z.infer<typeof ContextInputSchema>;

/** The context, timed `now` when the sender gave no time. */
export function toMarketContext(
  input: ContextInput,
  options: { now: number; source: string },
): MarketContext {
  return {
    symbol: input.symbol,
    spot: input.spot,
    vix: input.vix ?? null,
    trend: input.trend ?? null,
    asOf: new Date(input.asOf ?? options.now).toISOString(),
    source: input.source ?? options.source,
  };
}

/**
 * Why a provider's answer for `asked` is refused because it names another
 * symbol, or null. It may write the same ticker in its own way (`spy`,
 * `NASDAQ:AAPL`, Cboe's `_SPX`); an answer that names none is taken as the
 * one asked for. Another ticker's spot and levels, stored as this one's,
 * would price and size its trades.
 */
export function otherSymbolProblem(asked: string, named: unknown): string | null {
  if (typeof named !== "string" || named.trim() === "") return null;
  const ticker = named.trim().toUpperCase().replace(/^[A-Z0-9_]*:/, "").replace(/^_/, "");
  if (ticker === asked.toUpperCase()) return null;
  return `the answer is for ${JSON.stringify(named.slice(0, 40))}, not ${asked}`;
}

/**
 * How far ahead of this server's clock market data may be timed. Beyond it
 * the time is wrong (a wall time in the wrong zone, say): such data would
 * never go stale and, as the newest row, would hide every correct one after it.
 */
export const MARKET_DATA_FUTURE_SKEW_SECONDS = 60;

/**
 * Whether data observed at `asOf` is unusable at `now`: older than
 * `maxAgeSeconds`, or timed ahead beyond the allowed skew.
 */
export function isStale(asOf: string, now: number, maxAgeSeconds: number): boolean {
  const t = Date.parse(asOf);
  return !Number.isFinite(t) || now - t > maxAgeSeconds * 1000 ||
    futureAsOfProblem(asOf, now) !== null;
}

/** Why market data timed `asOf` is refused at `now`, or null if its time is acceptable. */
export function futureAsOfProblem(asOf: string, now: number): string | null {
  const aheadSeconds = (Date.parse(asOf) - now) / 1000;
  if (!(aheadSeconds > MARKET_DATA_FUTURE_SKEW_SECONDS)) return null;
  return `asOf ${asOf} is ${Math.round(aheadSeconds)} s ahead of this server's clock ` +
    `(${MARKET_DATA_FUTURE_SKEW_SECONDS} s allowed): give the time with its real offset`;
}
