/**
 * Black-Scholes gamma, the one Greek the GEX computation needs. Pure and
 * total: invalid inputs give 0, never NaN or a throw.
 */

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Standard normal density phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
export function normalPdf(x: number): number {
  return INV_SQRT_2PI * Math.exp(-x * x / 2);
}

/**
 * Black-Scholes gamma per share, the same for calls and puts:
 * `d1 = (ln(S/K) + (r - q + sigma^2/2) T) / (sigma sqrt(T))`,
 * `gamma = exp(-qT) phi(d1) / (S sigma sqrt(T))`.
 * 0 when iv <= 0, years <= 0, spot or strike is not positive, or any input is
 * not a finite number (also when the result would overflow).
 */
export function blackScholesGamma(
  spot: number,
  strike: number,
  iv: number,
  years: number,
  rate = 0,
  dividend = 0,
): number {
  if (!(spot > 0 && strike > 0 && iv > 0 && years > 0)) return 0;
  if (![spot, strike, iv, years, rate, dividend].every(Number.isFinite)) return 0;
  const sd = iv * Math.sqrt(years);
  const d1 = (Math.log(spot / strike) + (rate - dividend + iv * iv / 2) * years) / sd;
  const gamma = Math.exp(-dividend * years) * normalPdf(d1) / (spot * sd);
  return Number.isFinite(gamma) ? gamma : 0;
}
