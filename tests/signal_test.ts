/**
 * normalizeSignal(): known answers for what real TradingView placeholders
 * produce, the issues it reports, and two properties: it is total (any input
 * gives a schema-valid signal or a list of issues, never a throw) and
 * idempotent (a canonical signal normalizes to itself).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { normalizeSignal, type Signal, SignalSchema } from "../core/signal.ts";

const BASE = {
  symbol: "SPY",
  direction: "CALL",
  timeframe: "5",
  timestamp: "2024-01-29T12:00:00Z",
};

function ok(input: unknown): Signal {
  const result = normalizeSignal(input);
  assert.ok(result.ok, `expected a signal, got ${JSON.stringify(result)}`);
  return result.signal;
}

function issues(input: unknown): { path: string; message: string }[] {
  const result = normalizeSignal(input);
  assert.ok(!result.ok, `expected issues, got ${JSON.stringify(result)}`);
  return result.issues;
}

Deno.test("normalizeSignal() turns the guide's sample into the canonical signal", () => {
  assert.deepEqual(
    ok({
      source: "TradingView",
      symbol: "SPY",
      direction: "CALL",
      timeframe: "5m",
      timestamp: "2024-01-29T12:00:00Z",
      price: 487.12,
      metadata: { score: 85, confidence: 0.85 },
    }),
    {
      source: "TradingView",
      symbol: "SPY",
      exchange: null,
      direction: "CALL",
      action: "ENTRY",
      timeframe: "5m",
      timestamp: "2024-01-29T12:00:00.000Z",
      price: 487.12,
      metadata: { score: 85, confidence: 0.85 },
      alertId: null,
    },
  );
});

Deno.test("normalizeSignal() accepts a whole TradingView strategy alert template", () => {
  // {"ticker": "{{ticker}}", "interval": "{{interval}}", "time": "{{time}}", "close": "{{close}}",
  //  "action": "{{strategy.order.action}}", "market_position": "{{strategy.market_position}}", ...}
  assert.deepEqual(
    ok({
      ticker: "NASDAQ:AAPL",
      exchange: "NASDAQ",
      interval: "60",
      time: "2024-01-29T14:30:00Z",
      timenow: "2024-01-29T14:30:02Z",
      close: "191.56",
      action: "sell",
      market_position: "flat",
      id: "AAPL-2024-01-29T14:30:02Z",
      comment: "Exit long",
    }),
    {
      source: "TradingView",
      symbol: "AAPL",
      exchange: "NASDAQ",
      direction: "EXIT",
      action: "EXIT",
      timeframe: "1h",
      timestamp: "2024-01-29T14:30:00.000Z",
      price: 191.56,
      metadata: {},
      alertId: "AAPL-2024-01-29T14:30:02Z",
    },
  );
});

Deno.test("normalizeSignal() splits the exchange out of {{ticker}} and upper-cases both", () => {
  const cases: [unknown, string, string | null][] = [
    ["SPY", "SPY", null],
    ["NASDAQ:AAPL", "AAPL", "NASDAQ"],
    ["BATS:SPY", "SPY", "BATS"],
    ["nasdaq:aapl", "AAPL", "NASDAQ"],
    ["  spy ", "SPY", null],
    ["BRK.B", "BRK.B", null],
    ["CME_MINI:ES1!", "ES1!", "CME_MINI"],
  ];
  for (const [ticker, symbol, exchange] of cases) {
    const s = ok({ ...BASE, symbol: ticker });
    assert.deepEqual([s.symbol, s.exchange], [symbol, exchange], String(ticker));
  }
  // {{exchange}} as its own field, and `ticker` as an alias of `symbol`.
  const s = ok({ ...BASE, symbol: undefined, ticker: "aapl", exchange: "nasdaq" });
  assert.deepEqual([s.symbol, s.exchange], ["AAPL", "NASDAQ"]);
});

Deno.test("normalizeSignal() maps every {{interval}} TradingView sends to a canonical timeframe", () => {
  const cases: [unknown, string][] = [
    ["1", "1m"],
    ["5", "5m"],
    ["15", "15m"],
    ["60", "1h"],
    ["240", "4h"],
    ["D", "1D"],
    ["W", "1W"],
    ["1D", "1D"],
    ["M", "1M"],
    ["30S", "30s"],
    ["5m", "5m"],
    ["1h", "1h"],
    ["90", "90m"],
    ["3M", "3M"],
    ["1T", "1T"],
    ["100T", "100T"],
    [5, "5m"],
    [60, "1h"],
  ];
  for (const [interval, timeframe] of cases) {
    assert.equal(ok({ ...BASE, timeframe: interval }).timeframe, timeframe, String(interval));
    assert.equal(
      ok({ ...BASE, timeframe: undefined, interval }).timeframe,
      timeframe,
      `interval ${interval}`,
    );
  }
});

Deno.test("normalizeSignal() reads {{time}} as ISO (Z, offset, millis) or epoch ms or seconds", () => {
  const noon = "2024-01-29T12:00:00.000Z";
  const cases: [unknown, string][] = [
    ["2024-01-29T12:00:00Z", noon],
    ["2024-01-29T07:00:00-05:00", noon],
    ["2024-01-29T13:00:00+01:00", noon],
    ["2024-01-29T17:30:00+0530", noon],
    ["2024-01-29T12:00:00.250Z", "2024-01-29T12:00:00.250Z"],
    ["2024-01-29 12:00:00Z", noon],
    ["2024-01-29T12:00Z", noon],
    [1706529600000, noon],
    ["1706529600000", noon],
    [1706529600, noon],
    ["1706529600", noon],
    [1706529600.5, "2024-01-29T12:00:00.500Z"],
    // Early in the accepted range, epoch milliseconds are still read as milliseconds.
    [978307200000, "2001-01-01T00:00:00.000Z"],
    ["946684800000", "2000-01-01T00:00:00.000Z"],
    [946684800, "2000-01-01T00:00:00.000Z"],
    [4102444799, "2099-12-31T23:59:59.000Z"],
  ];
  for (const [time, iso] of cases) {
    assert.equal(ok({ ...BASE, timestamp: time }).timestamp, iso, String(time));
  }
  // Aliases, in order of preference: timestamp, time ({{time}}), timenow ({{timenow}}).
  const { timestamp: _, ...rest } = BASE;
  assert.equal(
    ok({ ...rest, time: "2024-01-29T12:00:00Z", timenow: "2024-01-29T12:00:05Z" }).timestamp,
    noon,
  );
  assert.equal(ok({ ...rest, timenow: "2024-01-29T12:00:00Z" }).timestamp, noon);
});

Deno.test("normalizeSignal() refuses times without a zone, impossible dates and far-off years", () => {
  for (
    const time of [
      "2024-01-29T12:00:00",
      "2024-02-30T12:00:00Z",
      "2023-02-29T12:00:00Z",
      "2024-13-01T00:00:00Z",
      "29/01/2024 12:00",
      "1899-12-31T00:00:00Z",
      "2100-01-01T00:00:00Z",
      -1,
      0,
      "yesterday",
    ]
  ) {
    const found = issues({ ...BASE, timestamp: time });
    assert.deepEqual(found.map((i) => i.path), ["timestamp"], String(time));
  }
  // A leap day is a real day.
  assert.equal(
    ok({ ...BASE, timestamp: "2024-02-29T12:00:00Z" }).timestamp,
    "2024-02-29T12:00:00.000Z",
  );
});

Deno.test("normalizeSignal() reads buy/sell/long/short/bullish/bearish in any case", () => {
  const cases: [string, string][] = [
    ["buy", "CALL"],
    ["BUY", "CALL"],
    ["Long", "CALL"],
    ["bullish", "CALL"],
    ["CALL", "CALL"],
    ["calls", "CALL"],
    ["sell", "PUT"],
    ["SELL", "PUT"],
    ["short", "PUT"],
    ["Bearish", "PUT"],
    ["put", "PUT"],
    ["flat", "EXIT"],
    ["Exit", "EXIT"],
    ["close", "EXIT"],
  ];
  for (const [word, direction] of cases) {
    for (const key of ["direction", "side", "signal"]) {
      const { direction: _, ...rest } = BASE;
      const s = ok({ ...rest, [key]: word });
      assert.equal(s.direction, direction, `${key}: ${word}`);
      assert.equal(s.action, direction === "EXIT" ? "EXIT" : "ENTRY", `${key}: ${word}`);
    }
  }
});

Deno.test("normalizeSignal() lets {{strategy.market_position}} win over {{strategy.order.action}}", () => {
  const { direction: _, ...rest } = BASE;
  const cases: [Record<string, string>, string, string][] = [
    // Selling to go flat closes a long: EXIT, not a new PUT.
    [{ action: "sell", market_position: "flat" }, "EXIT", "EXIT"],
    // Buying to go flat covers a short: EXIT, not a new CALL.
    [{ action: "buy", market_position: "flat" }, "EXIT", "EXIT"],
    [{ action: "buy", market_position: "long" }, "CALL", "ENTRY"],
    [{ action: "sell", market_position: "short" }, "PUT", "ENTRY"],
    // A reversal: the order is a sell, the strategy ends up short.
    [{ action: "SELL", marketPosition: "Short" }, "PUT", "ENTRY"],
    [{ action: "buy", position: "LONG" }, "CALL", "ENTRY"],
    // The order action alone is a direction.
    [{ action: "buy" }, "CALL", "ENTRY"],
    [{ action: "sell" }, "PUT", "ENTRY"],
    // A market position also wins over an explicit direction.
    [{ direction: "CALL", market_position: "flat" }, "EXIT", "EXIT"],
    // Going flat from a known side closes that side only ({{strategy.prev_market_position}}).
    [{ action: "sell", market_position: "flat", prev_market_position: "long" }, "CALL", "EXIT"],
    [{ action: "buy", market_position: "flat", prevMarketPosition: "Short" }, "PUT", "EXIT"],
    [{ action: "sell", market_position: "flat", prev_market_position: "flat" }, "EXIT", "EXIT"],
    // Not going flat, the previous position changes nothing: a reversal is still an entry.
    [{ action: "sell", market_position: "short", prev_market_position: "long" }, "PUT", "ENTRY"],
    [{ action: "buy", market_position: "long", prev_market_position: "long" }, "CALL", "ENTRY"],
  ];
  for (const [fields, direction, action] of cases) {
    const s = ok({ ...rest, ...fields });
    assert.deepEqual([s.direction, s.action], [direction, action], JSON.stringify(fields));
  }
});

Deno.test("normalizeSignal() takes the action ENTRY or EXIT, defaulting to ENTRY", () => {
  const { direction: _, ...rest } = BASE;
  const cases: [Record<string, string>, string, string][] = [
    [{ direction: "CALL" }, "CALL", "ENTRY"],
    [{ direction: "CALL", action: "ENTRY" }, "CALL", "ENTRY"],
    [{ direction: "put", action: "entry" }, "PUT", "ENTRY"],
    [{ direction: "CALL", action: "EXIT" }, "CALL", "EXIT"],
    [{ direction: "PUT", action: "close" }, "PUT", "EXIT"],
    [{ action: "EXIT" }, "EXIT", "EXIT"],
    [{ action: "exit" }, "EXIT", "EXIT"],
    // EXIT as a direction is always an EXIT action.
    [{ direction: "EXIT", action: "ENTRY" }, "EXIT", "EXIT"],
    // An exit's buy or sell ({{strategy.order.action}}: "sell" ends a long; "close buy"
    // names the long) closes whatever is open; CALL, PUT, long and short name the side.
    [{ direction: "sell", action: "exit" }, "EXIT", "EXIT"],
    [{ direction: "BUY", action: "close" }, "EXIT", "EXIT"],
    [{ direction: "long", action: "exit" }, "CALL", "EXIT"],
    [{ direction: "sell", action: "ENTRY" }, "PUT", "ENTRY"],
  ];
  for (const [fields, direction, action] of cases) {
    const s = ok({ ...rest, ...fields });
    assert.deepEqual([s.direction, s.action], [direction, action], JSON.stringify(fields));
  }
  const found = issues({ ...rest, direction: "CALL", action: "HOLD" });
  assert.deepEqual(found.map((i) => i.path), ["action"]);
});

Deno.test("normalizeSignal() lifts top-level score and confidence into metadata", () => {
  assert.deepEqual(ok({ ...BASE, score: 85, confidence: 85 }).metadata, {
    score: 85,
    confidence: 0.85,
  });
  // Placeholders such as {{plot_0}} arrive as strings.
  assert.deepEqual(ok({ ...BASE, score: "72.5", confidence: "0.7" }).metadata, {
    score: 72.5,
    confidence: 0.7,
  });
  assert.deepEqual(ok({ ...BASE, confidence: 1 }).metadata, { confidence: 1 });
  // What metadata says wins over the top level; other metadata is kept as given.
  assert.deepEqual(
    ok({ ...BASE, score: 10, metadata: { score: 90, note: "breakout", tags: ["a"] } }).metadata,
    { score: 90, note: "breakout", tags: ["a"] },
  );
  assert.deepEqual(issues({ ...BASE, score: 101 }).map((i) => i.path), ["metadata.score"]);
  assert.deepEqual(
    issues({ ...BASE, metadata: { confidence: -0.1 } }).map((i) => i.path),
    ["metadata.confidence"],
  );
  assert.deepEqual(issues({ ...BASE, metadata: [1, 2] }).map((i) => i.path), ["metadata"]);
});

Deno.test("normalizeSignal() says when a TradingView placeholder was not substituted", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ symbol: "{{ticker}}" }, "symbol"],
    [{ timeframe: "{{interval}}" }, "timeframe"],
    [{ timestamp: "{{timenow}}" }, "timestamp"],
    [{ direction: "{{strategy.order.action}}" }, "direction"],
    [{ action: "{{strategy.order.action}}" }, "action"],
    [{ market_position: "{{strategy.market_position}}" }, "market_position"],
    [
      { prev_market_position: "{{strategy.prev_market_position}}", market_position: "flat" },
      "prev_market_position",
    ],
    [{ price: "{{close}}" }, "price"],
    // Checked even beside an id: unsubstituted, it would merge every alert into one.
    [{ idempotency_key: "{{strategy.order.id}}", id: "a-1" }, "idempotency_key"],
  ];
  for (const [fields, path] of cases) {
    const found = issues({ ...BASE, ...fields });
    assert.equal(found.length, 1, JSON.stringify(found));
    assert.equal(found[0].path, path);
    assert.match(found[0].message, /unsubstituted TradingView placeholder/);
    assert.ok(found[0].message.includes(String(Object.values(fields)[0])), found[0].message);
  }
});

Deno.test("normalizeSignal() reports every problem at once, each at its field's path", () => {
  const found = issues({
    symbol: "not a ticker!",
    direction: "SIDEWAYS",
    timeframe: "often",
    price: -3,
    id: "x".repeat(201),
  });
  assert.deepEqual(
    found.map((i) => i.path).sort(),
    ["direction", "id", "price", "symbol", "timeframe", "timestamp"],
  );
  assert.deepEqual(issues({}).map((i) => i.path).sort(), [
    "direction",
    "symbol",
    "timeframe",
    "timestamp",
  ]);
  for (const input of [null, [], "SPY", 42, undefined]) {
    assert.deepEqual(issues(input), [{ path: "", message: "Alert message must be a JSON object" }]);
  }
  assert.deepEqual(issues({ ...BASE, symbol: ":SPY" }).map((i) => i.path), ["exchange"]);
  assert.deepEqual(issues({ ...BASE, exchange: "N-Y" }).map((i) => i.path), ["exchange"]);
});

Deno.test("normalizeSignal() refuses NUL and unpaired surrogates in text fields (Postgres would)", () => {
  for (const key of ["source", "id", "symbol"]) {
    for (const bad of ["TV\u0000", "TV\ud800"]) {
      const found = issues({ ...BASE, [key]: bad });
      assert.equal(found.length, 1);
      assert.equal(found[0].path, key === "source" ? "source" : key);
      assert.match(found[0].message, /NUL or unpaired surrogate/);
    }
  }
});

Deno.test("normalizeSignal() quotes bad input in messages as storable text", () => {
  // 39 letters and an emoji: a plain 40-character cut would split the surrogate pair.
  const found = issues({ ...BASE, symbol: `${"x".repeat(39)}😀`, direction: "\u0001up\u0007" });
  for (const i of found) {
    assert.ok(i.message.isWellFormed(), i.message);
    // deno-lint-ignore no-control-regex
    assert.ok(!/[\u0000-\u001f]/.test(i.message), i.message);
  }
});

Deno.test("normalizeSignal() cleans metadata for jsonb: no NUL, no lone surrogates, bounded depth", () => {
  let deep: unknown = "bottom";
  for (let i = 0; i < 10_000; i++) deep = [deep];
  const s = ok({ ...BASE, metadata: { note: "a\u0000b", half: "\ud83d", deep } });
  assert.equal(s.metadata.note, "a\uFFFDb");
  assert.equal(s.metadata.half, "\uFFFD");
  assert.ok(JSON.stringify(s.metadata).includes("[nested too deep]"));
});

// Properties -----------------------------------------------------------------

function everyString(value: unknown, seen = new Set<unknown>()): string[] {
  if (typeof value === "string") return [value];
  if (typeof value !== "object" || value === null || seen.has(value)) return [];
  seen.add(value);
  return Object.entries(value).flatMap(([k, v]) => [k, ...everyString(v, seen)]);
}

/** What normalizeSignal() promises for any input. */
function assertTotal(input: unknown): boolean {
  const result = normalizeSignal(input);
  if (result.ok) {
    assert.ok(SignalSchema.safeParse(result.signal).success);
    // Everything in a signal can be stored in Postgres text and jsonb.
    for (const s of everyString(result.signal)) {
      assert.ok(s.isWellFormed() && !s.includes("\u0000"), JSON.stringify(s));
    }
  } else {
    assert.ok(result.issues.length >= 1);
    for (const i of result.issues) {
      assert.deepEqual(Object.keys(i).sort(), ["message", "path"]);
      assert.equal(typeof i.path, "string");
      assert.equal(typeof i.message, "string");
      assert.ok(i.message.length > 0);
      assert.ok(i.message.isWellFormed() && !i.message.includes("\u0000"), i.message);
    }
  }
  return result.ok;
}

/** Strings a template could plausibly produce, with noise: NUL, lone surrogates, placeholders. */
const noisyText = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.string({
    unit: fc.oneof(
      fc.constantFrom("\u0000", "\ud800", "\udfff", "{", "}", " ", ":"),
      fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
    ),
  }),
  fc.constantFrom("{{ticker}}", "{{interval}}", "{{timenow}}", "", " ", "null", "NaN"),
);

const plausibleSymbol = fc.constantFrom("SPY", "NASDAQ:AAPL", "BATS:SPY", "spy", " QQQ ", "ES1!");
const plausibleDirection = fc.constantFrom(
  "buy",
  "SELL",
  "Long",
  "short",
  "bullish",
  "BEARISH",
  "CALL",
  "put",
  "flat",
  "EXIT",
);
const plausibleTimeframe = fc.constantFrom(
  "1",
  "5",
  "15",
  "60",
  "240",
  "D",
  "W",
  "1D",
  "M",
  "30S",
  "100T",
);
const plausibleTime = fc.oneof(
  fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2099, 11, 31) }).chain((ms) =>
    fc.constantFrom<unknown>(
      new Date(ms).toISOString(),
      new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z"),
      ms,
      String(ms),
      Math.floor(ms / 1000),
      String(Math.floor(ms / 1000)),
    )
  ),
);
const plausibleNumber = fc.oneof(
  fc.double({ min: 0.01, max: 1e6, noNaN: true }),
  fc.integer({ min: 1, max: 100_000 }).map(String),
  fc.constantFrom("487.12", 0.85, 85, "85"),
);

function noisy<T>(plausible: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 12, arbitrary: plausible },
    { weight: 1, arbitrary: noisyText },
    { weight: 1, arbitrary: fc.jsonValue() },
  );
}

const noisyAlert = fc.record({
  source: noisy(fc.constantFrom("TradingView", "relay")),
  symbol: noisy(plausibleSymbol),
  ticker: noisy(plausibleSymbol),
  exchange: noisy(fc.constantFrom("NASDAQ", "nyse", null)),
  direction: noisy(plausibleDirection),
  side: noisy(plausibleDirection),
  action: noisy(fc.constantFrom("ENTRY", "exit", "buy", "sell", "close")),
  market_position: noisy(fc.constantFrom("long", "short", "flat")),
  prev_market_position: noisy(fc.constantFrom("long", "short", "flat")),
  timeframe: noisy(plausibleTimeframe),
  interval: noisy(plausibleTimeframe),
  timestamp: noisy(plausibleTime),
  time: noisy(plausibleTime),
  timenow: noisy(plausibleTime),
  price: noisy(plausibleNumber),
  close: noisy(plausibleNumber),
  score: noisy(fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constantFrom("85", "12.5"))),
  confidence: noisy(fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constant("85"))),
  metadata: noisy(fc.dictionary(fc.string(), fc.jsonValue())),
  id: noisy(fc.string({ minLength: 1, maxLength: 40 })),
}, { requiredKeys: ["symbol", "direction", "timeframe", "timestamp"] });

Deno.test("normalizeSignal() is total: any value gives a valid signal or issues, never a throw", () => {
  fc.assert(fc.property(fc.anything(), (x) => void assertTotal(x)), { numRuns: 300 });
  fc.assert(fc.property(fc.jsonValue(), (x) => void assertTotal(x)), { numRuns: 300 });
  let okRuns = 0;
  fc.assert(fc.property(noisyAlert, (x) => void (assertTotal(x) && okRuns++)), { numRuns: 500 });
  // The noisy records reach the signal branch too, not only the issues one.
  assert.ok(okRuns >= 50, `only ${okRuns} of 500 noisy alerts gave a signal`);
});

/** Alerts spelled the many ways TradingView templates spell them; most are valid. */
const plausibleAlert = fc.record({
  symbolKey: fc.constantFrom("symbol", "ticker"),
  symbol: plausibleSymbol,
  exchange: fc.option(fc.constantFrom("NASDAQ", "nyse", "BATS"), { nil: undefined }),
  directionKey: fc.constantFrom("direction", "side", "signal", "action"),
  direction: plausibleDirection,
  action: fc.option(fc.constantFrom("ENTRY", "EXIT", "entry", "close"), { nil: undefined }),
  position: fc.option(fc.constantFrom("long", "short", "flat"), { nil: undefined }),
  timeframeKey: fc.constantFrom("timeframe", "interval", "tf"),
  timeframe: fc.oneof(plausibleTimeframe, fc.constantFrom(5, 60, "5m", "1h", "2h", "45")),
  timeKey: fc.constantFrom("timestamp", "time", "timenow"),
  time: plausibleTime,
  price: fc.option(plausibleNumber, { nil: undefined }),
  score: fc.option(fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant("55")), {
    nil: undefined,
  }),
  confidence: fc.option(
    fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 2, max: 100 })),
    { nil: undefined },
  ),
  metadata: fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: undefined }),
  id: fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined }),
  source: fc.option(fc.constantFrom("TradingView", "relay", " TradingView "), { nil: undefined }),
  noise: fc.option(noisyText, { nil: undefined }),
}).map((a) => {
  const body: Record<string, unknown> = {
    [a.symbolKey]: a.symbol,
    [a.timeframeKey]: a.timeframe,
    [a.timeKey]: a.time,
  };
  if (a.directionKey === "action") body.action = a.direction;
  else {
    body[a.directionKey] = a.direction;
    if (a.action !== undefined) body.action = a.action;
  }
  const optional = {
    exchange: a.exchange,
    market_position: a.position,
    price: a.price,
    score: a.score,
    confidence: a.confidence,
    metadata: a.metadata,
    id: a.id,
    source: a.source,
    comment: a.noise,
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) body[k] = v;
  return body;
});

Deno.test("normalizeSignal() is idempotent: a canonical signal normalizes to itself", () => {
  let okRuns = 0;
  const numRuns = 400;
  fc.assert(
    fc.property(plausibleAlert, (input) => {
      const first = normalizeSignal(input);
      if (!first.ok) return;
      okRuns++;
      const again = normalizeSignal(first.signal);
      assert.ok(again.ok, JSON.stringify(again));
      assert.deepEqual(again.signal, first.signal);
      // And through JSON, the way a stored signal comes back.
      const stored = normalizeSignal(JSON.parse(JSON.stringify(first.signal)));
      assert.ok(stored.ok);
      assert.deepEqual(stored.signal, JSON.parse(JSON.stringify(first.signal)));
    }),
    { numRuns },
  );
  assert.ok(okRuns >= numRuns * 0.6, `only ${okRuns} of ${numRuns} runs gave a signal`);
});

Deno.test("normalizeSignal() takes a NaN or null score or confidence as absent, keeping the signal", () => {
  for (const value of ["NaN", "nan", null]) {
    const r = normalizeSignal({
      symbol: "SPY",
      direction: "CALL",
      timeframe: "5",
      timestamp: "2024-01-29T12:00:00Z",
      confidence: value,
      metadata: { score: value, note: "kept" },
    });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.signal.metadata, { note: "kept" });
  }
});

Deno.test("normalizeSignal() does not read a numeric `position` (position_size) as a direction", () => {
  const r = normalizeSignal({
    symbol: "SPY",
    action: "buy",
    position: 100,
    timeframe: "5",
    timestamp: "2024-01-29T12:00:00Z",
  });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.signal.direction, "CALL");
});
