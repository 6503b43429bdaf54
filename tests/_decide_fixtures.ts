/**
 * Builders and fast-check arbitraries for the decision tests. 2026-03-10 is a
 * Tuesday after the DST change: New York is UTC-4, the regular session runs
 * 13:30Z to 20:00Z, entries 13:45Z to 19:50Z under the default rules.
 */
import fc from "fast-check";
import type { Book, OpenPosition } from "../core/book.ts";
import { decide } from "../core/decide.ts";
import type { GexLevels, MarketContext } from "../core/market_data.ts";
import { DEFAULT_RULES, type Rules } from "../core/rules.ts";
import type { ReceivedSignal } from "../core/signal.ts";

export const AT = "2026-03-10T15:00:00.000Z";
export const BAR_TIME = "2026-03-10T14:55:00.000Z";

export function signal(over: Partial<ReceivedSignal> = {}): ReceivedSignal {
  return {
    id: "sig-1",
    receivedAt: AT,
    source: "TradingView",
    symbol: "SPY",
    exchange: null,
    direction: "CALL",
    action: "ENTRY",
    timeframe: "5m",
    timestamp: BAR_TIME,
    price: 500,
    metadata: { confidence: 0.8, score: 85 },
    alertId: null,
    ...over,
  };
}

export function context(over: Partial<MarketContext> = {}): MarketContext {
  return { symbol: "SPY", spot: 500, vix: 15, trend: "UP", asOf: AT, source: "test", ...over };
}

export function gex(over: Partial<GexLevels> = {}): GexLevels {
  return {
    symbol: "SPY",
    spot: 500,
    netGex: 1e9,
    zeroGamma: 490,
    callWall: 520,
    putWall: 480,
    regime: "POSITIVE",
    asOf: AT,
    ...over,
  };
}

export function position(over: Partial<OpenPosition> = {}): OpenPosition {
  return {
    id: "pos-a",
    symbol: "SPY",
    direction: "CALL",
    quantity: 10,
    entryPrice: 490,
    openedAt: "2026-03-10T14:00:00.000Z",
    entrySignalId: "sig-a",
    entrySignalTime: "2026-03-10T13:55:00.000Z",
    ...over,
  };
}

export function rules(over: Partial<Rules> = {}): Rules {
  return { ...DEFAULT_RULES, ...over };
}

export interface Inputs {
  context?: MarketContext | null;
  gex?: GexLevels | null;
  book?: Book;
  rules?: Partial<Rules>;
  /** The newest context however old: a close's last resort price. */
  lastKnown?: MarketContext | null;
  /** When the worker decides (ISO); default: as of receipt. */
  decidedAt?: string;
}

/** decide() on the fixtures: SPY at 500, VIX 15, positive gamma, empty book, default rules. */
export function run(over: Partial<ReceivedSignal> = {}, inputs: Inputs = {}) {
  return decide(
    signal(over),
    inputs.context === undefined ? context() : inputs.context,
    inputs.gex === undefined ? gex() : inputs.gex,
    inputs.book ?? { open: [] },
    rules(inputs.rules),
    inputs.lastKnown ?? null,
    inputs.decidedAt === undefined ? null : Date.parse(inputs.decidedAt),
  );
}

// ---- arbitraries ----

export const SYMBOLS = ["SPY", "QQQ", "IWM"] as const;
const SESSION_START = Date.parse("2026-03-10T13:30:00Z");
const SESSION_END = Date.parse("2026-03-10T20:00:00Z");

const cents = (min: number, max: number) => fc.integer({ min, max }).map((c) => c / 100);
export const priceArb = cents(100, 100_000);
const oddNumberArb = fc.constantFrom(NaN, Infinity, -Infinity, 0, -5);
/** Null one time in five. */
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null, freq: 5 });
/** Mostly `usual`, sometimes `rare`. */
const mostly = <T, U>(usual: fc.Arbitrary<T>, rare: fc.Arbitrary<U>) =>
  fc.oneof({ arbitrary: usual, weight: 6 }, { arbitrary: rare, weight: 1 });

export const signalPriceArb = mostly(maybe(priceArb), oddNumberArb);

export const metadataArb = fc.record({
  confidence: fc.option(mostly(cents(30, 100), oddNumberArb), {
    nil: undefined,
    freq: 8,
  }),
  score: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined, freq: 8 }),
}, { requiredKeys: [] });

/** A signal received at `receivedMs`, dated up to 20 minutes before it (or 2 after). */
export function signalAt(receivedMs: number, id: string) {
  return fc.record({
    symbol: fc.constantFrom(...SYMBOLS),
    direction: mostly(fc.constantFrom("CALL", "PUT" as const), fc.constant("EXIT" as const)),
    exitAction: mostly(fc.constant(false), fc.constant(true)),
    timeframe: fc.constantFrom("30s", "1m", "5m", "1h", "1D"),
    lagSeconds: mostly(fc.integer({ min: 0, max: 60 }), fc.integer({ min: -120, max: 1200 })),
    price: signalPriceArb,
    metadata: metadataArb,
  }).map((g): ReceivedSignal => ({
    ...signal({ id, symbol: g.symbol, timeframe: g.timeframe, price: g.price }),
    direction: g.direction,
    action: g.direction === "EXIT" || g.exitAction ? "EXIT" : "ENTRY",
    receivedAt: new Date(receivedMs).toISOString(),
    timestamp: new Date(receivedMs - g.lagSeconds * 1000).toISOString(),
    metadata: g.metadata,
  }));
}

/** Any instant: inside the session, just after its close, any time in 2020-2030, or not a time at all. */
export const receivedAtArb = fc.oneof(
  fc.integer({ min: SESSION_START, max: SESSION_END }),
  fc.integer({ min: SESSION_END, max: SESSION_END + 30 * 60_000 }),
  fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
);

export const anySignalArb = fc.tuple(
  receivedAtArb,
  fc.string({ maxLength: 8 }),
  mostly(fc.constant(false), fc.constant(true)),
)
  .chain(([ms, id, garbageTime]) =>
    signalAt(ms, `sig-${id}`).map((s) => garbageTime ? { ...s, receivedAt: "not a time" } : s)
  );

export const contextArb = maybe(fc.record({
  symbol: fc.constantFrom(...SYMBOLS),
  spot: mostly(priceArb, oddNumberArb),
  vix: mostly(maybe(cents(900, 6000)), oddNumberArb),
  trend: fc.constantFrom("UP", "DOWN", "NEUTRAL", null),
  asOf: fc.constant(AT),
  source: fc.constant("test"),
}));

export const gexArb = maybe(fc.record({
  symbol: fc.constantFrom(...SYMBOLS),
  spot: mostly(priceArb, oddNumberArb),
  netGex: fc.double({ noNaN: false }),
  zeroGamma: maybe(priceArb),
  callWall: mostly(maybe(priceArb), oddNumberArb),
  putWall: mostly(maybe(priceArb), oddNumberArb),
  regime: fc.constantFrom("POSITIVE", "NEGATIVE" as const),
  asOf: fc.constant(AT),
}));

/** A book as the store could hold it: at most one position per symbol and direction. */
export const bookArb = fc.uniqueArray(
  fc.record({
    symbol: fc.constantFrom(...SYMBOLS),
    direction: fc.constantFrom("CALL", "PUT" as const),
    quantity: fc.integer({ min: 1, max: 500 }),
    entryPrice: priceArb,
    // Around the signals' own bar times (signalAt), so a late signal meets both older and newer.
    entrySignalTime: fc.integer({ min: SESSION_START - 3_600_000, max: SESSION_END })
      .map((ms) => new Date(ms).toISOString()),
  }),
  { selector: (p) => `${p.symbol}:${p.direction}`, maxLength: 6 },
).map((ps) => ({
  open: ps.map((p, i) => position({ ...p, id: `pos-${i}`, entrySignalId: `sig-${i}` })),
}));

export const rulesArb: fc.Arbitrary<Rules> = fc.record({
  minConfidence: fc.constantFrom(0, 0.3, 0.6),
  confidenceWhenMissing: fc.constantFrom(null, 0.5, 1),
  sizeByConfidence: fc.boolean(),
  minScore: mostly(fc.constant(0), fc.constant(50)),
  maxSignalAgeSeconds: mostly(fc.constantFrom(60, 300), fc.constant(0)),
  maxFutureSkewSeconds: fc.constantFrom(0, 60),
  maxPriceDeviationPct: fc.constantFrom(0, 10, 50),
  marketHours: fc.record({
    enforce: fc.boolean(),
    extendedHours: fc.boolean(),
    extraClosedDates: mostly(fc.constant([]), fc.constant(["2026-03-10"])),
    noEntryMinutesAfterOpen: fc.constantFrom(0, 15),
    noEntryMinutesBeforeClose: fc.constantFrom(0, 10),
    exitMinutesAfterClose: fc.constantFrom(0, 15),
  }),
  maxOpenPositions: fc.integer({ min: 0, max: 6 }),
  maxExposure: fc.integer({ min: 0, max: 100_000 }),
  baseNotional: fc.integer({ min: 1, max: 40_000 }),
  flip: fc.boolean(),
  gex: fc.record({
    wallProximityPct: fc.constantFrom(0, 0.5, 2),
    negativeRegimeMultiplier: fc.constantFrom(0.5, 1),
  }),
  vix: fc.record({
    cautionLevel: fc.constantFrom(15, 20),
    cautionMultiplier: fc.constantFrom(0.5, 1),
    noTradeLevel: fc.constantFrom(30, 45),
  }),
  degraded: fc.record({
    policy: fc.constantFrom("REDUCE", "REJECT" as const),
    multiplier: fc.constantFrom(0, 0.5),
  }),
});

/** Signals received in order inside the 2026-03-10 regular session, each with its data. */
export const sessionStepsArb = fc.array(
  fc.integer({ min: SESSION_START + 15 * 60_000, max: SESSION_END - 11 * 60_000 }),
  { maxLength: 25 },
).chain((times) =>
  fc.tuple(
    ...times.sort((a, b) => a - b).map((ms, i) =>
      fc.tuple(signalAt(ms, `sig-${i}`), contextArb, gexArb).map(([s, c, g]) =>
        // Market data for the signal's own symbol, as the pipeline fetches it.
        [s, c && { ...c, symbol: s.symbol }, g && { ...g, symbol: s.symbol }] as const
      )
    ),
  )
);
