import assert from "node:assert/strict";
import fc from "fast-check";
import {
  applyDecision,
  type ClosedPosition,
  exposure,
  realizedPnl,
  unrealizedPnl,
} from "../core/book.ts";
import { decide } from "../core/decide.ts";
import { bookArb, context, gex, position, priceArb, rules, signal } from "./_decide_fixtures.ts";

Deno.test("exposure() sums quantity x entry price over the open positions", () => {
  assert.equal(exposure({ open: [] }), 0);
  const open = [
    position({ quantity: 10, entryPrice: 490 }),
    position({ id: "b", direction: "PUT", quantity: 3, entryPrice: 100.5 }),
  ];
  assert.equal(exposure({ open }), 5201.5);
});

Deno.test("realizedPnl() is long the underlying for a CALL and short for a PUT", () => {
  const call = position({ direction: "CALL", quantity: 10, entryPrice: 490 });
  const put = position({ direction: "PUT", quantity: 10, entryPrice: 490 });
  assert.equal(realizedPnl(call, 500), 100);
  assert.equal(realizedPnl(call, 480), -100);
  assert.equal(realizedPnl(put, 500), -100);
  assert.equal(realizedPnl(put, 480), 100);
  assert.equal(unrealizedPnl(put, 485.5), 45);
});

Deno.test("realizedPnl() is in whole cents, without the noise of binary prices", () => {
  const call = (entryPrice: number) => ({ direction: "CALL" as const, quantity: 17, entryPrice });
  assert.equal(realizedPnl(call(487.15), 487.16), 0.17);
  assert.equal(realizedPnl(call(487.17), 487.19), 0.34);
  assert.equal(realizedPnl({ direction: "PUT", quantity: 3, entryPrice: 0.1 }, 0.3), -0.6);
  assert.ok(Object.is(realizedPnl(call(500), 500), 0));
});

Deno.test("applyDecision() opens the approved entry as pos-<signal id>, dated when received", () => {
  const s = signal({ id: "abc" });
  const d = decide(s, context(), gex(), { open: [] }, rules());
  const applied = applyDecision({ open: [] }, d, s);
  assert.deepEqual(applied.opened, {
    id: "pos-abc",
    symbol: "SPY",
    direction: "CALL",
    quantity: 16,
    entryPrice: 500,
    openedAt: s.receivedAt,
    entrySignalId: "abc",
    entrySignalTime: s.timestamp,
  });
  assert.deepEqual(applied.book, { open: [applied.opened] });
  assert.deepEqual(applied.closed, []);
});

Deno.test("applyDecision() closes and opens in one step on a flip", () => {
  const put = position({ id: "put", direction: "PUT", quantity: 10, entryPrice: 510 });
  const other = position({ id: "qqq", symbol: "QQQ" });
  const book = { open: [put, other] };
  const s = signal({ id: "flip" });
  const d = decide(s, context(), gex(), book, rules({ flip: true }));
  assert.equal(d.reason, "FLIPPED");
  const { book: next, opened, closed } = applyDecision(book, d, s);
  assert.deepEqual(closed, [{
    ...put,
    exitPrice: 500,
    closedAt: s.receivedAt,
    exitSignalId: "flip",
    realizedPnl: 100,
  }]);
  assert.deepEqual(next.open.map((p) => p.id), ["qqq", "pos-flip"]);
  assert.equal(opened?.direction, "CALL");
});

Deno.test("applyDecision() returns the same book for a REJECT", () => {
  const book = { open: [position()] };
  const s = signal();
  const d = decide(s, context(), gex(), book, rules());
  assert.equal(d.reason, "ALREADY_OPEN");
  const applied = applyDecision(book, d, s);
  assert.equal(applied.book, book);
  assert.equal(applied.opened, null);
  assert.deepEqual(applied.closed, []);
});

Deno.test("flattening a book realizes the sum of each position's PnL from its entry and exit", () => {
  fc.assert(
    fc.property(
      bookArb,
      fc.dictionary(fc.constantFrom("SPY", "QQQ", "IWM"), priceArb),
      (book, marks) => {
        let current = book;
        const closed: ClosedPosition[] = [];
        for (const symbol of ["SPY", "QQQ", "IWM"]) {
          const s = signal({
            id: `exit-${symbol}`,
            symbol,
            direction: "EXIT",
            action: "EXIT",
            price: marks[symbol] ?? 100,
          });
          const d = decide(s, null, null, current, rules());
          const applied = applyDecision(current, d, s);
          current = applied.book;
          closed.push(...applied.closed);
        }
        assert.deepEqual(current, { open: [] });
        assert.equal(closed.length, book.open.length);
        const independent = closed.map((p) =>
          p.direction === "CALL"
            ? (p.exitPrice - p.entryPrice) * p.quantity
            : (p.entryPrice - p.exitPrice) * p.quantity
        );
        closed.forEach((p, i) => {
          // Whole cents, within half a cent of the exact figure.
          assert.equal(p.realizedPnl, Math.round(p.realizedPnl * 100) / 100);
          assert.ok(Math.abs(p.realizedPnl - independent[i]) <= 0.005 + 1e-9);
        });
        const unrealized = book.open.reduce(
          (sum, p) => sum + unrealizedPnl(p, marks[p.symbol] ?? 100),
          0,
        );
        const realized = closed.reduce((sum, p) => sum + p.realizedPnl, 0);
        assert.ok(Math.abs(realized - unrealized) <= 1e-6 * (1 + Math.abs(unrealized)));
      },
    ),
    { numRuns: 200 },
  );
});
