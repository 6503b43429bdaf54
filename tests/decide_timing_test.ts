import assert from "node:assert/strict";
import fc from "fast-check";
import { checkFreshness, freshUntilMs } from "../core/freshness.ts";
import { context, position, rules, run } from "./_decide_fixtures.ts";

const HOURS = rules().marketHours;

Deno.test("decide() rejects a signal received outside market hours, whatever it claims", () => {
  const evening = run({
    receivedAt: "2026-03-10T21:30:00.000Z",
    timestamp: "2026-03-10T21:29:00Z",
  });
  assert.equal(evening.reason, "MARKET_CLOSED");
  assert.equal(evening.message, "Market is closed at 17:30 ET on 2026-03-10 (session POST)");
  const goodFriday = run({
    receivedAt: "2026-04-03T15:00:00.000Z",
    timestamp: "2026-04-03T14:55:00Z",
  });
  assert.equal(goodFriday.reason, "MARKET_CLOSED");
  assert.equal(goodFriday.message, "Market is closed at 11:00 ET on 2026-04-03 (Good Friday)");
  const exit = run({ receivedAt: "2026-03-10T21:30:00.000Z", action: "EXIT" }, {
    book: { open: [position()] },
  });
  assert.equal(exit.reason, "MARKET_CLOSED");
});

Deno.test("decide() reports MARKET_CLOSED before a low confidence", () => {
  const d = run({ receivedAt: "2026-03-14T15:00:00.000Z", metadata: { confidence: 0.1 } });
  assert.equal(d.reason, "MARKET_CLOSED");
  assert.equal(d.message, "Market is closed at 11:00 ET on 2026-03-14 (not a trading day)");
});

Deno.test("decide() allows after-hours entries with extendedHours and ignores hours when not enforced", () => {
  const at = "2026-03-10T21:30:00.000Z";
  const ts = "2026-03-10T21:29:00.000Z";
  const extended = run({ receivedAt: at, timestamp: ts }, {
    rules: { marketHours: { ...HOURS, extendedHours: true } },
  });
  assert.equal(extended.reason, "ENTRY_APPROVED");
  const night = run({ receivedAt: "2026-03-11T02:00:00.000Z", timestamp: "2026-03-11T01:59:00Z" }, {
    rules: { marketHours: { ...HOURS, enforce: false } },
  });
  assert.equal(night.reason, "ENTRY_APPROVED");
});

Deno.test("decide() refuses entries in the 15 minutes after the open, exits are allowed", () => {
  const open = { receivedAt: "2026-03-10T13:40:00.000Z", timestamp: "2026-03-10T13:35:00.000Z" };
  const d = run(open);
  assert.equal(d.reason, "OPENING_WINDOW");
  assert.match(d.message, /15 minutes after the 09:30 ET open; received at 09:40 ET/);
  const at945 = run({ receivedAt: "2026-03-10T13:45:00.000Z", timestamp: "2026-03-10T13:40:00Z" });
  assert.equal(at945.reason, "ENTRY_APPROVED");
  const exit = run({ ...open, action: "EXIT" }, { book: { open: [position()] } });
  assert.equal(exit.reason, "EXIT_APPROVED");
});

Deno.test("decide() refuses entries in the 10 minutes before the close, 13:00 on early-close days", () => {
  const late = run({ receivedAt: "2026-03-10T19:50:00.000Z", timestamp: "2026-03-10T19:45:00Z" });
  assert.equal(late.reason, "CLOSING_WINDOW");
  const before = run({ receivedAt: "2026-03-10T19:49:59.000Z", timestamp: "2026-03-10T19:45:00Z" });
  assert.equal(before.reason, "ENTRY_APPROVED");
  // Friday after Thanksgiving 2026: New York is UTC-5, the close is 13:00 = 18:00Z.
  const early = run({ receivedAt: "2026-11-27T17:55:00.000Z", timestamp: "2026-11-27T17:50:00Z" });
  assert.equal(early.reason, "CLOSING_WINDOW");
  assert.match(early.message, /before the 13:00 ET close/);
});

Deno.test("decide() allows one bar of the timeframe on top of maxSignalAgeSeconds", () => {
  // 5m bar: 300 + 300 = 600 s.
  assert.equal(run({ timestamp: "2026-03-10T14:50:00.000Z" }).reason, "ENTRY_APPROVED");
  const stale = run({ timestamp: "2026-03-10T14:49:59.000Z" });
  assert.equal(stale.reason, "STALE_SIGNAL");
  assert.match(stale.message, /601 s old.*the limit is 600 s/);
  // 1h bar: 300 + 3600 = 3900 s.
  assert.equal(
    run({ timeframe: "1h", timestamp: "2026-03-10T13:55:00Z" }).reason,
    "ENTRY_APPROVED",
  );
  assert.equal(run({ timeframe: "1h", timestamp: "2026-03-10T13:54:59Z" }).reason, "STALE_SIGNAL");
  // A tick chart's bar has no fixed length: no allowance beyond the 300 s.
  assert.equal(
    run({ timeframe: "100T", timestamp: "2026-03-10T14:55:00Z" }).reason,
    "ENTRY_APPROVED",
  );
  assert.equal(
    run({ timeframe: "100T", timestamp: "2026-03-10T14:54:59Z" }).reason,
    "STALE_SIGNAL",
  );
  // A stale exit is refused when nothing it could close was entered on an earlier bar.
  const exit = run({ action: "EXIT", timestamp: "2026-03-10T14:00:00Z" }, {
    book: { open: [position({ entrySignalTime: "2026-03-10T14:00:00.000Z" })] },
  });
  assert.equal(exit.reason, "STALE_SIGNAL");
});

Deno.test("decide() refuses an entry that turned stale while it waited to be decided", () => {
  // Received at 15:00:00, fresh (a 5m bar at 14:55: 600 s allowed, until 15:05:00).
  assert.equal(run({}, { decidedAt: "2026-03-10T15:05:00.000Z" }).reason, "ENTRY_APPROVED");
  const late = run({}, { decidedAt: "2026-03-10T15:05:00.001Z" });
  assert.equal(late.reason, "STALE_SIGNAL");
  assert.equal(late.open, null);
  assert.equal(
    late.message,
    "Signal is 600.001 s old when decided, 300.001 s after it was received (timestamp " +
      "2026-03-10T14:55:00.000Z, received 2026-03-10T15:00:00.000Z, decided " +
      "2026-03-10T15:05:00.001Z); the limit is 600 s (300 s plus one 5m bar of 300 s)",
  );
  // An hour-long outage: the opposite side's position, entered on an earlier bar, is still
  // closed (at the context's spot when it is newer than the signal), and nothing is opened.
  const flip = run({ direction: "PUT" }, {
    book: { open: [position()] },
    context: context({ spot: 505, asOf: "2026-03-10T15:59:30.000Z" }),
    decidedAt: "2026-03-10T16:00:00.000Z",
  });
  assert.equal(flip.reason, "CLOSED_BY_OPPOSITE");
  assert.deepEqual(flip.close.map((c) => [c.positionId, c.exitPrice]), [["pos-a", 505]]);
  assert.equal(flip.open, null);
  // A clock that reads earlier than the receipt changes nothing.
  assert.equal(run({}, { decidedAt: "2026-03-10T14:00:00.000Z" }).reason, "ENTRY_APPROVED");
});

Deno.test("property: a signal is fresh when decided exactly when it is fresh at receipt and then", () => {
  const r = rules();
  fc.assert(
    fc.property(
      fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
      fc.constantFrom("30s", "1m", "5m", "1h", "1D", "100T"),
      fc.integer({ min: -120_000, max: 7_200_000 }),
      fc.integer({ min: -60_000, max: 7_200_000 }),
      (claimed, timeframe, ageMs, waitMs) => {
        const received = claimed + ageMs;
        const decided = received + waitMs;
        const atReceipt = checkFreshness(claimed, received, timeframe, r);
        const whenDecided = checkFreshness(claimed, received, timeframe, r, decided);
        const until = freshUntilMs(claimed, timeframe, r);
        assert.equal(
          whenDecided.fresh,
          atReceipt.fresh && Math.max(received, decided) <= until,
        );
        // What was wrong at receipt is said as it was.
        if (!atReceipt.fresh) assert.deepEqual(whenDecided, atReceipt);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("decide() rejects a signal dated more than 60 s after it was received", () => {
  assert.equal(run({ timestamp: "2026-03-10T15:01:00.000Z" }).reason, "ENTRY_APPROVED");
  const d = run({ timestamp: "2026-03-10T15:01:01.000Z" });
  assert.equal(d.reason, "FUTURE_SIGNAL");
  assert.match(d.message, /61 s after it was received/);
});

Deno.test("decide() rejects a receivedAt or timestamp that is not ISO 8601 with a zone as INVALID_SIGNAL", () => {
  const d = run({ receivedAt: "yesterday" });
  assert.equal(d.outcome, "REJECT");
  assert.equal(d.reason, "INVALID_SIGNAL");
  assert.equal(d.message, 'Signal receivedAt "yesterday" is not an ISO 8601 time');
  // Without a zone, Date.parse would read it in the host's time zone.
  assert.equal(run({ timestamp: "2026-03-10T14:55:00" }).reason, "INVALID_SIGNAL");
});

Deno.test("property: freshUntilMs() is the last receipt time checkFreshness() calls fresh", () => {
  const r = rules();
  fc.assert(
    fc.property(
      fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
      fc.constantFrom("30s", "1m", "5m", "15m", "1h", "4h", "1D", "1W", "1M"),
      fc.integer({ min: -60_000, max: 40 * 86_400_000 }),
      fc.integer({ min: 1, max: 3600 }),
      (claimed, timeframe, ageMs, maxAge) => {
        const limits = { ...r, maxSignalAgeSeconds: maxAge };
        const until = freshUntilMs(claimed, timeframe, limits);
        const fresh = checkFreshness(claimed, claimed + ageMs, timeframe, limits).fresh;
        assert.equal(fresh, claimed + ageMs <= until);
      },
    ),
    { numRuns: 500 },
  );
  assert.equal(freshUntilMs(0, "5m", { maxSignalAgeSeconds: 300 }), 600_000);
});
