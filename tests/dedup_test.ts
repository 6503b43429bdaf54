/**
 * dedupKey(): the same alert always gets the same key (whatever its field
 * order, whitespace or alias spelling), a different alert a different one,
 * and an explicit id or delivery id decides on its own.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { dedupKey } from "../core/dedup.ts";
import { normalizeSignal, type Signal } from "../core/signal.ts";

const ALERT = {
  symbol: "SPY",
  direction: "CALL",
  action: "ENTRY",
  timeframe: "5m",
  timestamp: "2024-01-29T12:00:00Z",
  price: 487.12,
};

function signal(input: Record<string, unknown>): Signal {
  const result = normalizeSignal(input);
  assert.ok(result.ok, JSON.stringify(result));
  return result.signal;
}

function keyOf(input: Record<string, unknown>, deliveryId?: string | null): string {
  return dedupKey(signal(input), { deliveryId });
}

Deno.test("dedupKey() gives the same alert sent twice the same key", () => {
  assert.equal(keyOf(ALERT), keyOf({ ...ALERT }));
  assert.equal(keyOf(ALERT), keyOf(JSON.parse(JSON.stringify(ALERT))));
  assert.match(keyOf(ALERT), /^sig:[0-9a-f]{64}$/);
});

Deno.test("dedupKey() tells apart alerts that differ in what makes the alert", () => {
  const base = keyOf(ALERT);
  const changes: Record<string, unknown>[] = [
    { symbol: "QQQ" },
    { direction: "PUT" },
    { action: "EXIT" },
    { timeframe: "15m" },
    { timestamp: "2024-01-29T12:00:01Z" },
    { timestamp: "2024-01-29T12:00:00.001Z" },
    { source: "relay" },
    { source: "tradingview" },
  ];
  const keys = new Set([base]);
  for (const change of changes) {
    const key = keyOf({ ...ALERT, ...change });
    assert.notEqual(key, base, JSON.stringify(change));
    keys.add(key);
  }
  assert.equal(keys.size, changes.length + 1, "every change gives its own key");
});

Deno.test("dedupKey() ignores what a re-send may change: price, metadata, exchange prefix", () => {
  const base = keyOf(ALERT);
  assert.equal(keyOf({ ...ALERT, price: 480 }), base);
  assert.equal(keyOf({ ...ALERT, metadata: { score: 10 } }), base);
  assert.equal(keyOf({ ...ALERT, symbol: "AMEX:SPY" }), base);
});

Deno.test("dedupKey() keys an alert id beside the time, a delivery id by the id alone", () => {
  const byId = keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00" });
  assert.match(byId, /^aid:[0-9a-f]{64}$/);
  assert.equal(keyOf({ ...ALERT, alertId: " SPY-2024-01-29T12:00 " }), byId);
  assert.equal(keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00", timestamp: 1706529600000 }), byId);
  // {{strategy.order.id}} is "Long" on every entry: a re-entry after an exit is a new alert.
  assert.notEqual(
    keyOf({ ...ALERT, id: "Long", timestamp: "2024-01-29T12:10:00Z" }),
    keyOf({
      ...ALERT,
      id: "Long",
    }),
  );
  assert.notEqual(keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00", timestamp: 1706529700 }), byId);
  // A reused id ({{strategy.order.id}} is "Long" on every ticker): other alerts stay apart.
  const long = keyOf({ ...ALERT, id: "Long" });
  for (
    const other of [
      { symbol: "QQQ" },
      { direction: "PUT" },
      { action: "EXIT" },
      { timeframe: "1h" },
    ]
  ) {
    assert.notEqual(keyOf({ ...ALERT, id: "Long", ...other }), long, JSON.stringify(other));
  }
  // Different id, same alert: different keys.
  assert.notEqual(keyOf({ ...ALERT, id: "SPY-2024-01-29T12:01" }), byId);
  // The id is scoped to its source.
  assert.notEqual(keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00", source: "relay" }), byId);

  // The Standard Webhooks webhook-id, when the body has no id.
  const byDelivery = keyOf(ALERT, "msg_2Lh9");
  assert.match(byDelivery, /^id:[0-9a-f]{64}$/);
  assert.equal(keyOf({ ...ALERT, price: 1 }, "msg_2Lh9"), byDelivery);
  assert.notEqual(keyOf(ALERT, "msg_other"), byDelivery);
  assert.equal(keyOf(ALERT, null), keyOf(ALERT));
  // An empty delivery id is no id: it must not merge every alert into one key.
  for (const empty of ["", " ", "\t"]) {
    assert.equal(keyOf(ALERT, empty), keyOf(ALERT), JSON.stringify(empty));
    assert.notEqual(keyOf({ ...ALERT, symbol: "QQQ" }, empty), keyOf(ALERT, empty));
  }
  // The delivery id wins over an id in the body: a relay may re-stamp the body's time.
  assert.equal(keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00" }, "msg_2Lh9"), byDelivery);
  assert.equal(
    keyOf({ ...ALERT, id: "SPY-2024-01-29T12:00", timestamp: 1706529700 }, "msg_2Lh9"),
    byDelivery,
  );

  // An idempotency key: the same key is the same request, whatever else its retry carries.
  const idem = (input: Record<string, unknown>, key: string | null) =>
    dedupKey(signal(input), { idempotencyKey: key });
  const byKey = idem(ALERT, "order-7");
  assert.match(byKey, /^idem:[0-9a-f]{64}$/);
  assert.equal(idem({ ...ALERT, timestamp: 1706529700, price: 480 }, " order-7 "), byKey);
  assert.notEqual(idem(ALERT, "order-8"), byKey);
  assert.notEqual(idem({ ...ALERT, source: "relay" }, "order-7"), byKey);
  assert.equal(idem(ALERT, " "), keyOf(ALERT));
  assert.equal(
    dedupKey(signal(ALERT), { deliveryId: "msg_2Lh9", idempotencyKey: "x" }),
    byDelivery,
  );
  // `aid:`, `id:`, `idem:` and `sig:` keys never collide: each kind has its prefix.
  assert.equal(
    new Set([keyOf(ALERT), byId, byDelivery, byKey].map((k) => k.split(":")[0])).size,
    4,
  );
});

// Property ---------------------------------------------------------------------

/** Spellings of one canonical value, any of which TradingView templates produce. */
const DIRECTION_SPELLINGS: Record<string, string[]> = {
  CALL: ["CALL", "call", "buy", "BUY", "Long", "LONG", "bullish", "calls"],
  PUT: ["PUT", "put", "sell", "SELL", "short", "Bearish", "puts"],
  EXIT: ["EXIT", "exit", "flat", "FLAT", "close"],
};
const TIMEFRAME_SPELLINGS: Record<string, unknown[]> = {
  "1m": ["1", "1m", 1, "1min"],
  "5m": ["5", "5m", 5, " 5 "],
  "1h": ["60", "1h", 60, "60m", "1H"],
  "4h": ["240", "4h", 240],
  "1D": ["D", "1D", "1d", "1day"],
  "1W": ["W", "1W", "1w"],
};

interface Canonical {
  symbol: string;
  exchange: string | null;
  direction: string;
  timeframe: string;
  ms: number;
}

const canonical: fc.Arbitrary<Canonical> = fc.record({
  symbol: fc.constantFrom("SPY", "AAPL", "QQQ", "ES1!", "BRK.B"),
  exchange: fc.constantFrom(null, "NASDAQ", "BATS"),
  direction: fc.constantFrom("CALL", "PUT", "EXIT"),
  timeframe: fc.constantFrom(...Object.keys(TIMEFRAME_SPELLINGS)),
  // Whole seconds, so every time spelling (including epoch seconds) is exact.
  ms: fc.integer({ min: Date.UTC(2000, 0, 1) / 1000, max: Date.UTC(2099, 0, 1) / 1000 })
    .map((s) => s * 1000),
});

function timeSpellings(ms: number): unknown[] {
  const iso = new Date(ms).toISOString();
  const offset = new Date(ms - 5 * 3600_000).toISOString().replace(/\.000Z$/, "-05:00");
  return [iso, iso.replace(".000Z", "Z"), offset, ms, String(ms), ms / 1000, String(ms / 1000)];
}

/** One spelling of the alert: aliases, key names, padding and extra fields chosen at random. */
function spelling(c: Canonical): fc.Arbitrary<Record<string, unknown>> {
  const pad = fc.constantFrom("", " ", "  ", "\t");
  const padded = (s: string) => fc.tuple(pad, pad).map(([a, b]) => `${a}${s}${b}`);
  const symbol = c.exchange === null
    ? fc.oneof(padded(c.symbol), padded(c.symbol.toLowerCase()))
    : fc.constantFrom(`${c.exchange}:${c.symbol}`, `${c.exchange.toLowerCase()}:${c.symbol}`);
  return fc.record({
    symbolKey: fc.constantFrom("symbol", "ticker"),
    symbol,
    direction: fc.oneof(
      fc.constantFrom(...DIRECTION_SPELLINGS[c.direction]).map((word) => ({ direction: word })),
      fc.constantFrom(...DIRECTION_SPELLINGS[c.direction]).map((word) => ({ side: word })),
      // A strategy alert: the order action plus the position it leaves.
      fc.constant(
        c.direction === "CALL"
          ? { action: "buy", market_position: "long" }
          : c.direction === "PUT"
          ? { action: "sell", market_position: "short" }
          : { action: "sell", market_position: "flat" },
      ),
    ),
    timeframeKey: fc.constantFrom("timeframe", "interval", "tf"),
    timeframe: fc.constantFrom(...TIMEFRAME_SPELLINGS[c.timeframe]),
    timeKey: fc.constantFrom("timestamp", "time", "timenow"),
    time: fc.constantFrom(...timeSpellings(c.ms)),
    source: fc.constantFrom(undefined, "TradingView", " TradingView "),
    price: fc.option(fc.double({ min: 1, max: 1000, noNaN: true }), { nil: undefined }),
  }).map((s) => {
    const body: Record<string, unknown> = {
      [s.symbolKey]: s.symbol,
      ...s.direction,
      [s.timeframeKey]: s.timeframe,
      [s.timeKey]: s.time,
    };
    if (s.source !== undefined) body.source = s.source;
    if (s.price !== undefined) body.price = s.price;
    return body;
  });
}

const JSON_SPACE = fc.constantFrom("", " ", "\n", "\t", "\r\n  ", "   ");

/** JSON text of `value` with keys in `order` and random whitespace between every token. */
function serialize(value: unknown, order: number[], space: string[]): string {
  let n = 0;
  const ws = () => space[n++ % space.length];
  const write = (v: unknown): string => {
    if (Array.isArray(v)) return `[${ws()}${v.map(write).join(`${ws()},${ws()}`)}${ws()}]`;
    if (typeof v === "object" && v !== null) {
      const entries = Object.entries(v);
      const sorted = entries.map((e, i) => [order[i % order.length] ?? i, e] as const)
        .sort((a, b) => a[0] - b[0]).map(([, e]) => e);
      return `{${ws()}${
        sorted.map(([k, x]) => `${JSON.stringify(k)}${ws()}:${ws()}${write(x)}`).join(
          `${ws()},${ws()}`,
        )
      }${ws()}}`;
    }
    return JSON.stringify(v);
  };
  return `${ws()}${write(value)}${ws()}`;
}

const delivery = fc.record({
  order: fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 1, maxLength: 10 }),
  space: fc.array(JSON_SPACE, { minLength: 1, maxLength: 8 }),
});

Deno.test("dedupKey() is stable under field order, JSON whitespace and alias spelling", () => {
  const pairs = canonical.chain((c) =>
    fc.tuple(fc.constant(c), spelling(c), spelling(c), delivery, delivery)
  );
  fc.assert(
    fc.property(pairs, ([c, a, b, da, db]) => {
      const textA = serialize(a, da.order, da.space);
      const textB = serialize(b, db.order, db.space);
      const sa = normalizeSignal(JSON.parse(textA));
      const sb = normalizeSignal(JSON.parse(textB));
      assert.ok(sa.ok && sb.ok, `${textA}\n${textB}`);
      assert.equal(sa.signal.symbol, c.symbol);
      assert.equal(sa.signal.direction, c.direction);
      assert.equal(dedupKey(sa.signal), dedupKey(sb.signal), `${textA}\n${textB}`);
    }),
    { numRuns: 300 },
  );
});

Deno.test("dedupKey() differs for alerts whose canonical forms differ", () => {
  const two = fc.tuple(canonical, canonical).filter(([a, b]) =>
    a.symbol !== b.symbol || a.direction !== b.direction || a.timeframe !== b.timeframe ||
    a.ms !== b.ms
  ).chain(([a, b]) => fc.tuple(spelling(a), spelling(b)));
  fc.assert(
    fc.property(two, ([a, b]) => {
      assert.notEqual(keyOf(a), keyOf(b), `${JSON.stringify(a)}\n${JSON.stringify(b)}`);
    }),
    { numRuns: 200 },
  );
});
