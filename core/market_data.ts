/**
 * Shapes of the market data the pipeline reads: the latest context per
 * symbol and the latest GEX levels per symbol. Plain data, no behaviour, so
 * that providers, storage and `decide()` agree without importing each other.
 */

export type Trend = "UP" | "DOWN" | "NEUTRAL";

/** Latest market context for one symbol, as pushed or fetched. */
export interface MarketContext {
  symbol: string;
  /** Price of the underlying, the mark for unrealized PnL. */
  spot: number;
  /** VIX level, when the provider knows it. */
  vix: number | null;
  trend: Trend | null;
  /** When the provider observed these values (ISO 8601, UTC). */
  asOf: string;
  source: string;
}

/** Sign convention: dealers long calls and short puts, so calls count +, puts -. */
export type GexRegime = "POSITIVE" | "NEGATIVE";

/** Summary of a gamma exposure profile for one symbol. */
export interface GexLevels {
  symbol: string;
  spot: number;
  /** Sum over contracts of sign * gamma * OI * 100 * spot^2 * 0.01, in dollars per 1% move. */
  netGex: number;
  /** Spot level where the re-priced total GEX crosses zero, when it does in range. */
  zeroGamma: number | null;
  /** Strike with the largest call GEX (resistance). */
  callWall: number | null;
  /** Strike with the largest put GEX in magnitude (support). */
  putWall: number | null;
  regime: GexRegime;
  /** Time of the option chain the levels were computed from (ISO 8601, UTC). */
  asOf: string;
}
