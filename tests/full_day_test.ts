/**
 * A trading day, Tue 2026-03-10 (EDT), driven through the real app and
 * database: signals arrive at their times with live context and GEX, each is
 * decided as it would be in production, and the book is checked at the close.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_db.ts";
import {
  clock,
  decisionFor,
  pipelineServices,
  positions,
  pushChain,
  pushContext,
  send,
} from "./_pipeline.ts";

const DAY = "2026-03-10";
const OPENING_SPOTS: Readonly<Record<string, number>> = { SPY: 500, QQQ: 400, IWM: 200 };

/** New York wall-clock time on the test day, as an instant (EDT = UTC-4). */
const ny = (hhmm: string) =>
  `${DAY}T${String(Number(hhmm.slice(0, 2)) + 4).padStart(2, "0")}:${hhmm.slice(3)}:00Z`;

dbTest("a full day of signals leaves the book and realized PnL the rules imply", async ({ db }) => {
  const c = clock(ny("08:00"));
  const s = await pipelineServices(db, c);
  const SPOT = { ...OPENING_SPOTS };
  const expect: [string, string, string][] = [];
  const at = async (
    time: string,
    fields: Record<string, unknown>,
    outcome: string,
    reason: string,
    spots: Record<string, number> = {},
  ) => {
    c.set(ny(time));
    Object.assign(SPOT, spots);
    // A live feed: context and chains refreshed before each alert.
    for (const [symbol, spot] of Object.entries(SPOT)) {
      await pushContext(s, c, symbol, spot);
      await pushChain(s, c, symbol, spot);
    }
    const { signal_id } = await send(s, c, { price: SPOT[fields.symbol as string], ...fields });
    await s.worker.runUntilIdle();
    const d = await decisionFor(db, signal_id);
    assert.deepEqual(
      [d.outcome, d.reason_code],
      [outcome, reason],
      `${time} ${JSON.stringify(fields)}: ${d.message}`,
    );
    expect.push([time, outcome, reason]);
    return signal_id;
  };

  await at("08:00", { symbol: "SPY", direction: "CALL" }, "REJECT", "MARKET_CLOSED");
  await at("09:35", { symbol: "QQQ", direction: "CALL" }, "REJECT", "OPENING_WINDOW");
  await at("09:50", { symbol: "SPY", direction: "CALL" }, "ENTER", "ENTRY_APPROVED"); // 17 @ 500
  await at("10:00", { symbol: "QQQ", direction: "PUT" }, "ENTER", "ENTRY_APPROVED"); // 21 @ 400
  await at("10:30", { symbol: "SPY", direction: "long" }, "REJECT", "ALREADY_OPEN");
  await at(
    "11:00",
    { symbol: "IWM", direction: "CALL", metadata: { confidence: 0.3 } },
    "REJECT",
    "LOW_CONFIDENCE",
  );
  await at("11:30", { symbol: "IWM", direction: "CALL", action: "EXIT" }, "REJECT", "NO_POSITION");
  await at("12:00", { symbol: "SPY", direction: "flat" }, "EXIT", "EXIT_APPROVED", { SPY: 505 }); // +5 x 17
  await at("13:00", { symbol: "QQQ", direction: "CALL" }, "EXIT", "CLOSED_BY_OPPOSITE", {
    QQQ: 395,
  }); // +5 x 21
  await at("14:00", { symbol: "IWM", direction: "PUT" }, "ENTER", "ENTRY_APPROVED"); // 42 @ 200
  await at("15:55", { symbol: "SPY", direction: "CALL" }, "REJECT", "CLOSING_WINDOW");
  await at("16:30", { symbol: "IWM", direction: "flat" }, "REJECT", "MARKET_CLOSED", { IWM: 198 });

  const book = await positions(db);
  assert.deepEqual(
    book.map((
      p,
    ) => [
      p.symbol,
      p.direction,
      p.quantity,
      p.entry_price,
      p.is_closed,
      p.exit_price,
      p.realized_pnl,
    ]),
    [
      ["SPY", "CALL", 17, 500, true, 505, 85],
      ["QQQ", "PUT", 21, 400, true, 395, 105],
      ["IWM", "PUT", 42, 200, false, null, null],
    ],
  );
  const metrics = await (await s.app.request("/metrics")).json();
  assert.equal(metrics.positions.openPositions, 1);
  assert.equal(metrics.positions.realizedPnL, 190);
  assert.equal(metrics.positions.totalExposure, 8400);
  // IWM PUT marked at 198: (200 - 198) x 42.
  assert.equal(metrics.positions.unrealizedPnL, 84);
  assert.equal(metrics.signals.totalSignals, expect.length);
  assert.equal(metrics.signals.acceptedSignals, expect.filter(([, o]) => o !== "REJECT").length);
});
