import assert from "node:assert/strict";
import fc from "fast-check";
import { applyDecision, type Book, type ClosedPosition, exposure } from "../core/book.ts";
import { decide, type Decision, REASON_CODES } from "../core/decide.ts";
import { marketStatus } from "../core/market_hours.ts";
import { DEFAULT_RULES, RulesSchema } from "../core/rules.ts";
import {
  anySignalArb,
  bookArb,
  context,
  contextArb,
  gex,
  gexArb,
  priceArb,
  receivedAtArb,
  rulesArb,
  sessionStepsArb,
  signal,
  signalAt,
  SYMBOLS,
} from "./_decide_fixtures.ts";
import { barSeconds } from "../core/freshness.ts";

const RUNS = { numRuns: 200 };
/** The limit holds in whole cents: a binary sum of decimal prices may be a hair over it. */
const cents = (dollars: number) => Math.round(dollars * 100);

/** Throws unless `d` is a well-formed decision whose effects agree with its outcome. */
function assertValid(d: Decision, book: Book): void {
  assert.ok(["ENTER", "EXIT", "REJECT"].includes(d.outcome));
  assert.ok((REASON_CODES as readonly string[]).includes(d.reason));
  assert.ok(typeof d.message === "string" && d.message.length > 0);
  assert.ok(d.notes.every((n) => typeof n === "string"));
  assert.equal(typeof d.degraded, "boolean");
  if (d.price !== null) assert.ok(Number.isFinite(d.price) && d.price > 0);
  const ids = new Set(book.open.map((p) => p.id));
  for (const c of d.close) {
    assert.ok(ids.has(c.positionId));
    assert.equal(c.exitPrice, d.price);
    assert.ok(Number.isFinite(c.realizedPnl));
  }
  assert.equal(new Set(d.close.map((c) => c.positionId)).size, d.close.length);
  switch (d.outcome) {
    case "REJECT":
      assert.deepEqual([d.close, d.open, d.size], [[], null, null]);
      assert.ok(
        !["ENTRY_APPROVED", "EXIT_APPROVED", "FLIPPED", "CLOSED_BY_OPPOSITE"].includes(d.reason),
      );
      break;
    case "EXIT":
      assert.ok(d.reason === "EXIT_APPROVED" || d.reason === "CLOSED_BY_OPPOSITE");
      assert.ok(d.close.length > 0);
      assert.deepEqual([d.open, d.size], [null, null]);
      break;
    case "ENTER": {
      assert.equal(d.reason, d.close.length > 0 ? "FLIPPED" : "ENTRY_APPROVED");
      const { open, size } = d;
      assert.ok(open !== null && size !== null);
      assert.ok(Number.isSafeInteger(open.quantity) && open.quantity >= 1);
      assert.equal(size.quantity, open.quantity);
      assert.equal(open.entryPrice, d.price);
      assert.equal(open.notional, open.quantity * open.entryPrice);
      assert.ok([size.notional, size.multiplier].every(Number.isFinite));
      break;
    }
  }
}

Deno.test("decide() never throws and always returns a valid decision, whatever the inputs", () => {
  fc.assert(
    fc.property(anySignalArb, contextArb, gexArb, bookArb, rulesArb, (s, c, g, book, rules) => {
      assert.ok(RulesSchema.safeParse(rules).success);
      assertValid(decide(s, c, g, book, rules), book);
    }),
    RUNS,
  );
});

Deno.test("the last known context is only ever a close's price, never an entry's", () => {
  fc.assert(
    fc.property(
      anySignalArb,
      contextArb,
      gexArb,
      bookArb,
      rulesArb,
      (s, lastKnown, g, book, rules) => {
        const noPrice = { ...s, price: null };
        const d = decide(noPrice, null, g, book, rules, lastKnown);
        assertValid(d, book);
        assert.equal(d.open, null);
        // Whatever it closes, it closes at that spot.
        if (d.close.length > 0) {
          assert.ok(lastKnown !== null && d.close.every((c) => c.exitPrice === lastKnown.spot));
        }
      },
    ),
    RUNS,
  );
});

Deno.test("a REJECT changes no position", () => {
  fc.assert(
    fc.property(anySignalArb, contextArb, gexArb, bookArb, rulesArb, (s, c, g, book, rules) => {
      const d = decide(s, c, g, book, rules);
      fc.pre(d.outcome === "REJECT");
      const applied = applyDecision(book, d, s);
      assert.deepEqual(applied.book, book);
      assert.equal(applied.opened, null);
      assert.deepEqual(applied.closed, []);
    }),
    RUNS,
  );
});

Deno.test("a stale signal opens nothing and closes only positions entered on a bar before its own", () => {
  const late = fc.tuple(receivedAtArb, fc.integer({ min: 1, max: 7_200 }))
    .chain(([ms, overSeconds]) => signalAt(ms, "sig-late").map((s) => ({ s, overSeconds })));
  fc.assert(
    fc.property(
      late,
      contextArb,
      gexArb,
      bookArb,
      rulesArb,
      ({ s, overSeconds }, c, g, book, rules) => {
        const receivedMs = Date.parse(s.receivedAt);
        const limitSeconds = rules.maxSignalAgeSeconds + barSeconds(s.timeframe);
        const claimedMs = receivedMs - (limitSeconds + overSeconds) * 1000;
        const stale = { ...s, timestamp: new Date(claimedMs).toISOString() };
        const d = decide(stale, c, g, book, rules);
        assertValid(d, book);
        assert.equal(d.open, null);
        const closed = new Set(d.close.map((x) => x.positionId));
        for (const p of book.open.filter((p) => closed.has(p.id))) {
          assert.equal(p.symbol, s.symbol);
          assert.ok(Date.parse(p.entrySignalTime) < claimedMs);
        }
        const isExit = s.action === "EXIT" || s.direction === "EXIT";
        const eligible = book.open.filter((p) =>
          p.symbol === s.symbol && Date.parse(p.entrySignalTime) < claimedMs &&
          (isExit
            ? s.direction === "EXIT" || p.direction === s.direction
            : p.direction !== s.direction)
        );
        // Refused as stale only when nothing was entered before it (else it closes, or is
        // refused for another reason: the market, no price).
        if (d.reason === "STALE_SIGNAL") assert.deepEqual(eligible, []);
        if (d.outcome === "REJECT") return;
        // It closed: every position it could close from an earlier bar is closed.
        assert.deepEqual([...closed].sort(), eligible.map((p) => p.id).sort());
      },
    ),
    RUNS,
  );
});

Deno.test("while the market is closed a decision opens nothing, and closes only just after a regular close", () => {
  fc.assert(
    fc.property(anySignalArb, contextArb, gexArb, bookArb, rulesArb, (s, c, g, book, rules) => {
      const receivedMs = Date.parse(s.receivedAt);
      fc.pre(rules.marketHours.enforce && !Number.isNaN(receivedMs));
      const status = marketStatus(new Date(receivedMs), rules.marketHours);
      fc.pre(!status.open);
      const d = decide(s, c, g, book, rules);
      assert.equal(d.open, null);
      if (d.close.length === 0) return;
      const close = status.regularClose!.getTime();
      assert.ok(receivedMs >= close);
      assert.ok(receivedMs < close + rules.marketHours.exitMinutesAfterClose * 60_000);
    }),
    RUNS,
  );
});

Deno.test("an entry is opened at the signal's price only within maxPriceDeviationPct of the spot", () => {
  fc.assert(
    fc.property(priceArb, priceArb, fc.constantFrom(0, 1, 10, 50), (price, spot, limit) => {
      const d = decide(
        signal({ price }),
        context({ spot }),
        gex({ spot, callWall: null, putWall: null }),
        { open: [] },
        { ...DEFAULT_RULES, maxPriceDeviationPct: limit, maxExposure: Infinity },
      );
      const deviationPct = Math.abs(price - spot) / spot * 100;
      if (limit > 0 && deviationPct > limit) {
        assert.equal(d.reason, "PRICE_MISMATCH");
      } else {
        assert.notEqual(d.reason, "PRICE_MISMATCH");
        if (d.open !== null) assert.equal(d.open.entryPrice, price);
      }
    }),
    RUNS,
  );
});

Deno.test("any sequence of signals keeps exposure, position count and one position per symbol and side within the rules", () => {
  fc.assert(
    fc.property(sessionStepsArb, rulesArb, (steps, rules) => {
      let book: Book = { open: [] };
      for (const [s, c, g] of steps) {
        const d = decide(s, c, g, book, rules);
        assertValid(d, book);
        const before = book;
        book = applyDecision(book, d, s).book;
        if (d.outcome === "ENTER") {
          assert.ok(cents(exposure(book)) <= cents(rules.maxExposure));
          assert.ok(book.open.length <= rules.maxOpenPositions);
        } else {
          // Nothing but an entry adds exposure or positions.
          assert.ok(exposure(book) <= exposure(before));
          assert.ok(book.open.length <= before.open.length);
        }
        assert.ok(cents(exposure(book)) <= cents(rules.maxExposure));
        const sides = book.open.map((p) => `${p.symbol}:${p.direction}`);
        assert.equal(new Set(sides).size, sides.length);
      }
    }),
    RUNS,
  );
});

Deno.test("closing everything realizes the sum of each closed position's PnL from its entry and exit, to the cent", () => {
  fc.assert(
    fc.property(sessionStepsArb, rulesArb, (steps, rules) => {
      let book: Book = { open: [] };
      const closed: ClosedPosition[] = [];
      let decided = 0;
      const step = (s: ReturnType<typeof signal>, d: Decision) => {
        const applied = applyDecision(book, d, s);
        for (const c of d.close) decided += c.realizedPnl;
        closed.push(...applied.closed);
        book = applied.book;
      };
      for (const [s, c, g] of steps) step(s, decide(s, c, g, book, rules));
      for (const symbol of SYMBOLS) {
        const s = signal({
          id: `flatten-${symbol}`,
          symbol,
          direction: "EXIT",
          action: "EXIT",
          receivedAt: "2026-03-10T19:55:00.000Z",
          timestamp: "2026-03-10T19:55:00.000Z",
          price: 321.09,
        });
        const d = decide(s, null, null, book, rules);
        if (book.open.some((p) => p.symbol === symbol)) assert.equal(d.reason, "EXIT_APPROVED");
        step(s, d);
      }
      assert.deepEqual(book, { open: [] });
      let independent = 0;
      for (const p of closed) {
        const perUnit = p.direction === "CALL"
          ? p.exitPrice - p.entryPrice
          : p.entryPrice - p.exitPrice;
        independent += perUnit * p.quantity;
      }
      const total = closed.reduce((sum, p) => sum + p.realizedPnl, 0);
      assert.equal(decided, total);
      // Each position's PnL is rounded to the cent: at most half a cent off.
      assert.ok(Math.abs(total - independent) <= 0.005 * closed.length + 1e-6);
    }),
    RUNS,
  );
});
