/**
 * Market context as it arrives (pushed to POST /context, or returned by a
 * context URL): validated with zod and turned into a `MarketContext`.
 */
import { z } from "zod";
import type { MarketContext } from "./market_data.ts";

export const ContextInputSchema = z.object({
  symbol: z.string().trim().toUpperCase().regex(
    /^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/,
    "must be a ticker",
  ),
  spot: z.number().positive().finite(),
  vix: z.number().positive().finite().nullable().optional(),
  trend: z.string().trim().toUpperCase().pipe(z.enum(["UP", "DOWN", "NEUTRAL"])).nullable()
    .optional(),
  asOf: z.iso.datetime({ offset: true }).optional(),
  source: z.string().trim().min(1).max(64).optional(),
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

/** Whether data observed at `asOf` is older than `maxAgeSeconds` at `now`. */
export function isStale(asOf: string, now: number, maxAgeSeconds: number): boolean {
  const t = Date.parse(asOf);
  return !Number.isFinite(t) || now - t > maxAgeSeconds * 1000;
}
