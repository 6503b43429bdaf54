import assert from "node:assert/strict";
import fc from "fast-check";
import {
  blackScholesGamma,
  computeGex,
  gexAtSpot,
  type GexProfile,
  yearsToExpiry,
} from "../core/gex.ts";
import {
  MAX_GAMMA,
  MAX_IV,
  MAX_OPEN_INTEREST,
  MAX_PRICE,
  type OptionChain,
  OptionChainSchema,
  type OptionContract,
} from "../core/option_chain.ts";

/** |actual - expected| <= tolerance, with both values in the message. */
function near(actual: number | null, expected: number, tolerance: number, what = "value") {
  assert.ok(
    actual !== null && Math.abs(actual - expected) <= tolerance,
    `${what}: expected ${expected} +/- ${tolerance}, got ${actual}`,
  );
}

// 16:00 EDT on 2024-06-20; the 2025-06-20 close is exactly 365 days later, so T = 1.
const ONE_YEAR_BEFORE = "2024-06-20T20:00:00.000Z";
const EXPIRY_IN_ONE_YEAR = "2025-06-20";

Deno.test("blackScholesGamma() is phi(0.1) / (100 * 0.2) at the money with sigma 0.2 and T 1", () => {
  // d1 = (ln 1 + 0.02) / 0.2 = 0.1; phi(0.1) = exp(-0.005) / sqrt(2 pi) = 0.396952547477
  // gamma = 0.396952547477 / (100 * 0.2 * 1) = 0.0198476273738506
  near(blackScholesGamma(100, 100, 0.2, 1), 0.0198476273738506, 1e-15);
});

Deno.test("blackScholesGamma() discounts by the dividend yield and shifts d1 by the carry", () => {
  // S 100, K 95, sigma 0.3, T 0.5, r 0.05, q 0.02:
  // d1 = (ln(100/95) + (0.05 - 0.02 + 0.045) * 0.5) / (0.3 * sqrt 0.5) = 0.418575603902
  // phi(d1) = 0.3654808843; exp(-qT) = 0.990049833749
  // gamma = 0.990049833749 * 0.3654808843 / (100 * 0.212132034356) = 0.0170575033535
  near(blackScholesGamma(100, 95, 0.3, 0.5, 0.05, 0.02), 0.0170575033535, 1e-12);
});

Deno.test("blackScholesGamma() is 0 without volatility, time or valid inputs", () => {
  assert.equal(blackScholesGamma(100, 100, 0, 1), 0);
  assert.equal(blackScholesGamma(100, 100, 0.2, 0), 0);
  assert.equal(blackScholesGamma(100, 100, -0.2, 1), 0);
  assert.equal(blackScholesGamma(0, 100, 0.2, 1), 0);
  assert.equal(blackScholesGamma(100, Number.NaN, 0.2, 1), 0);
  assert.equal(blackScholesGamma(Infinity, 100, 0.2, 1), 0);
});

Deno.test("blackScholesGamma() is never negative, NaN or infinite, whatever the inputs", () => {
  fc.assert(
    fc.property(
      fc.double(),
      fc.double(),
      fc.double(),
      fc.double(),
      fc.double(),
      fc.double(),
      (spot, strike, iv, years, rate, dividend) => {
        const gamma = blackScholesGamma(spot, strike, iv, years, rate, dividend);
        assert.ok(Number.isFinite(gamma) && gamma >= 0, `gamma ${gamma}`);
      },
    ),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(
      fc.double({ min: 0.01, max: 1e5, noNaN: true }),
      fc.double({ min: 0.01, max: 1e5, noNaN: true }),
      fc.double({ min: 0.001, max: 5, noNaN: true }),
      fc.double({ min: 1 / 8760, max: 30, noNaN: true }),
      (spot, strike, iv, years) => {
        const gamma = blackScholesGamma(spot, strike, iv, years);
        assert.ok(Number.isFinite(gamma) && gamma >= 0, `gamma ${gamma}`);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("yearsToExpiry() counts ACT/365 to 16:00 New York on the expiry date", () => {
  assert.equal(yearsToExpiry(EXPIRY_IN_ONE_YEAR, new Date(ONE_YEAR_BEFORE)), 1);
  // December is EST: the close is 21:00 UTC.
  near(yearsToExpiry("2024-12-20", new Date("2024-12-19T21:00:00Z")), 1 / 365, 1e-15);
  // 10:00 New York on expiry day: six hours left.
  near(yearsToExpiry("2024-06-14", new Date("2024-06-14T14:00:00Z")), 6 / 8760, 1e-15);
});

Deno.test("yearsToExpiry() floors same-day time at one hour and is 0 from the close on", () => {
  near(yearsToExpiry("2024-06-14", new Date("2024-06-14T19:59:30Z")), 1 / 8760, 1e-15);
  assert.equal(yearsToExpiry("2024-06-14", new Date("2024-06-14T20:00:00Z")), 0);
  assert.equal(yearsToExpiry("2024-06-14", new Date("2024-06-15T14:00:00Z")), 0);
  assert.equal(yearsToExpiry("not a date", new Date("2024-06-14T14:00:00Z")), 0);
  assert.equal(yearsToExpiry("2024-06-14", new Date(Number.NaN)), 0);
});

Deno.test("yearsToExpiry() ends at 13:00 New York on an early-close day", () => {
  // 2025-11-28, the day after Thanksgiving, closes at 13:00 EST (18:00 UTC).
  near(yearsToExpiry("2025-11-28", new Date("2025-11-28T15:00:00Z")), 3 / 8760, 1e-15);
  assert.equal(yearsToExpiry("2025-11-28", new Date("2025-11-28T18:00:00Z")), 0);
  assert.equal(yearsToExpiry("2025-11-28", new Date("2025-11-28T19:30:00Z")), 0);
  // Dec 24, 2026 is a Thursday: early close. Dec 31 is a normal day.
  assert.equal(yearsToExpiry("2026-12-24", new Date("2026-12-24T18:30:00Z")), 0);
  near(yearsToExpiry("2026-12-31", new Date("2026-12-31T18:00:00Z")), 3 / 8760, 1e-15);
});

Deno.test("yearsToExpiry() of an AM-settled option ends at 09:30 New York on the expiry date", () => {
  // Third Friday of March 2026, EDT: the open is 13:30 UTC.
  near(yearsToExpiry("2026-03-20", new Date("2026-03-19T20:00:00Z"), "AM"), 17.5 / 8760, 1e-15);
  assert.equal(yearsToExpiry("2026-03-20", new Date("2026-03-20T13:30:00Z"), "AM"), 0);
  assert.equal(yearsToExpiry("2026-03-20", new Date("2026-03-20T15:00:00Z"), "AM"), 0);
  near(yearsToExpiry("2026-03-20", new Date("2026-03-20T15:00:00Z"), "PM"), 5 / 8760, 1e-15);
});

Deno.test("computeGex() drops same-day contracts after an early close and AM-settled ones after the open", () => {
  // 14:30 New York on the day after Thanksgiving: the 2025-11-28 call expired at 13:00.
  const afterEarlyClose = computeGex({
    symbol: "SPY",
    spot: 600,
    asOf: "2025-11-28T19:30:00.000Z",
    contracts: [
      { type: "CALL", strike: 600, expiry: "2025-11-28", iv: 0.15, openInterest: 100_000 },
      { type: "PUT", strike: 590, expiry: "2025-12-19", iv: 0.15, openInterest: 50_000 },
    ],
  });
  assert.equal(afterEarlyClose.levels.regime, "NEGATIVE");
  assert.equal(afterEarlyClose.levels.callWall, null);
  assert.deepEqual(afterEarlyClose.strikes.map((s) => s.strike), [590]);

  // 11:00 New York on the third Friday: the monthly SPX call settled at the open,
  // the SPXW weekly of the same date is alive until 16:00.
  const contracts: OptionContract[] = [
    { type: "CALL", strike: 6000, expiry: "2026-03-20", iv: 0.15, openInterest: 50_000 },
    { type: "PUT", strike: 5800, expiry: "2026-04-17", iv: 0.15, openInterest: 10_000 },
  ];
  const chain = { symbol: "SPX", spot: 6000, asOf: "2026-03-20T15:00:00.000Z", contracts };
  const am = computeGex({
    ...chain,
    contracts: [{ ...contracts[0], settlement: "AM" }, contracts[1]],
  });
  assert.equal(am.levels.regime, "NEGATIVE");
  assert.equal(am.levels.callWall, null);
  const pm = computeGex(chain);
  assert.equal(pm.levels.regime, "POSITIVE");
  assert.equal(pm.levels.callWall, 6000);
});

/**
 * Spot 100, T = 1 year for every contract, so S^2 * 100 * 0.01 = 10,000:
 * - CALL 100, iv 0.2, OI 1000: d1 = 0.1, phi = 0.3969525475, gamma = 0.01984762737
 *   GEX = +0.01984762737 * 1000 * 10,000 = +198,476.2737
 * - PUT 100, iv 0.2, OI 500: same gamma, GEX = -0.01984762737 * 500 * 10,000 = -99,238.13687
 * - PUT 90, iv 0.25, OI 2000: d1 = (ln(100/90) + 0.03125) / 0.25 = 0.5464420626,
 *   phi = 0.3436134322, gamma = 0.3436134322 / (100 * 0.25) = 0.01374453729
 *   GEX = -0.01374453729 * 2000 * 10,000 = -274,890.7458
 * - CALL 110, iv 0.18, OI 800, provider gamma 0.015 (used, Black-Scholes ignored):
 *   GEX = +0.015 * 800 * 10,000 = +120,000
 * Strikes: 90 -> put -274,890.7458; 100 -> call 198,476.2737, put -99,238.13687,
 * net 99,238.13687; 110 -> call 120,000.
 * Net = 198,476.2737 - 99,238.13687 - 274,890.7458 + 120,000 = -55,652.60888: NEGATIVE.
 * Call wall 100 (198,476 > 120,000); put wall 90 (|-274,891| > |-99,238|).
 */
const HAND_CHAIN: OptionChain = {
  symbol: "TEST",
  spot: 100,
  asOf: ONE_YEAR_BEFORE,
  contracts: [
    { type: "CALL", strike: 100, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 1000 },
    { type: "PUT", strike: 100, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 500 },
    { type: "PUT", strike: 90, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.25, openInterest: 2000 },
    {
      type: "CALL",
      strike: 110,
      expiry: EXPIRY_IN_ONE_YEAR,
      iv: 0.18,
      openInterest: 800,
      gamma: 0.015,
    },
  ],
};

function assertHandProfile(profile: GexProfile) {
  const { levels, strikes } = profile;
  near(levels.netGex, -55_652.60888, 1e-4, "net GEX");
  assert.equal(levels.regime, "NEGATIVE");
  assert.equal(levels.callWall, 100);
  assert.equal(levels.putWall, 90);
  assert.deepEqual(strikes.map((s) => s.strike), [90, 100, 110]);
  const [s90, s100, s110] = strikes;
  near(s90.callGex, 0, 0, "90 call");
  near(s90.putGex, -274_890.7458, 1e-4, "90 put");
  near(s100.callGex, 198_476.2737, 1e-4, "100 call");
  near(s100.putGex, -99_238.13687, 1e-5, "100 put");
  near(s100.netGex, 99_238.13687, 1e-5, "100 net");
  near(s110.callGex, 120_000, 1e-9, "110 call");
  near(s110.putGex, 0, 0, "110 put");
}

Deno.test("computeGex() matches a hand-checked four-contract chain", () => {
  const profile = computeGex(HAND_CHAIN);
  assertHandProfile(profile);
  assert.equal(profile.levels.symbol, "TEST");
  assert.equal(profile.levels.spot, 100);
  assert.equal(profile.levels.asOf, ONE_YEAR_BEFORE);
});

Deno.test("computeGex() ignores expired contracts and zero open interest", () => {
  const profile = computeGex({
    ...HAND_CHAIN,
    contracts: [
      ...HAND_CHAIN.contracts,
      // Expired a week before asOf: would otherwise dominate everything.
      { type: "PUT", strike: 95, expiry: "2024-06-14", iv: 0.2, openInterest: 1_000_000 },
      { type: "CALL", strike: 105, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 0 },
    ],
  });
  assertHandProfile(profile);
});

/**
 * One call at 110 and one put at 90, equal OI, iv 0.2 and T = 1, spot 100:
 * Total(L) = 1000 * L^2 * (gamma(L, 110) - gamma(L, 90)), zero when phi(d1) is
 * equal, i.e. d1(110) = -d1(90): ln(L/110) + 0.02 = -ln(L/90) - 0.02, so
 * L = sqrt(90 * 110) * exp(-0.02) = 99.4987437 * 0.980198673 = 97.5285366.
 * Below it the put dominates (negative), above it the call (positive).
 */
const SYMMETRIC_CHAIN: OptionChain = {
  symbol: "TEST",
  spot: 100,
  asOf: ONE_YEAR_BEFORE,
  contracts: [
    { type: "CALL", strike: 110, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 1000 },
    { type: "PUT", strike: 90, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 1000 },
  ],
};
const SYMMETRIC_ZERO = Math.sqrt(90 * 110) * Math.exp(-0.02);

Deno.test("gexAtSpot() changes sign at sqrt(K1 K2) exp(-sigma^2 T / 2) for a symmetric pair", () => {
  assert.ok(gexAtSpot(SYMMETRIC_CHAIN, 97) < 0);
  assert.ok(gexAtSpot(SYMMETRIC_CHAIN, 98) > 0);
  // Brute force: bisect the sign change of gexAtSpot between 80 and 120.
  let [low, high] = [80, 120];
  for (let i = 0; i < 60; i++) {
    const mid = (low + high) / 2;
    if (gexAtSpot(SYMMETRIC_CHAIN, mid) < 0) low = mid;
    else high = mid;
  }
  near(low, 97.5285366, 1e-6, "bisected zero");
  near(low, SYMMETRIC_ZERO, 1e-9, "closed-form zero");
});

Deno.test("computeGex() interpolates zero gamma close to the closed-form level", () => {
  // Default grid: 60 steps over 80..120, 0.667 apart; linear interpolation is good to ~0.01.
  near(computeGex(SYMMETRIC_CHAIN).levels.zeroGamma, SYMMETRIC_ZERO, 0.02, "60 steps");
  near(
    computeGex(SYMMETRIC_CHAIN, { zeroGammaSteps: 2000 }).levels.zeroGamma,
    SYMMETRIC_ZERO,
    1e-4,
    "2000 steps",
  );
  // A range of 0.01 (99..101) holds no crossing.
  assert.equal(computeGex(SYMMETRIC_CHAIN, { zeroGammaRange: 0.01 }).levels.zeroGamma, null);
});

Deno.test("computeGex() picks the zero-gamma crossing nearest to spot when there are two", () => {
  // Puts at 90 and 110 around a heavier call at 100: negative in both tails,
  // positive in the middle, so the total crosses zero twice inside 80..120.
  const chain: OptionChain = {
    ...SYMMETRIC_CHAIN,
    contracts: [
      { type: "PUT", strike: 90, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.1, openInterest: 1000 },
      { type: "CALL", strike: 100, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.1, openInterest: 3000 },
      { type: "PUT", strike: 110, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.1, openInterest: 1000 },
    ],
  };
  const bisect = (low: number, high: number) => {
    const lowSign = gexAtSpot(chain, low) > 0;
    for (let i = 0; i < 60; i++) {
      const mid = (low + high) / 2;
      if (gexAtSpot(chain, mid) > 0 === lowSign) low = mid;
      else high = mid;
    }
    return low;
  };
  const [lower, upper] = [bisect(80, 100), bisect(100, 120)];
  near(lower, 85.4603, 1e-4, "lower crossing");
  near(upper, 116.6604, 1e-4, "upper crossing");
  // Spot 100 is nearer the lower crossing, spot 104 the upper one; both lie in range.
  near(computeGex({ ...chain, spot: 100 }).levels.zeroGamma, lower, 0.02, "spot 100");
  near(computeGex({ ...chain, spot: 104 }).levels.zeroGamma, upper, 0.02, "spot 104");
});

Deno.test("computeGex() has no zero gamma and no put wall when there are only calls", () => {
  const { levels, strikes } = computeGex({
    ...SYMMETRIC_CHAIN,
    contracts: [SYMMETRIC_CHAIN.contracts[0]],
  });
  assert.equal(levels.zeroGamma, null);
  assert.equal(levels.putWall, null);
  assert.equal(levels.callWall, 110);
  assert.equal(levels.regime, "POSITIVE");
  assert.equal(strikes.length, 1);
});

Deno.test("computeGex() of an empty chain is zero, POSITIVE and without levels", () => {
  const { levels, strikes } = computeGex({ ...SYMMETRIC_CHAIN, contracts: [] });
  assert.deepEqual({ ...levels, strikes }, {
    symbol: "TEST",
    spot: 100,
    netGex: 0,
    zeroGamma: null,
    callWall: null,
    putWall: null,
    regime: "POSITIVE",
    asOf: ONE_YEAR_BEFORE,
    strikes: [],
  });
});

// --- properties -------------------------------------------------------------

const AS_OF = "2024-06-14T19:59:00.000Z";
/** Expired, same-day (one minute left, floored to an hour), weekly, monthly, LEAPS. */
const EXPIRIES = [
  "2024-06-07",
  "2024-06-14",
  "2024-06-17",
  "2024-06-21",
  "2024-07-19",
  "2025-06-20",
];

const contractArb: fc.Arbitrary<OptionContract> = fc.record({
  type: fc.constantFrom("CALL", "PUT"),
  strike: fc.integer({ min: 80, max: 240 }).map((k) => k / 2),
  expiry: fc.constantFrom(...EXPIRIES),
  // Realistic values from integers: fc.double() favours extremes (1e-300) that make gamma vanish.
  iv: fc.option(fc.integer({ min: 0, max: 150 }).map((v) => v / 100), { nil: null }),
  openInterest: fc.integer({ min: 0, max: 100_000 }),
  gamma: fc.option(fc.integer({ min: 0, max: 5000 }).map((v) => v / 10_000), {
    nil: null,
    freq: 3,
  }),
}, { requiredKeys: ["type", "strike", "expiry", "openInterest"] });

const chainArb: fc.Arbitrary<OptionChain> = fc.record({
  symbol: fc.constant("SPY"),
  spot: fc.integer({ min: 6000, max: 14_000 }).map((cents) => cents / 100),
  asOf: fc.constant(AS_OF),
  contracts: fc.array(contractArb, { maxLength: 30 }),
});

/** Sum of |GEX| over strikes: the scale for rounding tolerances of sums that cancel. */
function gross(profile: GexProfile): number {
  return profile.strikes.reduce((sum, s) => sum + s.callGex - s.putGex, 0);
}

Deno.test("computeGex() scales net GEX and every strike's GEX by k when OI is scaled by k", () => {
  fc.assert(
    fc.property(chainArb, fc.integer({ min: 0, max: 50 }), (chain, k) => {
      const base = computeGex(chain);
      const scaled = computeGex({
        ...chain,
        contracts: chain.contracts.map((c) => ({ ...c, openInterest: c.openInterest * k })),
      });
      const tolerance = 1e-9 * k * gross(base) + 1e-9;
      near(scaled.levels.netGex, k * base.levels.netGex, tolerance, "net");
      // k = 0 leaves no open interest, hence no live strike at all.
      assert.equal(scaled.strikes.length, k > 0 ? base.strikes.length : 0);
      scaled.strikes.forEach((s, i) => {
        assert.equal(s.strike, base.strikes[i].strike);
        near(s.callGex, k * base.strikes[i].callGex, tolerance, `call ${s.strike}`);
        near(s.putGex, k * base.strikes[i].putGex, tolerance, `put ${s.strike}`);
        near(s.netGex, k * base.strikes[i].netGex, tolerance, `net ${s.strike}`);
      });
      if (k > 0) {
        assert.equal(scaled.levels.callWall, base.levels.callWall);
        assert.equal(scaled.levels.putWall, base.levels.putWall);
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("computeGex() flips net GEX and swaps the walls when calls and puts are swapped", () => {
  fc.assert(
    fc.property(chainArb, (chain) => {
      const base = computeGex(chain);
      const swapped = computeGex({
        ...chain,
        contracts: chain.contracts.map((c) => ({
          ...c,
          type: c.type === "CALL" ? "PUT" as const : "CALL" as const,
        })),
      });
      near(swapped.levels.netGex, -base.levels.netGex, 0, "net");
      if (base.levels.netGex !== 0) assert.notEqual(swapped.levels.regime, base.levels.regime);
      assert.equal(swapped.levels.callWall, base.levels.putWall);
      assert.equal(swapped.levels.putWall, base.levels.callWall);
      // The total at every level is negated, so it crosses zero at the same place.
      assert.equal(swapped.levels.zeroGamma, base.levels.zeroGamma);
      assert.equal(swapped.strikes.length, base.strikes.length);
      swapped.strikes.forEach((s, i) => {
        near(s.callGex, -base.strikes[i].putGex, 0, `call ${s.strike}`);
        near(s.putGex, -base.strikes[i].callGex, 0, `put ${s.strike}`);
      });
    }),
    { numRuns: 200 },
  );
});

Deno.test("gexAtSpot() at the chain's spot equals net GEX when no provider gamma is given", () => {
  fc.assert(
    fc.property(chainArb, (chain) => {
      const noGamma = { ...chain, contracts: chain.contracts.map((c) => ({ ...c, gamma: null })) };
      const profile = computeGex(noGamma);
      near(gexAtSpot(noGamma, chain.spot), profile.levels.netGex, 1e-9 * gross(profile), "net");
    }),
    { numRuns: 200 },
  );
});

Deno.test("gexAtSpot() at the chain's spot equals net GEX when no contract has both a gamma and an iv", () => {
  fc.assert(
    fc.property(
      chainArb,
      fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
      (chain, quoted) => {
        // Each contract priced one way only: by its quoted gamma, or by its iv.
        const oneWay = {
          ...chain,
          contracts: chain.contracts.map((c, i) =>
            quoted[i] && typeof c.gamma === "number" ? { ...c, iv: null } : { ...c, gamma: null }
          ),
        };
        const profile = computeGex(oneWay);
        near(gexAtSpot(oneWay, chain.spot), profile.levels.netGex, 1e-9 * gross(profile), "net");
      },
    ),
    { numRuns: 200 },
  );
  // A quoted-gamma call with no iv and an iv-priced put: regime and zero gamma agree.
  const chain: OptionChain = {
    symbol: "TEST",
    spot: 600,
    asOf: ONE_YEAR_BEFORE,
    contracts: [
      {
        type: "CALL",
        strike: 610,
        expiry: EXPIRY_IN_ONE_YEAR,
        gamma: 0.02,
        iv: null,
        openInterest: 1000,
      },
      { type: "PUT", strike: 590, expiry: EXPIRY_IN_ONE_YEAR, iv: 0.2, openInterest: 1000 },
    ],
  };
  const profile = computeGex(chain);
  assert.equal(profile.levels.regime, "POSITIVE");
  assert.ok(gexAtSpot(chain, 600) > 0);
});

Deno.test("computeGex() puts zero gamma between grid levels where gexAtSpot changes sign", () => {
  fc.assert(
    fc.property(chainArb, (chain) => {
      const { zeroGamma } = computeGex(chain).levels;
      if (zeroGamma === null) return;
      const { spot } = chain;
      assert.ok(zeroGamma >= 0.8 * spot && zeroGamma <= 1.2 * spot, `in range: ${zeroGamma}`);
      const grid = Array.from({ length: 61 }, (_, i) => 0.8 * spot + (0.4 * spot * i) / 60)
        .map((level) => ({ level, total: gexAtSpot(chain, level) }))
        .filter((p) => p.total !== 0);
      const below = grid.findLast((p) => p.level < zeroGamma);
      const above = grid.find((p) => p.level > zeroGamma);
      if (below === undefined || above === undefined) return; // on a grid level exactly
      assert.notEqual(below.total > 0, above.total > 0, `sign change around ${zeroGamma}`);
    }),
    { numRuns: 200 },
  );
});

/** Any chain the schema accepts, out to its bounds, and any dates 2000-2100. */
const extremeChainArb = fc.record({
  symbol: fc.constant("X"),
  spot: fc.double({ min: Number.MIN_VALUE, max: MAX_PRICE, noNaN: true }),
  asOf: fc.date({ min: new Date("2000-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
    .map((d) => d.toISOString()),
  contracts: fc.array(
    fc.record({
      type: fc.constantFrom("CALL", "PUT"),
      strike: fc.double({ min: Number.MIN_VALUE, max: MAX_PRICE, noNaN: true }),
      expiry: fc.date({
        min: new Date("2000-01-01"),
        max: new Date("2100-01-01"),
        noInvalidDate: true,
      }).map((d) => d.toISOString().slice(0, 10)),
      iv: fc.option(fc.double({ min: 0, max: MAX_IV, noNaN: true }), { nil: null }),
      openInterest: fc.integer({ min: 0, max: MAX_OPEN_INTEREST }),
      gamma: fc.option(fc.double({ min: 0, max: MAX_GAMMA, noNaN: true }), { nil: null }),
    }, { requiredKeys: ["type", "strike", "expiry", "openInterest"] }),
    { maxLength: 40 },
  ),
});

Deno.test("computeGex() never throws and returns finite numbers for any valid chain", () => {
  const optionsArb = fc.record({
    zeroGammaSteps: fc.oneof(fc.integer({ min: -5, max: 200 }), fc.double()),
    zeroGammaRange: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.double()),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fc.oneof(chainArb, extremeChainArb), optionsArb, (raw, options) => {
      const chain = OptionChainSchema.parse(raw);
      const { levels, strikes } = computeGex(chain, options);
      const numbers = [
        levels.netGex,
        ...[levels.zeroGamma, levels.callWall, levels.putWall].filter((n) => n !== null),
        ...strikes.flatMap((s) => [s.strike, s.callGex, s.putGex, s.netGex]),
      ];
      assert.ok(numbers.every(Number.isFinite), `not finite: ${numbers}`);
      assert.ok(strikes.every((s) => s.callGex >= 0 && s.putGex <= 0));
      assert.ok(strikes.every((s, i) => i === 0 || strikes[i - 1].strike < s.strike));
      assert.equal(levels.regime, levels.netGex >= 0 ? "POSITIVE" : "NEGATIVE");
    }),
    { numRuns: 300 },
  );
});

Deno.test("computeGex() stays finite at the money on a tiny spot, where gamma per share is huge", () => {
  // gamma ~ 1/S: multiplied by OI before S^2 it overflowed to Infinity, and calls plus puts
  // made NaN, stored and shown as a null net GEX with a NEGATIVE regime.
  const expiry = "2024-06-21";
  const chain = OptionChainSchema.parse({
    symbol: "X",
    spot: 1e-300,
    asOf: AS_OF,
    contracts: [
      { type: "CALL", strike: 1e-300, expiry, iv: 0.2, openInterest: MAX_OPEN_INTEREST },
      { type: "PUT", strike: 1e-300, expiry, iv: 0.2, openInterest: MAX_OPEN_INTEREST },
    ],
  });
  const { levels, strikes } = computeGex(chain);
  assert.equal(levels.netGex, 0);
  assert.equal(levels.regime, "POSITIVE");
  assert.ok(strikes[0].callGex > 0 && Number.isFinite(strikes[0].callGex), `${strikes[0].callGex}`);
  assert.equal(strikes[0].putGex, -strikes[0].callGex);
});
