import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AM_SETTLED_ROOTS,
  MAX_CONTRACTS,
  MAX_GAMMA,
  MAX_IV,
  MAX_OPEN_INTEREST,
  MAX_PRICE,
  type OptionChain,
  OptionChainSchema,
  type OptionContract,
  parseCboeChain,
} from "../core/option_chain.ts";
import { zonedParts } from "../core/time_zone.ts";

/** A few SPY options in Cboe's delayed-quotes shape, trimmed from a real response. */
const SPY_FIXTURE = {
  timestamp: "2024-06-14 15:59:00",
  symbol: "SPY",
  data: {
    symbol: "SPY",
    current_price: 542.78,
    close: 542.78,
    prev_day_close: 542.45,
    iv30: 11.52,
    iv30_change: -0.21,
    seqno: 71523491,
    options: [
      {
        option: "SPY240621C00545000",
        bid: 2.1,
        ask: 2.13,
        iv: 0.1052,
        open_interest: 25311.0,
        volume: 48213.0,
        delta: 0.3711,
        gamma: 0.0452,
        theta: -0.3512,
        vega: 0.2511,
        rho: 0.0362,
        theo: 2.115,
        change: -0.42,
        open: 2.6,
        high: 3.05,
        low: 1.98,
        tick: "down",
        last_trade_price: 2.12,
        last_trade_time: "2024-06-14T15:58:59",
        percent_change: -16.54,
        prev_day_close: 2.54,
      },
      {
        option: "SPY240621P00540000",
        bid: 1.95,
        ask: 1.97,
        iv: 0.1198,
        open_interest: 31877.0,
        volume: 39120.0,
        delta: -0.3302,
        gamma: 0.0391,
        theta: -0.3377,
        vega: 0.2436,
        rho: -0.0331,
        theo: 1.96,
        last_trade_price: 1.96,
        prev_day_close: 1.71,
      },
      {
        // A deep strike Cboe quotes with no volatility: iv and gamma 0.
        option: "SPY240719C00700000",
        bid: 0,
        ask: 0.01,
        iv: 0,
        open_interest: 12.0,
        volume: 0,
        delta: 0,
        gamma: 0,
        theo: 0,
      },
      // Unusable: a malformed symbol, a missing open interest, a non-object.
      { option: "SPY240621X00540000", iv: 0.12, open_interest: 10, gamma: 0.01 },
      { option: "SPY240621C00550000", iv: 0.1, gamma: 0.02 },
      "SPY240621C00555000",
    ],
  },
};

Deno.test("parseCboeChain() reads a small SPY fixture into the expected contracts", () => {
  const result = parseCboeChain(SPY_FIXTURE);
  assert.ok(result.ok, !result.ok ? result.error : "");
  const expected: OptionChain = {
    symbol: "SPY",
    spot: 542.78,
    asOf: "2024-06-14T19:59:00.000Z",
    contracts: [
      {
        type: "CALL",
        strike: 545,
        expiry: "2024-06-21",
        iv: 0.1052,
        openInterest: 25311,
        gamma: 0.0452,
      },
      {
        type: "PUT",
        strike: 540,
        expiry: "2024-06-21",
        iv: 0.1198,
        openInterest: 31877,
        gamma: 0.0391,
      },
      { type: "CALL", strike: 700, expiry: "2024-07-19", iv: 0, openInterest: 12, gamma: 0 },
    ],
  };
  assert.deepEqual(result.chain, expected);
});

Deno.test("parseCboeChain() reads New York time as EDT in June and EST in December", () => {
  const at = (timestamp: string) => {
    const result = parseCboeChain({ ...SPY_FIXTURE, timestamp });
    assert.ok(result.ok);
    return result.chain.asOf;
  };
  assert.equal(at("2024-06-14 15:59:00"), "2024-06-14T19:59:00.000Z");
  assert.equal(at("2024-12-13 15:59:30"), "2024-12-13T20:59:30.000Z");
});

Deno.test("parseCboeChain() strips the leading underscore from index symbols", () => {
  const result = parseCboeChain({
    timestamp: "2024-06-14 16:14:59",
    symbol: "_SPX",
    data: {
      symbol: "_SPX",
      current_price: 5431.6,
      options: [
        { option: "SPXW240614C05450000", iv: 0.08, open_interest: 4021, gamma: 0.0031 },
        { option: "SPX240621P05400000", iv: 0.1, open_interest: 17450, gamma: 0.0018 },
      ],
    },
  });
  assert.ok(result.ok);
  assert.equal(result.chain.symbol, "SPX");
  assert.deepEqual(result.chain.contracts.map((c) => [c.type, c.strike, c.expiry]), [
    ["CALL", 5450, "2024-06-14"],
    ["PUT", 5400, "2024-06-21"],
  ]);
});

Deno.test("parseCboeChain() fails with a message naming the field when the shape is wrong", () => {
  const error = (json: unknown) => {
    const result = parseCboeChain(json);
    assert.ok(!result.ok);
    return result.error;
  };
  const { data } = SPY_FIXTURE;
  assert.equal(error(null), "Cannot parse Cboe chain: body must be a JSON object");
  assert.equal(error([SPY_FIXTURE]), "Cannot parse Cboe chain: body must be a JSON object");
  assert.equal(
    error({ ...SPY_FIXTURE, data: "x" }),
    'Cannot parse Cboe chain: field "data" must be an object',
  );
  assert.equal(
    error({ ...SPY_FIXTURE, data: { ...data, options: {} } }),
    'Cannot parse Cboe chain: field "data.options" must be an array',
  );
  assert.match(error({ ...SPY_FIXTURE, symbol: 42, data: { ...data, symbol: "" } }), /"symbol"/);
  assert.match(
    error({ ...SPY_FIXTURE, data: { ...data, current_price: -1, close: null } }),
    /"data\.current_price" must be a positive number/,
  );
  assert.match(error({ ...SPY_FIXTURE, timestamp: "2024-06-31 10:00:00" }), /"timestamp"/);
  assert.match(error({ ...SPY_FIXTURE, timestamp: 1718395140 }), /"timestamp"/);
});

Deno.test("parseCboeChain() fails when none of the options is usable", () => {
  const result = parseCboeChain({
    ...SPY_FIXTURE,
    data: { ...SPY_FIXTURE.data, options: [{ option: "SPY", open_interest: 1 }, 7] },
  });
  assert.deepEqual(result, {
    ok: false,
    error:
      "Cannot parse Cboe chain: none of the 2 options has a valid OCC symbol and open interest",
  });
});

Deno.test("parseCboeChain() keeps at most MAX_CONTRACTS, dropping zero open interest first", () => {
  const option = (i: number, openInterest: number, yy: number) => ({
    option: `SPY${yy}0621C${String(100_000 + i).padStart(8, "0")}`,
    iv: 0.2,
    open_interest: openInterest,
  });
  const options = [
    ...Array.from({ length: 10 }, (_, i) => option(i, 0, 24)),
    ...Array.from({ length: MAX_CONTRACTS - 5 }, (_, i) => option(i, 1, 24)),
    ...Array.from({ length: 10 }, (_, i) => option(i, 1, 25)),
  ];
  const result = parseCboeChain({ ...SPY_FIXTURE, data: { ...SPY_FIXTURE.data, options } });
  assert.ok(result.ok);
  const { contracts } = result.chain;
  assert.equal(contracts.length, MAX_CONTRACTS);
  assert.ok(contracts.every((c) => c.openInterest > 0));
  assert.equal(contracts.filter((c) => c.expiry === "2025-06-21").length, 5);
});

Deno.test("parseCboeChain() drops expired contracts before the farthest expiries when trimming", () => {
  const option = (i: number, yymmdd: string) => ({
    option: `SPY${yymmdd}C${String(100_000 + i).padStart(8, "0")}`,
    iv: 0.2,
    open_interest: 1,
  });
  // The fixture is timed 2024-06-14: the 2024-06-07 contracts expired a week before.
  const options = [
    ...Array.from({ length: 10 }, (_, i) => option(i, "240607")),
    ...Array.from({ length: MAX_CONTRACTS - 5 }, (_, i) => option(i, "240614")),
    ...Array.from({ length: 10 }, (_, i) => option(i, "250620")),
  ];
  const result = parseCboeChain({ ...SPY_FIXTURE, data: { ...SPY_FIXTURE.data, options } });
  assert.ok(result.ok);
  const { contracts } = result.chain;
  assert.equal(contracts.length, MAX_CONTRACTS);
  assert.equal(contracts.filter((c) => c.expiry === "2024-06-07").length, 0);
  assert.equal(contracts.filter((c) => c.expiry === "2025-06-20").length, 5);
});

/** The settlement parseCboeChain() gives each of `options` (OCC symbols) in `symbol`'s chain. */
function settlements(symbol: string, spot: number, options: string[]) {
  const result = parseCboeChain({
    ...SPY_FIXTURE,
    symbol,
    data: {
      ...SPY_FIXTURE.data,
      current_price: spot,
      options: options.map((option) => ({ option, iv: 0.2, open_interest: 10 })),
    },
  });
  assert.ok(result.ok);
  return result.chain.contracts.map((c) => c.settlement);
}

Deno.test("parseCboeChain() marks the AM-settled index roots and leaves their weeklies PM", () => {
  assert.deepEqual(
    settlements("_SPX", 6000, [
      "SPX260320C06000000",
      "SPXW260320C06000000",
      "NDX260320P20000000",
      "SPY260320C00600000",
    ]),
    ["AM", undefined, "AM", undefined],
  );
});

Deno.test("parseCboeChain() returns an error rather than throwing on a hostile object", () => {
  const hostile = new Proxy({}, {
    get() {
      throw new Error("boom");
    },
  });
  const result = parseCboeChain(hostile);
  assert.equal(result.ok, false);
});

const occArb = fc.tuple(
  fc.stringMatching(/^[A-Z]{1,6}$/),
  fc.oneof(
    fc.date({ min: new Date("2000-01-01"), max: new Date("2099-12-31"), noInvalidDate: true })
      .map((d) => d.toISOString().slice(2, 10).replaceAll("-", "")),
    fc.stringMatching(/^\d{6}$/),
  ),
  fc.constantFrom("C", "P"),
  fc.stringMatching(/^\d{8}$/),
).map((parts) => parts.join(""));

/** `gen` most of the time, anything JSON otherwise. */
const mostly = <T>(gen: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: gen, weight: 9 }, { arbitrary: fc.jsonValue(), weight: 1 });

/** Cboe-shaped bodies with odd values in some slots, so the deep paths run too. */
const cboeLikeArb = fc.record({
  timestamp: mostly(fc.constantFrom("2024-06-14 15:59:00", "2024-03-10 02:30:00", "2024-06-14")),
  symbol: mostly(fc.constantFrom("SPY", "_SPX", "_", "spy")),
  data: mostly(fc.record({
    current_price: mostly(fc.oneof(fc.double({ min: 1, max: 1000 }), fc.double())),
    close: fc.jsonValue(),
    options: mostly(fc.array(mostly(fc.record({
      option: mostly(fc.oneof(occArb, fc.string())),
      iv: mostly(fc.double()),
      open_interest: mostly(fc.oneof(fc.nat(), fc.double())),
      gamma: mostly(fc.double()),
    })))),
  })),
});

Deno.test("parseCboeChain() never throws and gives a valid chain or a sentence-case error", () => {
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), cboeLikeArb, cboeLikeArb), (json) => {
      const result = parseCboeChain(json);
      if (result.ok) assert.ok(OptionChainSchema.safeParse(result.chain).success);
      else {
        assert.match(result.error, /^Cannot parse Cboe chain: [a-z"]/);
        // The catch-all is for hostile objects only: JSON must never reach it.
        assert.doesNotMatch(result.error, /could not be read/);
      }
    }),
    { numRuns: 500 },
  );
});

const contractArb: fc.Arbitrary<OptionContract> = fc.record({
  type: fc.constantFrom("CALL", "PUT"),
  strike: fc.integer({ min: 1, max: 99_999_999 }).map((milli) => milli / 1000),
  expiry: fc.date({ min: new Date("2000-01-01"), max: new Date("2099-12-31"), noInvalidDate: true })
    .map((d) => d.toISOString().slice(0, 10)),
  iv: fc.option(fc.double({ min: 0, max: MAX_IV, noNaN: true }), { nil: null }),
  openInterest: fc.integer({ min: 0, max: MAX_OPEN_INTEREST }),
  gamma: fc.option(fc.double({ min: 0, max: MAX_GAMMA, noNaN: true }), { nil: null }),
});

/** Whole-second instants away from 01:00-02:59 New York, where wall times repeat or skip. */
const asOfArb = fc.integer({ min: Date.UTC(2000, 0, 1) / 1000, max: Date.UTC(2099, 0, 1) / 1000 })
  .map((s) => new Date(s * 1000))
  .filter((d) => zonedParts(d).hour >= 3);

const chainArb = fc.record({
  // Not an AM-settled root: the parser marks those contracts settlement "AM", which
  // the generated chain does not carry (a DJX chain failed the round trip now and then).
  symbol: fc.stringMatching(/^[A-Z]{1,6}$/).filter((s) => !AM_SETTLED_ROOTS.has(s)),
  spot: fc.double({ min: Number.MIN_VALUE, max: MAX_PRICE, noNaN: true }),
  asOf: asOfArb.map((d) => d.toISOString()),
  contracts: fc.array(contractArb, { maxLength: 40 }),
});

/** Writes `chain` the way Cboe would publish it. */
function toCboe(chain: OptionChain, index: boolean): unknown {
  const p = zonedParts(new Date(chain.asOf));
  const two = (n: number) => String(n).padStart(2, "0");
  return {
    timestamp: `${p.date} ${two(p.hour)}:${two(p.minute)}:${two(p.second)}`,
    symbol: index ? `_${chain.symbol}` : chain.symbol,
    data: {
      symbol: index ? `_${chain.symbol}` : chain.symbol,
      current_price: chain.spot,
      iv30: 14.2,
      options: chain.contracts.map((c) => ({
        option: `${chain.symbol}${c.expiry.slice(2).replaceAll("-", "")}${c.type[0]}${
          String(Math.round(c.strike * 1000)).padStart(8, "0")
        }`,
        bid: 1,
        ask: 1.05,
        iv: c.iv,
        open_interest: c.openInterest,
        volume: 3,
        gamma: c.gamma,
      })),
    },
  };
}

Deno.test("parseCboeChain() round-trips a chain written as a Cboe payload", () => {
  fc.assert(
    fc.property(chainArb, fc.boolean(), (chain, index) => {
      assert.ok(OptionChainSchema.safeParse(chain).success);
      const json = JSON.parse(JSON.stringify(toCboe(chain, index)));
      const result = parseCboeChain(json);
      if (chain.contracts.length === 0) return assert.equal(result.ok, false);
      assert.ok(result.ok, !result.ok ? result.error : "");
      // fast-check's records have no prototype; compare against plain copies.
      assert.deepEqual(result.chain, {
        ...chain,
        contracts: chain.contracts.map((c) => ({ ...c })),
      });
    }),
    { numRuns: 200 },
  );
});

Deno.test("OptionChainSchema accepts an operator's chain and stores asOf in UTC", () => {
  const parsed = OptionChainSchema.parse({
    symbol: "BRK.B",
    spot: 410.5,
    asOf: "2024-06-14T15:59:00-04:00",
    contracts: [
      { type: "CALL", strike: 420, expiry: "2024-06-21", iv: 0.18, openInterest: 1200 },
      { type: "PUT", strike: 400, expiry: "2024-06-21", openInterest: 900, gamma: 0.012 },
    ],
  });
  assert.equal(parsed.asOf, "2024-06-14T19:59:00.000Z");
  assert.equal(parsed.contracts.length, 2);
});

Deno.test("OptionChainSchema rejects lowercase symbols, bad numbers and impossible expiries", () => {
  const base = {
    symbol: "SPY",
    spot: 540,
    asOf: "2024-06-14T19:59:00Z",
    contracts: [{ type: "CALL", strike: 540, expiry: "2024-06-21", iv: 0.1, openInterest: 5 }],
  };
  const contract = base.contracts[0];
  const rejects = (chain: unknown) =>
    assert.equal(OptionChainSchema.safeParse(chain).success, false);
  assert.ok(OptionChainSchema.safeParse(base).success);
  rejects({ ...base, symbol: "spy" });
  rejects({ ...base, spot: 0 });
  rejects({ ...base, asOf: "2024-06-14 15:59:00" });
  rejects({ ...base, contracts: [{ ...contract, type: "call" }] });
  rejects({ ...base, contracts: [{ ...contract, strike: -540 }] });
  rejects({ ...base, contracts: [{ ...contract, expiry: "2024-02-30" }] });
  rejects({ ...base, contracts: [{ ...contract, iv: -0.1 }] });
  rejects({ ...base, contracts: [{ ...contract, openInterest: 2.5 }] });
  rejects({ ...base, contracts: [{ ...contract, gamma: Number.NaN }] });
  rejects({ ...base, spot: MAX_PRICE * 2 });
  rejects({ ...base, contracts: Array(MAX_CONTRACTS + 1).fill(contract) });
});

Deno.test("parseCboeChain() marks VIX weeklies AM-settled, like the monthlies", () => {
  // Every VIX option, weekly (root VIXW) or monthly, settles on Wednesday's opening quotation.
  assert.deepEqual(
    settlements("_VIX", 18, ["VIX260318C00020000", "VIXW260325C00020000"]),
    ["AM", "AM"],
  );
});
