/**
 * TradingView strategy and indicator alerts as TradingView sends them: the
 * README's alert message with its placeholders substituted, the secret in
 * the body, through the real app and database; the decisions and the book
 * are read back and compared with the strategy's own position.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_db.ts";
import { SECRET } from "./_app.ts";
import {
  type Clock,
  clock,
  decisionFor,
  type DecisionRow,
  pipelineServices,
  positions,
  pushChain,
  pushContext,
} from "./_pipeline.ts";
import type { Services } from "../compose.ts";

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));
/** The README's alert message, as the user pastes it into TradingView. */
const TEMPLATE = (() => {
  const m = /```json\n(\{\n {2}"secret": "YOUR_WEBHOOK_SECRET"[\s\S]*?\})\n```/.exec(README);
  if (!m) throw new Error("README alert template not found");
  return m[1].replace("YOUR_WEBHOOK_SECRET", SECRET);
})();

/** The README's indicator variant: the two strategy lines replaced by a fixed direction. */
function indicatorTemplate(direction: string): string {
  const lines = TEMPLATE.split("\n").filter((l) => !l.includes("{{strategy."));
  const at = lines.findIndex((l) => l.includes('"symbol"'));
  lines.splice(at + 1, 0, `  "direction": "${direction}",`);
  return lines.join("\n");
}

/** TradingView's substitution: every {{name}} replaced by its value, as plain text. */
function substitute(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([^}]+)\}\}/g, (whole, name: string) => values[name] ?? whole);
}

type MarketPosition = "long" | "short" | "flat";

interface Fill {
  action: "buy" | "sell";
  position: MarketPosition;
  close: string;
  /** {{strategy.prev_market_position}}; by default the position the last fill left. */
  prev?: MarketPosition;
}

/** The strategy's position per symbol after its last fill, as TradingView keeps it. */
const strategyPositions = new WeakMap<Services, Map<string, MarketPosition>>();

async function post(s: Services, body: string): Promise<Response> {
  return await s.app.request("/webhook", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
}

async function market(s: Services, c: Clock, symbol: string, spot: number) {
  await pushContext(s, c, symbol, spot);
  await pushChain(s, c, symbol, spot);
}

/** {{timenow}} as TradingView prints it: whole seconds, Z. */
const timenow = (c: Clock) => new Date(c.now()).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * One order fill's alert message: `template` with TradingView's placeholders
 * for `symbol`, `interval` and `f`, and the times in `times` ({{timenow}} or {{time}}).
 */
function fillMessage(
  template: string,
  symbol: string,
  interval: string,
  f: Required<Fill>,
  times: Record<string, string>,
): string {
  return substitute(template, {
    ticker: symbol,
    "strategy.order.action": f.action,
    "strategy.market_position": f.position,
    "strategy.prev_market_position": f.prev,
    interval,
    close: f.close,
    ...times,
  });
}

/** Posts an alert message, which must be ACCEPTED, runs the pipeline, and returns its decision. */
async function decided(s: Services, body: string): Promise<DecisionRow> {
  const res = await post(s, body);
  const json = await res.json();
  assert.equal(res.status, 200, `${body}\n${JSON.stringify(json)}`);
  assert.equal(json.status, "ACCEPTED", `${body}\n${JSON.stringify(json)}`);
  await s.worker.runUntilIdle();
  return await decisionFor(s.db, json.signal_id);
}

/** Sends one order-fill alert, runs the pipeline, and returns [outcome, reason]. */
async function fill(
  s: Services,
  c: Clock,
  symbol: string,
  interval: string,
  f: Fill,
): Promise<[string, string]> {
  const positions = strategyPositions.get(s) ?? new Map<string, MarketPosition>();
  strategyPositions.set(s, positions);
  const prev = f.prev ?? positions.get(symbol) ?? "flat";
  positions.set(symbol, f.position);
  const body = fillMessage(TEMPLATE, symbol, interval, { ...f, prev }, { timenow: timenow(c) });
  const d = await decided(s, body);
  return [d.outcome, d.reason_code];
}

const open = async (s: Services) =>
  (await positions(s.db)).filter((p) => !p.is_closed).map((p) => [p.symbol, p.direction]);

dbTest("strategy long entry then exit: the book follows the strategy", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  await market(s, c, "SPY", 500);
  assert.deepEqual(
    await fill(s, c, "SPY", "5", { action: "buy", position: "long", close: "500.12" }),
    ["ENTER", "ENTRY_APPROVED"],
  );
  c.advance(15 * 60_000);
  await market(s, c, "SPY", 502);
  assert.deepEqual(
    await fill(s, c, "SPY", "5", { action: "sell", position: "flat", close: "502.5" }),
    ["EXIT", "EXIT_APPROVED"],
  );
  assert.deepEqual(await open(s), []);
});

dbTest("strategy long reversed to short (one sell of 2x), with FLIP on", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c, { FLIP: "true" });
  await market(s, c, "SPY", 500);
  await fill(s, c, "SPY", "5", { action: "buy", position: "long", close: "500" });
  c.advance(10 * 60_000);
  await market(s, c, "SPY", 498);
  assert.deepEqual(
    await fill(s, c, "SPY", "5", { action: "sell", position: "short", close: "498" }),
    ["ENTER", "FLIPPED"],
  );
  assert.deepEqual(await open(s), [["SPY", "PUT"]]);
  c.advance(10 * 60_000);
  await market(s, c, "SPY", 495);
  assert.deepEqual(
    await fill(s, c, "SPY", "5", { action: "buy", position: "flat", close: "495" }),
    ["EXIT", "EXIT_APPROVED"],
  );
  assert.deepEqual(await open(s), []);
});

dbTest(
  "strategy.close and a short entry on one bar arriving swapped: the late close leaves the new short",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { FLIP: "true" });
    await market(s, c, "SPY", 500);
    await fill(s, c, "SPY", "5", { action: "buy", position: "long", close: "500" });
    c.advance(10 * 60_000);
    await market(s, c, "SPY", 498);
    // The strategy closed the long (long -> flat), then sold short (flat -> short); the entry
    // arrives first and flips, the close after it.
    assert.deepEqual(
      await fill(s, c, "SPY", "5", {
        action: "sell",
        position: "short",
        prev: "flat",
        close: "498",
      }),
      ["ENTER", "FLIPPED"],
    );
    assert.deepEqual(
      await fill(s, c, "SPY", "5", {
        action: "sell",
        position: "flat",
        prev: "long",
        close: "498",
      }),
      ["REJECT", "NO_POSITION"],
    );
    assert.deepEqual(await open(s), [["SPY", "PUT"]]);
  },
);

dbTest("strategy partial exit and pyramiding while long keep the one long", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  await market(s, c, "SPY", 500);
  await fill(s, c, "SPY", "5", { action: "buy", position: "long", close: "500" });
  c.advance(5 * 60_000);
  await market(s, c, "SPY", 501);
  const pyramid = await fill(s, c, "SPY", "5", { action: "buy", position: "long", close: "501" });
  c.advance(5 * 60_000);
  const partial = await fill(s, c, "SPY", "5", { action: "sell", position: "long", close: "503" });
  // Neither a pyramid add nor a partial exit changes the book's one long.
  assert.deepEqual([pyramid, partial], [["REJECT", "ALREADY_OPEN"], ["REJECT", "ALREADY_OPEN"]]);
  assert.deepEqual(await open(s), [["SPY", "CALL"]]);
  c.advance(5 * 60_000);
  await market(s, c, "SPY", 504);
  assert.deepEqual(
    await fill(s, c, "SPY", "5", { action: "sell", position: "flat", close: "504" }),
    ["EXIT", "EXIT_APPROVED"],
  );
  assert.deepEqual(await open(s), []);
});

dbTest("the README's indicator variant is accepted and decided", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  await market(s, c, "SPY", 500);
  for (const [direction, outcome] of [["CALL", "ENTER"], ["EXIT", "EXIT"]]) {
    const body = substitute(indicatorTemplate(direction), {
      ticker: "SPY",
      interval: "60",
      timenow: timenow(c),
      close: "500.25",
    });
    assert.equal((await decided(s, body)).outcome, outcome);
    c.advance(60_000);
  }
});

dbTest("real chart values: tickers, intervals and prices TradingView prints", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  const cases: [string, string, string][] = [
    ["ES1!", "1", "5012.25"],
    ["BRK.B", "60", "412.3"],
    ["NASDAQ:AAPL", "D", "191.56"],
    ["BINANCE:BTCUSDT.P", "240", "43125.1"],
    ["SPY", "1W", "500"],
    ["SPY", "1S", "500"],
    ["EURUSD", "15", "1.08765"],
    ["SHIB", "5", "0.000009876"],
    ["SPX", "3M", "5000"],
  ];
  for (const [ticker, interval, close] of cases) {
    c.advance(1000);
    const body = fillMessage(TEMPLATE, ticker, interval, {
      action: "buy",
      position: "long",
      prev: "flat",
      close,
    }, { timenow: timenow(c) });
    const res = await post(s, body);
    assert.equal(res.status, 200, `${ticker} ${interval} ${close}: ${await res.text()}`);
  }
});

dbTest(
  "bar-close alerts timed {{time}} (the bar's open) are fresh on every timeframe",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const template = TEMPLATE.replace("{{timenow}}", "{{time}}");
    // [interval, bar open, received at its close or mid-bar]: Tue 2026-03-10, EDT.
    const cases: [string, string, string][] = [
      ["1", "2026-03-10T14:29:00Z", "2026-03-10T14:30:01Z"],
      ["5", "2026-03-10T14:25:00Z", "2026-03-10T14:30:01Z"],
      ["60", "2026-03-10T13:30:00Z", "2026-03-10T14:30:01Z"],
      ["240", "2026-03-10T13:30:00Z", "2026-03-10T17:30:01Z"],
      ["D", "2026-03-10T13:30:00Z", "2026-03-10T19:00:00Z"],
      ["W", "2026-03-09T13:30:00Z", "2026-03-10T19:00:00Z"],
    ];
    for (const [interval, time, received] of cases) {
      c.set(received);
      await market(s, c, "SPY", 500);
      const ticker = "SPY";
      const fills: Required<Fill>[] = [
        { action: "buy", position: "long", prev: "flat", close: "500" },
        { action: "sell", position: "flat", prev: "long", close: "500.5" },
      ];
      for (const f of fills) {
        const d = await decided(s, fillMessage(template, ticker, interval, f, { time }));
        assert.notEqual(d.outcome, "REJECT", `${interval} ${f.position}: ${d.message}`);
        c.advance(1000);
      }
    }
    assert.deepEqual(await open(s), []);
  },
);
