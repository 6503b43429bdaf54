/**
 * Gamma exposure (GEX) of an option chain: per strike, in total, walls,
 * regime and the zero-gamma level (perfiliev, "How to Calculate Gamma
 * Exposure (GEX) and Zero Gamma Level"; Matteo-Ferrara/gex-tracker).
 *
 * Conventions:
 * - Per contract, dollars of dealer delta per 1% move:
 *   `GEX = sign * gamma * OI * 100 * S * S * 0.01`, sign +1 for calls and -1
 *   for puts (dealers assumed long calls, short puts). Some tools flip this.
 * - gamma is the provider's per-share gamma when present and finite, else
 *   Black-Scholes from the contract's iv with r = q = 0. A contract with
 *   neither (or iv below `MIN_IV`, a placeholder rather than a volatility)
 *   contributes 0.
 * - T is ACT/365 years from the chain's `asOf` to the contract's last moment:
 *   the close of its expiry date in New York (16:00, or 13:00 on an early-close
 *   day, when expiring options stop with the shares), or 09:30 that day for an
 *   AM-settled contract (`settlement: "AM"`: monthly SPX, NDX, RUT, settled at
 *   the open). Floored at one hour while the option is alive so same-day gamma
 *   stays finite. Live contracts are unexpired with open interest; expired
 *   ones (T = 0) and zero open interest contribute nothing.
 * - Per strike, summed over expiries: `callGex >= 0`, `putGex <= 0` (signed),
 *   `netGex = callGex + putGex`; listed for strikes with a live contract.
 * - Call wall: strike with the largest callGex; put wall: strike with the
 *   largest |putGex|; null when no strike has any; ties go to the lower strike.
 * - Regime POSITIVE when net GEX >= 0 (dealers damp moves), else NEGATIVE.
 * - Zero gamma: total GEX re-priced at levels (1 - range)S..(1 + range)S,
 *   every contract's gamma recomputed from its own iv and T (provider gamma is
 *   not used: it belongs to the quoted spot; only a contract without iv keeps
 *   its quoted gamma, having nothing to re-price from); the sign change (between
 *   consecutive nonzero totals) nearest spot, interpolated linearly; null when
 *   there is none in range.
 */
import { blackScholesGamma } from "./black_scholes.ts";
import type { GexLevels } from "./market_data.ts";
import type { OptionChain, OptionContract } from "./option_chain.ts";
import { earlyCloses } from "./nyse_calendar.ts";
import { NEW_YORK, zonedTimeToUtc } from "./time_zone.ts";

export { blackScholesGamma };

/** Implied volatilities below this (0.01%) are quote placeholders: treated as missing. */
export const MIN_IV = 1e-4;
const HOUR_MS = 3_600_000;
const YEAR_MS = 365 * 24 * HOUR_MS;
const CLOSE_MINUTE = 16 * 60;
const EARLY_CLOSE_MINUTE = 13 * 60;
const OPEN_MINUTE = 9 * 60 + 30;
const MAX_ZERO_GAMMA_STEPS = 10_000;

/**
 * Years (ACT/365) from `asOf` to the last moment of an option expiring on
 * `expiry` (`YYYY-MM-DD`): that day's close in New York (13:00 on an early-close
 * day, else 16:00), or its 09:30 open when AM-settled; at least one hour while
 * the option is alive, 0 once it has expired or when either input is not a
 * valid time.
 */
export function yearsToExpiry(
  expiry: string,
  asOf: Date,
  settlement: OptionContract["settlement"] = "PM",
): number {
  return yearsFromCloseMs(expiryCloseMs(expiry, settlement), asOf.getTime());
}

export interface StrikeGex {
  strike: number;
  callGex: number;
  putGex: number;
  netGex: number;
}

export interface GexProfile {
  levels: GexLevels;
  /** Sorted by strike. */
  strikes: StrikeGex[];
}

export interface ComputeGexOptions {
  /** Intervals between the re-pricing levels for zero gamma (default 60, at most 10,000). */
  zeroGammaSteps?: number;
  /** Half-width of the zero-gamma search as a fraction of spot (default 0.2: 0.8S..1.2S). */
  zeroGammaRange?: number;
}

/** The GEX profile of `chain` at its own spot and time. */
export function computeGex(chain: OptionChain, options: ComputeGexOptions = {}): GexProfile {
  const live = liveContracts(chain);
  const byStrike = new Map<number, StrikeGex>();
  let netGex = 0;
  for (const c of live) {
    const row = byStrike.get(c.strike) ??
      { strike: c.strike, callGex: 0, putGex: 0, netGex: 0 };
    byStrike.set(c.strike, row);
    const gamma = c.gamma ?? blackScholesGamma(chain.spot, c.strike, c.iv, c.years);
    const gex = c.sign * contractGex(gamma, c.openInterest, chain.spot);
    if (c.sign > 0) row.callGex += gex;
    else row.putGex += gex;
    row.netGex = row.callGex + row.putGex;
    netGex += gex;
  }
  const strikes = [...byStrike.values()].sort((a, b) => a.strike - b.strike);
  return {
    levels: {
      symbol: chain.symbol,
      spot: chain.spot,
      netGex,
      zeroGamma: zeroGamma(live, chain.spot, options),
      callWall: wall(strikes, (s) => s.callGex),
      putWall: wall(strikes, (s) => -s.putGex),
      regime: netGex >= 0 ? "POSITIVE" : "NEGATIVE",
      asOf: chain.asOf,
    },
    strikes,
  };
}

/**
 * Total signed GEX if the underlying were at `spot`: every contract's gamma
 * recomputed from its own iv and T (r = q = 0), the provider's gamma ignored
 * except for a contract without iv, whose quoted gamma stands.
 */
export function gexAtSpot(chain: OptionChain, spot: number): number {
  return totalAt(liveContracts(chain), spot);
}

interface LiveContract {
  sign: 1 | -1;
  strike: number;
  openInterest: number;
  /** 0 when missing or below MIN_IV, which makes Black-Scholes gamma 0. */
  iv: number;
  gamma: number | null;
  years: number;
}

/** Contracts that can carry GEX: unexpired, with open interest, T computed once per expiry. */
function liveContracts(chain: OptionChain): LiveContract[] {
  const asOfMs = new Date(chain.asOf).getTime();
  const yearsByExpiry = new Map<string, number>();
  const live: LiveContract[] = [];
  for (const c of chain.contracts) {
    const key = `${c.expiry} ${c.settlement ?? "PM"}`;
    let years = yearsByExpiry.get(key);
    if (years === undefined) {
      years = yearsFromCloseMs(expiryCloseMs(c.expiry, c.settlement), asOfMs);
      yearsByExpiry.set(key, years);
    }
    if (years <= 0 || c.openInterest <= 0) continue;
    live.push({
      sign: c.type === "CALL" ? 1 : -1,
      strike: c.strike,
      openInterest: c.openInterest,
      iv: validIv(c) ?? 0,
      gamma: validGamma(c),
      years,
    });
  }
  return live;
}

function totalAt(live: LiveContract[], spot: number): number {
  let total = 0;
  for (const c of live) {
    // Without an iv there is nothing to re-price from: the quoted gamma stands at every
    // level, so such a contract counts in zero gamma as it does in net GEX.
    const gamma = c.iv > 0 ? blackScholesGamma(spot, c.strike, c.iv, c.years) : c.gamma ?? 0;
    total += c.sign * contractGex(gamma, c.openInterest, spot);
  }
  return total;
}

/**
 * gamma * OI * 100 shares * S * (1% of S): dollars of delta per 1% move. gamma * S first:
 * gamma grows as 1/S, and times OI before S it overflowed on a tiny spot.
 */
function contractGex(gamma: number, openInterest: number, spot: number): number {
  return gamma * spot * openInterest * 100 * spot * 0.01;
}

function zeroGamma(
  live: LiveContract[],
  spot: number,
  { zeroGammaSteps = 60, zeroGammaRange = 0.2 }: ComputeGexOptions,
): number | null {
  const steps = Math.min(Math.max(1, Math.floor(zeroGammaSteps)), MAX_ZERO_GAMMA_STEPS);
  const range = Math.min(Math.max(zeroGammaRange, 0), 1);
  if (!Number.isFinite(steps) || !Number.isFinite(range) || range === 0) return null;
  const low = spot * (1 - range);
  const levels = Array.from({ length: steps + 1 }, (_, i) => low + (2 * range * spot * i) / steps);
  const totals = levels.map((level) => totalAt(live, level));
  // Compare each nonzero total with the previous nonzero one: exact zeros
  // (gamma underflowing far from every strike) are not a sign of their own.
  let best: number | null = null;
  let last = -1;
  for (let i = 0; i < levels.length; i++) {
    const g1 = totals[i];
    if (g1 === 0) continue;
    if (last >= 0 && totals[last] > 0 !== g1 > 0) {
      const g0 = totals[last];
      const crossing = levels[last] + (levels[i] - levels[last]) * (g0 / (g0 - g1));
      if (best === null || Math.abs(crossing - spot) < Math.abs(best - spot)) best = crossing;
    }
    last = i;
  }
  return best;
}

/** The strike with the largest positive `size`, the lower one on ties; null when none. */
function wall(strikes: StrikeGex[], size: (s: StrikeGex) => number): number | null {
  let best: StrikeGex | null = null;
  for (const s of strikes) {
    if (size(s) > 0 && (best === null || size(s) > size(best))) best = s;
  }
  return best?.strike ?? null;
}

function expiryCloseMs(expiry: string, settlement: OptionContract["settlement"]): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(expiry)) return NaN;
  const minute = settlement === "AM"
    ? OPEN_MINUTE
    : earlyCloses(Number(expiry.slice(0, 4))).includes(expiry)
    ? EARLY_CLOSE_MINUTE
    : CLOSE_MINUTE;
  return zonedTimeToUtc(expiry, minute, NEW_YORK).getTime();
}

function yearsFromCloseMs(closeMs: number, asOfMs: number): number {
  const ms = closeMs - asOfMs;
  if (!(ms > 0)) return 0;
  return Math.max(ms, HOUR_MS) / YEAR_MS;
}

function validIv(c: OptionContract): number | null {
  return typeof c.iv === "number" && Number.isFinite(c.iv) && c.iv >= MIN_IV ? c.iv : null;
}

function validGamma(c: OptionContract): number | null {
  return typeof c.gamma === "number" && Number.isFinite(c.gamma) && c.gamma >= 0 ? c.gamma : null;
}
