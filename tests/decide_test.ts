import assert from "node:assert/strict";
import { AT, context, gex, position, run } from "./_decide_fixtures.ts";

Deno.test("decide() approves an entry sized by confidence: 0.8 x $10,000 buys 16 units at 500", () => {
  const d = run();
  assert.equal(d.outcome, "ENTER");
  assert.equal(d.reason, "ENTRY_APPROVED");
  assert.equal(d.price, 500);
  assert.deepEqual(d.size, { quantity: 16, notional: 8000, multiplier: 0.8 });
  assert.deepEqual(d.open, {
    symbol: "SPY",
    direction: "CALL",
    quantity: 16,
    entryPrice: 500,
    notional: 8000,
  });
  assert.deepEqual(d.close, []);
  assert.equal(d.degraded, false);
  assert.match(d.message, /Open CALL SPY: 16 units at 500/);
});

Deno.test("decide() multiplies confidence, the VIX caution band and a negative gamma regime", () => {
  const d = run({}, { context: context({ vix: 24.1 }), gex: gex({ regime: "NEGATIVE" }) });
  assert.equal(d.reason, "ENTRY_APPROVED");
  assert.deepEqual(d.size, { quantity: 4, notional: 2000, multiplier: 0.2 });
  assert.ok(d.notes.includes("VIX 24.1 in caution band (20 to 30): size x0.5"));
  assert.ok(d.notes.includes("Negative gamma regime: size x0.5"));
});

Deno.test("decide() halves the size and says degraded when GEX is missing under REDUCE", () => {
  const d = run({}, { gex: null });
  assert.equal(d.reason, "ENTRY_APPROVED");
  assert.equal(d.degraded, true);
  assert.deepEqual(d.size, { quantity: 8, notional: 4000, multiplier: 0.4 });
  assert.ok(d.notes.some((n) => n.startsWith("Degraded (no GEX levels for SPY)")));
});

Deno.test("decide() sizes a context without VIX as degraded, never larger than no context at all", () => {
  for (const vix of [null, NaN, -1]) {
    const d = run({}, { context: context({ vix }) });
    assert.equal(d.reason, "ENTRY_APPROVED");
    assert.equal(d.degraded, true);
    assert.deepEqual(d.size, { quantity: 8, notional: 4000, multiplier: 0.4 });
    assert.ok(d.notes.some((n) => n.startsWith("Degraded (no VIX in the market context for SPY)")));
  }
  assert.equal(run({}, { context: null }).size?.quantity, 8);
  const reject = { degraded: { policy: "REJECT" as const, multiplier: 0.5 } };
  const refused = run({}, { context: context({ vix: null }), rules: reject });
  assert.equal(refused.reason, "NO_CONTEXT");
  assert.equal(refused.message, "Market context for SPY has no VIX; degraded policy is REJECT");
});

Deno.test("decide() refuses an entry whose price is far from the context spot as PRICE_MISMATCH", () => {
  // SPY's spot is 500: a plot value of 0.5 in price would buy 16,000 units booked as $8,000.
  const d = run({ price: 0.5 });
  assert.equal(d.reason, "PRICE_MISMATCH");
  assert.equal(
    d.message,
    `Signal price 0.5 is 99.9% from the context spot 500 as of ${AT} (at most 10%)`,
  );
  assert.equal(d.open, null);
  assert.equal(run({ price: 550 }).reason, "ENTRY_APPROVED");
  assert.equal(run({ price: 550.5 }).reason, "PRICE_MISMATCH");
  assert.equal(run({ price: 450 }).reason, "ENTRY_APPROVED");
  // Off, or without a context to compare with, the signal's price is taken as it is.
  assert.equal(run({ price: 0.5 }, { rules: { maxPriceDeviationPct: 0 } }).open?.quantity, 16_000);
  assert.equal(run({ price: 0.5 }, { context: null }).reason, "ENTRY_APPROVED");
});

Deno.test("decide() closes at the context spot when the exit's price is far from it", () => {
  const d = run({ action: "EXIT", price: 5 }, { book: { open: [position()] } });
  assert.equal(d.reason, "EXIT_APPROVED");
  assert.equal(d.price, 500);
  assert.deepEqual(d.close, [{ positionId: "pos-a", exitPrice: 500, realizedPnl: 100 }]);
  assert.ok(d.notes.some((n) => n.startsWith("Signal price 5 is 99% from the context spot 500")));
  // An opposite entry still closes, at the spot, and its own entry is refused.
  const put = run({ direction: "PUT", price: 5 }, {
    book: { open: [position()] },
    rules: { flip: true },
  });
  assert.equal(put.reason, "CLOSED_BY_OPPOSITE");
  assert.equal(put.close[0].exitPrice, 500);
  assert.match(put.message, /the PUT entry is refused \(PRICE_MISMATCH\)$/);
});

Deno.test("decide() treats context for another symbol as missing and trades at the signal price", () => {
  const d = run({}, { context: context({ symbol: "QQQ", vix: 50 }) });
  assert.equal(d.reason, "ENTRY_APPROVED");
  assert.equal(d.degraded, true);
  assert.equal(d.size?.quantity, 8);
});

Deno.test("decide() trades at the context spot when the signal price is missing or NaN", () => {
  for (const price of [null, NaN]) {
    const d = run({ price }, { context: context({ spot: 400 }) });
    assert.equal(d.reason, "ENTRY_APPROVED");
    assert.equal(d.price, 400);
    assert.equal(d.open?.quantity, 20);
  }
});

Deno.test("decide() rejects an entry with no price from the signal or the context as NO_PRICE", () => {
  const d = run({ price: NaN }, { context: null });
  assert.equal(d.outcome, "REJECT");
  assert.equal(d.reason, "NO_PRICE");
  assert.equal(d.price, null);
});

Deno.test("decide() rejects a confidence below the minimum, or none, as LOW_CONFIDENCE", () => {
  const low = run({ metadata: { confidence: 0.59 } });
  assert.equal(low.reason, "LOW_CONFIDENCE");
  assert.equal(low.message, "Confidence 0.59 is below the minimum 0.6");
  assert.equal(run({ metadata: {} }).reason, "LOW_CONFIDENCE");
  assert.equal(run({ metadata: { confidence: 0.6 } }).reason, "ENTRY_APPROVED");
  const assumed = run({ metadata: {} }, { rules: { confidenceWhenMissing: 0.7 } });
  assert.deepEqual(assumed.size, { quantity: 14, notional: 7000, multiplier: 0.7 });
});

Deno.test("decide() rejects a score below minScore as LOW_SCORE", () => {
  const d = run({ metadata: { confidence: 0.8, score: 55 } }, { rules: { minScore: 70 } });
  assert.equal(d.reason, "LOW_SCORE");
  assert.equal(d.message, "Score 55 is below the minimum 70");
  assert.equal(run({}, { rules: { minScore: 70 } }).reason, "ENTRY_APPROVED");
});

Deno.test("decide() rejects above VIX 30 and sizes down at exactly 30", () => {
  const d = run({}, { context: context({ vix: 30.5 }) });
  assert.equal(d.reason, "HIGH_VOLATILITY");
  assert.equal(d.message, "VIX 30.5 is above the no-trade level 30");
  const at30 = run({}, { context: context({ vix: 30 }) });
  assert.equal(at30.reason, "ENTRY_APPROVED");
  assert.equal(at30.size?.multiplier, 0.4);
});

Deno.test("decide() rejects a CALL within 0.5% below the call wall and a PUT just above the put wall", () => {
  const call = run({}, { gex: gex({ callWall: 502 }) }); // 0.398% below
  assert.equal(call.reason, "GEX_CONFLICT");
  assert.match(call.message, /Price 500 is 0.3984% below the call wall 502/);
  assert.equal(run({}, { gex: gex({ callWall: 503 }) }).reason, "ENTRY_APPROVED"); // 0.596%
  assert.equal(run({}, { gex: gex({ callWall: 499 }) }).reason, "ENTRY_APPROVED"); // through it
  const put = run({ direction: "PUT" }, { gex: gex({ putWall: 498 }) }); // 0.402% above
  assert.equal(put.reason, "GEX_CONFLICT");
  assert.equal(run({ direction: "PUT" }, { gex: gex({ putWall: 497 }) }).reason, "ENTRY_APPROVED");
});

Deno.test("decide() rejects missing data under the REJECT policy as NO_CONTEXT or NO_GEX", () => {
  const reject = { degraded: { policy: "REJECT" as const, multiplier: 0.5 } };
  const noContext = run({}, { context: null, gex: null, rules: reject });
  assert.equal(noContext.reason, "NO_CONTEXT");
  assert.equal(noContext.degraded, false);
  assert.equal(run({}, { gex: null, rules: reject }).reason, "NO_GEX");
  const exit = run({ action: "EXIT" }, { gex: null, book: { open: [position()] }, rules: reject });
  assert.equal(exit.reason, "EXIT_APPROVED");
});

Deno.test("decide() rejects a second entry on the same symbol and side as ALREADY_OPEN", () => {
  const d = run({}, { book: { open: [position()] } });
  assert.equal(d.reason, "ALREADY_OPEN");
  assert.equal(d.message, "A CALL position in SPY is already open");
});

Deno.test("decide() rejects an entry beyond maxOpenPositions", () => {
  const open = ["A", "B", "C", "D", "E"].map((s, i) =>
    position({ id: `p${i}`, symbol: s, quantity: 1, entryPrice: 10 })
  );
  const d = run({}, { book: { open } });
  assert.equal(d.reason, "MAX_POSITIONS");
  assert.equal(d.message, "5 positions are open; the maximum is 5");
});

Deno.test("decide() rejects an entry that would take exposure past maxExposure, allows exactly it", () => {
  const held = (dollars: number) => ({
    open: [position({ symbol: "QQQ", quantity: dollars / 100, entryPrice: 100 })],
  });
  const over = run({}, { book: held(42_100) });
  assert.equal(over.reason, "MAX_EXPOSURE");
  assert.equal(
    over.message,
    "Exposure would be $50,100.00 with 16 units at 500; the maximum is $50,000.00",
  );
  assert.equal(run({}, { book: held(42_000) }).reason, "ENTRY_APPROVED");
});

Deno.test("decide() allows an entry that takes exposure to exactly maxExposure in cents, whatever the binary noise", () => {
  // 10 x 100.38 + 42 x 976.10 is $42,000.00; summed in binary, plus the entry's 16 x 500,
  // it came to 50000.00000000001 and was refused as over $50,000.00.
  const book = {
    open: [
      position({ id: "pos-q", symbol: "QQQ", quantity: 10, entryPrice: 100.38 }),
      position({ id: "pos-i", symbol: "IWM", quantity: 42, entryPrice: 976.1 }),
    ],
  };
  const d = run({}, { book });
  assert.equal(d.reason, "ENTRY_APPROVED", d.message);
  assert.equal(run({}, { book, rules: { maxExposure: 49_999.99 } }).reason, "MAX_EXPOSURE");
});

Deno.test("decide() rejects a size that buys less than one unit as SIZE_TOO_SMALL", () => {
  const dear = { context: context({ spot: 8000 }) };
  const d = run({ price: 8000.01 }, dear);
  assert.equal(d.reason, "SIZE_TOO_SMALL");
  assert.equal(d.message, "Size $8,000.00 buys less than one unit at price 8000.01");
  assert.equal(run({ price: 8000 }, dear).open?.quantity, 1);
});

Deno.test("decide() gives the most fundamental reason when several checks fail", () => {
  const weak = { metadata: { confidence: 0.1 } };
  const inWindow = { receivedAt: "2026-03-10T13:40:00Z", timestamp: "2026-03-10T13:35:00Z" };
  const staleInWindow = { ...inWindow, timestamp: "2026-03-10T13:00:00Z" };
  assert.equal(run({ ...weak, ...staleInWindow }).reason, "STALE_SIGNAL");
  assert.equal(run({ ...weak, ...inWindow }).reason, "OPENING_WINDOW");
  const panic = context({ vix: 40 });
  assert.equal(run(weak, { context: panic }).reason, "LOW_CONFIDENCE");
  const held = { open: [position()] };
  assert.equal(run({}, { context: panic, book: held }).reason, "HIGH_VOLATILITY");
  assert.equal(run({}, { book: held, rules: { maxOpenPositions: 1 } }).reason, "ALREADY_OPEN");
  const tiny = { context: context({ spot: 9000 }), rules: { maxExposure: 100 } };
  assert.equal(run({ price: 9000 }, tiny).reason, "SIZE_TOO_SMALL");
  assert.equal(run({ price: 50 }, { context: context({ vix: 40 }) }).reason, "PRICE_MISMATCH");
});
