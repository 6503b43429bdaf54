/**
 * Entry size: `baseNotional` times the product of the applicable
 * multipliers (confidence, VIX caution band, negative gamma regime, degraded
 * data), then as many whole units of the underlying as that buys.
 */
import { money, num } from "./_format.ts";
import type { Rules } from "./rules.ts";

export interface SizingInput {
  /** The signal's confidence, or the assumed one; null when neither is known. */
  confidence: number | null;
  vix: number | null;
  negativeGamma: boolean;
  /** Why the entry runs degraded (e.g. "no GEX for SPY"), or null when it does not. */
  degradedBecause: string | null;
}

export interface Multiplier {
  factor: number;
  /** Notes saying which multipliers applied and why. */
  notes: string[];
}

/** The product of the multipliers that apply to an entry, each with a note. */
export function sizeMultiplier(input: SizingInput, rules: Rules): Multiplier {
  let factor = 1;
  const notes: string[] = [];
  const apply = (by: number, why: string) => {
    factor *= by;
    notes.push(`${why}: size x${num(by)}`);
  };
  if (rules.sizeByConfidence && input.confidence !== null) {
    apply(input.confidence, `Confidence ${num(input.confidence)}`);
  }
  if (input.vix !== null && !(input.vix < rules.vix.cautionLevel)) {
    apply(
      rules.vix.cautionMultiplier,
      `VIX ${num(input.vix)} in caution band (${num(rules.vix.cautionLevel)} to ${
        num(rules.vix.noTradeLevel)
      })`,
    );
  }
  if (input.negativeGamma) apply(rules.gex.negativeRegimeMultiplier, "Negative gamma regime");
  if (input.degradedBecause !== null) {
    apply(rules.degraded.multiplier, `Degraded (${input.degradedBecause})`);
  }
  return { factor, notes };
}

export type Sized =
  | { ok: true; quantity: number; notional: number }
  | { ok: false; message: string };

/**
 * Whole units that `notional` dollars buy at `price`, rounded down. The
 * notional is first rounded to cents, and the division given a 1e-9 unit
 * tolerance, so that 0.7 x $10,000 at $100 is 70 units, not 69.
 */
export function unitsFor(notional: number, price: number): Sized {
  const cents = Math.round(notional * 100) / 100;
  const quantity = Math.floor(cents / price + 1e-9);
  if (!Number.isSafeInteger(quantity)) {
    return {
      ok: false,
      message: `Size ${money(cents)} at price ${num(price)} is not a usable quantity`,
    };
  }
  if (quantity < 1) {
    return {
      ok: false,
      message: `Size ${money(cents)} buys less than one unit at price ${num(price)}`,
    };
  }
  return { ok: true, quantity, notional: cents };
}
