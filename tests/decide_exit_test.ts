import assert from "node:assert/strict";
import { DEFAULT_RULES } from "../core/rules.ts";
import { AT, context, position, run } from "./_decide_fixtures.ts";

Deno.test("decide() closes a CALL at the signal price on an EXIT, with its realized PnL", () => {
  const d = run({ action: "EXIT", price: 487.5 }, { book: { open: [position()] } });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "EXIT_APPROVED");
  assert.deepEqual(d.close, [{ positionId: "pos-a", exitPrice: 487.5, realizedPnl: -25 }]);
  assert.equal(d.open, null);
  assert.equal(d.size, null);
  assert.equal(d.message, "Close CALL SPY (10 at 490) at 487.5: realized PnL -$25.00");
});

Deno.test("decide() closes on an exit without confidence or score: those gate entries only", () => {
  // The README's alert template for an indicator's exit may leave metadata out.
  const rules = { minScore: 50, confidenceWhenMissing: null };
  const book = { open: [position()] };
  const d = run({ action: "EXIT", price: 487.5, metadata: {} }, { book, rules });
  assert.deepEqual([d.outcome, d.reason], ["EXIT", "EXIT_APPROVED"]);
  assert.equal(run({ metadata: {} }, { rules }).reason, "LOW_CONFIDENCE");
});

Deno.test("decide() flattens every position of the symbol on direction EXIT, and only that symbol", () => {
  const open = [
    position({ id: "c", direction: "CALL", quantity: 10, entryPrice: 490 }),
    position({ id: "p", direction: "PUT", quantity: 4, entryPrice: 510 }),
    position({ id: "q", symbol: "QQQ", quantity: 3, entryPrice: 400 }),
  ];
  const d = run({ direction: "EXIT", action: "EXIT" }, { book: { open } });
  assert.deepEqual(d.close, [
    { positionId: "c", exitPrice: 500, realizedPnl: 100 },
    { positionId: "p", exitPrice: 500, realizedPnl: 40 },
  ]);
});

Deno.test("decide() rejects an exit with nothing to close as NO_POSITION", () => {
  assert.equal(run({ direction: "EXIT", action: "EXIT" }).reason, "NO_POSITION");
  const d = run({ direction: "PUT", action: "EXIT" }, { book: { open: [position()] } });
  assert.equal(d.reason, "NO_POSITION");
  assert.equal(d.message, "No open PUT position in SPY to close");
});

const PUT_HELD = {
  open: [position({ id: "put", direction: "PUT", quantity: 90, entryPrice: 510 })],
};

Deno.test("decide() closes the opposite position and stays flat when flip is off", () => {
  const d = run({}, { book: PUT_HELD });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "CLOSED_BY_OPPOSITE");
  assert.deepEqual(d.close, [{ positionId: "put", exitPrice: 500, realizedPnl: 900 }]);
  assert.equal(d.open, null);
  assert.ok(d.notes.includes("Flip is off: the CALL entry is not opened"));
});

Deno.test("decide() flips with flip on, counting the close against maxExposure", () => {
  // 90 x 510 = $45,900 held; without the close, 16 more units at 500 would pass $50,000.
  const d = run({}, { book: PUT_HELD, rules: { flip: true } });
  assert.equal(d.outcome, "ENTER");
  assert.equal(d.reason, "FLIPPED");
  assert.deepEqual(d.close, [{ positionId: "put", exitPrice: 500, realizedPnl: 900 }]);
  assert.equal(d.open?.quantity, 16);
  assert.equal(
    d.message,
    "Close PUT SPY (90 at 510) at 500: realized PnL $900.00; " +
      "open CALL SPY: 16 units at 500 ($8,000.00 target, size x0.8)",
  );
});

Deno.test("decide() still closes the opposite position when the flipped entry fails its checks", () => {
  const d = run({ metadata: { confidence: 0.2 } }, { book: PUT_HELD, rules: { flip: true } });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "CLOSED_BY_OPPOSITE");
  assert.equal(d.close.length, 1);
  assert.equal(d.open, null);
  assert.ok(d.notes.includes("LOW_CONFIDENCE: Confidence 0.2 is below the minimum 0.6"));
  const window = run({ receivedAt: "2026-03-10T13:40:00Z", timestamp: "2026-03-10T13:35:00Z" }, {
    book: PUT_HELD,
    rules: { flip: true },
  });
  assert.equal(window.reason, "CLOSED_BY_OPPOSITE");
});

Deno.test("decide() rejects an opposite entry with no price, closing nothing", () => {
  const d = run({ price: null }, { context: null, book: PUT_HELD, rules: { flip: true } });
  assert.equal(d.reason, "NO_PRICE");
  assert.deepEqual(d.close, []);
});

Deno.test("decide() closes at the last known spot when nothing newer has a price, and opens nothing at it", () => {
  const stale = context({ spot: 505, asOf: "2026-03-10T13:00:00.000Z" });
  const exit = run({ action: "EXIT", price: null }, {
    context: null,
    book: { open: [position()] },
    lastKnown: stale,
  });
  assert.equal(exit.reason, "EXIT_APPROVED");
  assert.equal(exit.price, 505);
  assert.deepEqual(exit.close, [{ positionId: "pos-a", exitPrice: 505, realizedPnl: 150 }]);
  assert.ok(exit.notes.includes(
    "No current price: closing at the last known spot 505 as of 2026-03-10T13:00:00.000Z",
  ));
  // An opposite entry closes at it too; its own entry has no price.
  const flip = run({ price: null }, {
    context: null,
    book: PUT_HELD,
    rules: { flip: true },
    lastKnown: stale,
  });
  assert.equal(flip.reason, "CLOSED_BY_OPPOSITE");
  assert.equal(flip.open, null);
  assert.equal(flip.close[0].exitPrice, 505);
  assert.match(flip.message, /the CALL entry is refused \(NO_PRICE\)$/);
  // Never to open: an entry with nothing to close stays NO_PRICE.
  assert.equal(run({ price: null }, { context: null, lastKnown: stale }).reason, "NO_PRICE");
  // Another symbol's is no price for this one.
  const qqq = run({ action: "EXIT", price: null }, {
    context: null,
    book: { open: [position()] },
    lastKnown: { ...stale, symbol: "QQQ" },
  });
  assert.equal(qqq.reason, "NO_PRICE");
});

// 2026-03-10 is EDT: the 16:00 close is 20:00 UTC.
const AFTER_CLOSE = {
  receivedAt: "2026-03-10T20:00:00.800Z",
  timestamp: "2026-03-10T19:55:00.000Z",
};

Deno.test("decide() still closes on an exit received just after the close, within exitMinutesAfterClose", () => {
  const d = run({ action: "EXIT", price: 495, ...AFTER_CLOSE }, { book: { open: [position()] } });
  assert.equal(d.reason, "EXIT_APPROVED");
  assert.deepEqual(d.close, [{ positionId: "pos-a", exitPrice: 495, realizedPnl: 50 }]);
  assert.ok(d.notes.includes("After the 16:00 ET close: closing only, within 15 minutes of it"));

  const late = { receivedAt: "2026-03-10T20:15:00.000Z", timestamp: "2026-03-10T20:10:00.000Z" };
  const tooLate = run({ action: "EXIT", ...late }, { book: { open: [position()] } });
  assert.equal(tooLate.reason, "MARKET_CLOSED");
  const off = run({ action: "EXIT", ...AFTER_CLOSE }, {
    book: { open: [position()] },
    rules: { marketHours: { ...DEFAULT_RULES.marketHours, exitMinutesAfterClose: 0 } },
  });
  assert.equal(off.reason, "MARKET_CLOSED");
});

Deno.test("decide() after the close closes an opposite position but opens nothing, even with flip on", () => {
  const d = run({ ...AFTER_CLOSE }, { book: PUT_HELD, rules: { flip: true } });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "CLOSED_BY_OPPOSITE");
  assert.equal(d.open, null);
  assert.deepEqual(d.close.map((c) => c.positionId), ["put"]);
  assert.match(d.message, /the CALL entry is refused \(MARKET_CLOSED\)$/);
  // With nothing to close, an entry after the close is refused as before.
  assert.equal(run({ ...AFTER_CLOSE }).reason, "MARKET_CLOSED");
  // The grace follows a 13:00 early close (2026-11-27, EST: 18:00 UTC).
  const early = { receivedAt: "2026-11-27T18:05:00.000Z", timestamp: "2026-11-27T18:00:00.000Z" };
  assert.equal(
    run({ action: "EXIT", ...early }, { book: { open: [position()] } }).reason,
    "EXIT_APPROVED",
  );
});

// 5m bars: a signal over 600 s old is stale. This exit's bar opened at 14:40, received at 15:00.
const LATE = { action: "EXIT" as const, timestamp: "2026-03-10T14:40:00.000Z", price: 480 };

Deno.test("decide() still closes, at the context spot, what a stale exit's strategy entered on an earlier bar", () => {
  const older = position({ id: "older", entrySignalTime: "2026-03-10T14:20:00.000Z" });
  const d = run(LATE, { book: { open: [older] } });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "EXIT_APPROVED");
  // The signal's 480 is twenty minutes old; the position closes now, at the spot.
  assert.deepEqual(d.close, [{ positionId: "older", exitPrice: 500, realizedPnl: 100 }]);
  assert.equal(d.price, 500);
  assert.match(
    d.notes[0],
    /^STALE_SIGNAL: Signal is 1200 s old.*closing only positions whose entry alert is dated before it$/,
  );
  assert.ok(d.notes.includes(`Closing at the context spot 500 as of ${AT}`));
});

Deno.test("decide() leaves open what was entered on a stale exit's own bar or later, and refuses it when that is all", () => {
  const older = position({ id: "older", entrySignalTime: "2026-03-10T14:35:00.000Z" });
  const same = position({
    id: "same",
    symbol: "SPY",
    direction: "PUT",
    entrySignalTime: "2026-03-10T14:40:00.000Z",
  });
  const both = run({ ...LATE, direction: "EXIT" }, { book: { open: [older, same] } });
  assert.equal(both.reason, "EXIT_APPROVED");
  assert.deepEqual(both.close.map((c) => c.positionId), ["older"]);
  assert.ok(
    both.notes.includes("Left open: PUT SPY, its entry alert dated 2026-03-10T14:40:00.000Z"),
  );

  const newer = position({ id: "newer", entrySignalTime: "2026-03-10T14:50:00.000Z" });
  const d = run(LATE, { book: { open: [newer] } });
  assert.equal(d.outcome, "REJECT");
  assert.equal(d.reason, "STALE_SIGNAL");
  assert.deepEqual(d.close, []);
});

Deno.test("decide() closes at a stale exit's own price without a context newer than it, and never for a signal from the future", () => {
  const older = position({ entrySignalTime: "2026-03-10T14:20:00.000Z" });
  const d = run(LATE, { context: null, book: { open: [older] } });
  assert.equal(d.reason, "EXIT_APPROVED");
  assert.deepEqual(d.close, [{ positionId: "pos-a", exitPrice: 480, realizedPnl: -100 }]);
  // A context from before the exit's own time (it may be up to its maximum age) is no newer price.
  const oldSpot = run(LATE, {
    context: context({ asOf: "2026-03-10T14:36:00.000Z" }),
    book: { open: [older] },
  });
  assert.deepEqual(oldSpot.close, [{ positionId: "pos-a", exitPrice: 480, realizedPnl: -100 }]);
  const future = run({ ...LATE, timestamp: "2026-03-10T15:05:00.000Z" }, {
    book: { open: [older] },
  });
  assert.equal(future.reason, "FUTURE_SIGNAL");
  assert.deepEqual(future.close, []);
});

Deno.test("decide() lets a stale opposite entry close the older position but never open, even with flip on", () => {
  const put = position({
    id: "put",
    direction: "PUT",
    quantity: 90,
    entryPrice: 510,
    entrySignalTime: "2026-03-10T14:20:00.000Z",
  });
  const d = run({ timestamp: "2026-03-10T14:40:00.000Z" }, {
    book: { open: [put] },
    rules: { flip: true },
  });
  assert.equal(d.outcome, "EXIT");
  assert.equal(d.reason, "CLOSED_BY_OPPOSITE");
  assert.deepEqual(d.close, [{ positionId: "put", exitPrice: 500, realizedPnl: 900 }]);
  assert.equal(d.open, null);
  assert.match(d.message, /; the CALL entry is refused \(STALE_SIGNAL\)$/);
});
