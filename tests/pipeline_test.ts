/**
 * The pipeline end to end through the real app and database: webhook ->
 * job -> worker -> decision, positions and events, with every stage timed.
 */
import assert from "node:assert/strict";
import type { Services } from "../compose.ts";
import type { Database } from "../db/port.ts";
import { WRITE_BATCH_SQL } from "../db/decisions.ts";
import { CLAIM_JOBS_SQL } from "../db/jobs.ts";
import type { IngestActivity } from "../pipeline/worker.ts";
import { countRows } from "./_app.ts";
import { delay, waitFor } from "./_service.ts";
import { aroundQueries, dbTest } from "./_db.ts";
import {
  type Clock,
  clock,
  decisionFor,
  pipelineServices,
  positions,
  pushChain,
  pushContext,
  send,
  workerOn,
} from "./_pipeline.ts";

/**
 * Makes every decision write for a symbol, or for one signal, fail, as a stage
 * that keeps throwing would; `drop trigger test_refuse on decisions` ends it.
 */
async function refuseDecisionsFor(
  db: Database,
  which: { symbol: string } | { signalId: string },
): Promise<void> {
  const refused = "symbol" in which
    ? `exists (select 1 from signals where id = new.signal_id and symbol = '${which.symbol}')`
    : `new.signal_id = '${which.signalId}'`;
  await db.exec(`
    create function test_refuse() returns trigger language plpgsql as $$
    begin
      if ${refused} then raise exception 'injected failure'; end if;
      return new;
    end $$;
    create trigger test_refuse before insert on decisions
      for each row execute function test_refuse();`);
}

dbTest(
  "a dead instance's job out of attempts is failed together with its give-up record, or not at all",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { JOB_MAX_ATTEMPTS: "2" });
    const { signal_id } = await send(s, c, { symbol: "SPY", direction: "CALL" });
    // Claimed on its last attempt by an instance that is gone (no session of its name).
    await db.query(
      `update pipeline_jobs set status = 'running', attempts = 2, locked_by = 'gone:1',
         locked_at = now() where signal_id = $1`,
      [signal_id],
    );
    const job = async () =>
      (await db.query<{ status: string }>(
        "select status from pipeline_jobs where signal_id = $1",
        [signal_id],
      ))[0].status;
    const records = () => countRows(db, "processing_errors");
    await db.exec(`
      create function test_refuse() returns trigger language plpgsql as $$
      begin raise exception 'injected failure'; end $$;
      create trigger test_refuse before insert on processing_errors
        for each row execute function test_refuse();`);
    await s.worker.runUntilIdle().catch(() => {});
    assert.equal(await job(), "running", "failed without its give-up record");
    assert.equal(await records(), 0);
    await db.exec("drop trigger test_refuse on processing_errors");
    await s.worker.runUntilIdle();
    assert.equal(await job(), "failed");
    const [record] = await db.query<{ code: string; signal_id: string }>(
      "select code, signal_id from processing_errors",
    );
    assert.deepEqual(record, { code: "PIPELINE_FAILED", signal_id });
    assert.equal(await countRows(db, "events where kind = 'failure'"), 1);
  },
);

dbTest(
  "an exit just after the close is decided with the market context: no price needed, a wrong one not believed",
  async ({ db }) => {
    const c = clock("2026-03-10T19:00:00Z"); // 15:00 New York
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    await pushContext(s, c, "QQQ", 400);
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await send(s, c, { symbol: "QQQ", direction: "CALL", price: 400 });
    await s.worker.runUntilIdle();
    assert.equal((await positions(db)).filter((p) => !p.is_closed).length, 2);

    c.set("2026-03-10T20:01:00Z"); // 16:01, within EXIT_MINUTES_AFTER_CLOSE
    await pushContext(s, c, "SPY", 505);
    await pushContext(s, c, "QQQ", 404);
    const noPrice = await send(s, c, { symbol: "SPY", direction: "EXIT", action: "EXIT" });
    const plotValue = await send(s, c, { symbol: "QQQ", action: "EXIT", price: 4.04 });
    await s.worker.runUntilIdle();
    const spy = await decisionFor(db, noPrice.signal_id);
    assert.equal(spy.reason_code, "EXIT_APPROVED", spy.message);
    assert.match(spy.message, /at 505: realized PnL/);
    assert.notEqual(spy.context_snapshot_id, null);
    const qqq = await decisionFor(db, plotValue.signal_id);
    assert.equal(qqq.reason_code, "EXIT_APPROVED", qqq.message);
    assert.match(qqq.message, /at 404: realized PnL/);
    assert.equal((await positions(db)).filter((p) => !p.is_closed).length, 0);
    await s.close();
  },
);

dbTest(
  "an entry acknowledged while no worker ran is refused as stale once too old to act on, not opened",
  async ({ db }) => {
    const c = clock(); // 10:30 New York
    const s = await pipelineServices(db, c);
    const late = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    // No worker for 10 minutes and a second: past 300 s plus one 5m bar since the alert's time.
    c.advance(601_000);
    await pushContext(s, c, "SPY", 503);
    await pushContext(s, c, "QQQ", 400);
    const fresh = await send(s, c, { symbol: "QQQ", direction: "CALL", price: 400 });
    await s.worker.runUntilIdle();
    const refused = await decisionFor(db, late.signal_id);
    assert.equal(refused.reason_code, "STALE_SIGNAL", refused.message);
    assert.match(refused.message, /^Signal is 601 s old when decided, 601 s after it was received/);
    assert.equal((await decisionFor(db, fresh.signal_id)).reason_code, "ENTRY_APPROVED");
    assert.deepEqual((await positions(db)).map((p) => p.symbol), ["QQQ"]);
    await s.close();
  },
);

dbTest(
  "an exit with no price still closes, at the last known spot, once the market context is stale",
  async ({ db }) => {
    const c = clock("2026-03-10T18:00:00Z"); // 14:00 New York
    const s = await pipelineServices(db, c, { CONTEXT_MAX_AGE_SECONDS: "900" });
    await pushContext(s, c, "SPY", 500);
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await s.worker.runUntilIdle();
    c.advance(901_000); // the context is now stale: missing for every decision
    const exit = await send(s, c, { symbol: "SPY", direction: "EXIT", action: "EXIT" });
    await s.worker.runUntilIdle();
    const d = await decisionFor(db, exit.signal_id);
    assert.equal(d.reason_code, "EXIT_APPROVED", d.message);
    assert.match(d.message, /at 500: realized PnL/);
    assert.equal((await positions(db)).filter((p) => !p.is_closed).length, 0);
    await s.close();
  },
);

dbTest(
  "a stale exit still closes, at the current spot, a position its strategy entered on an earlier bar",
  async ({ db }) => {
    const c = clock("2026-03-10T18:00:00Z"); // 14:00 New York
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    const entry = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await s.worker.runUntilIdle();
    assert.equal((await decisionFor(db, entry.signal_id)).outcome, "ENTER");
    // The exit fired on the next 5m bar and arrived 20 minutes late; a fresh
    // worker decides it from the stored book.
    const exitBar = new Date(c.now() + 300_000).toISOString();
    c.advance(1_500_000);
    await pushContext(s, c, "SPY", 505);
    const exit = await send(s, c, {
      symbol: "SPY",
      direction: "EXIT",
      action: "EXIT",
      price: 501,
      timestamp: exitBar,
    });
    assert.equal(await workerOn(s, c).runUntilIdle(), 1);
    const d = await decisionFor(db, exit.signal_id);
    assert.equal(d.reason_code, "EXIT_APPROVED", d.message);
    assert.match(d.message, /at 505: realized PnL/);
    const [closed] = await positions(db);
    assert.equal(closed.is_closed, true);
    await s.close();
  },
);

dbTest("jobs numbered past 2^31 (a bigint column) are decided", async ({ db }) => {
  await db.exec("alter table pipeline_jobs alter column id restart with 3000000000");
  const c = clock();
  const s = await pipelineServices(db, c);
  await pushContext(s, c, "SPY", 500);
  await pushChain(s, c, "SPY", 500);
  const sent = [];
  for (const direction of ["CALL", "PUT"]) {
    sent.push(await send(s, c, { symbol: "SPY", direction }));
  }
  assert.equal(await s.worker.runUntilIdle(), 2);
  for (const { signal_id } of sent) assert.ok((await decisionFor(db, signal_id)).outcome);
  const jobs = await db.query<{ id: string; status: string }>(
    "select id::text as id, status from pipeline_jobs order by id",
  );
  assert.deepEqual(jobs, [
    { id: "3000000000", status: "done" },
    { id: "3000000001", status: "done" },
  ]);
});

dbTest(
  "the guide's sample signal inside market hours becomes an ENTER and an open position",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    const { signal_id } = await send(s, c, { symbol: "SPY", direction: "CALL" });
    assert.equal(await s.worker.runUntilIdle(), 1);

    const d = await decisionFor(db, signal_id);
    assert.equal(d.outcome, "ENTER");
    assert.equal(d.reason_code, "ENTRY_APPROVED");
    assert.equal(d.degraded, false);
    assert.ok(d.context_snapshot_id, "decision links the context snapshot it used");
    assert.ok(d.gex_signal_id, "decision links the GEX it used");
    for (
      const stage of [
        "queue_ms",
        "market_hours_ms",
        "context_ms",
        "gex_ms",
        "book_ms",
        "decide_ms",
        "write_ms",
        "end_to_end_ms",
      ]
    ) {
      assert.equal(typeof d.timings[stage], "number", `timing ${stage}`);
    }
    const [p] = await positions(db);
    assert.deepEqual(
      {
        symbol: p.symbol,
        direction: p.direction,
        is_closed: p.is_closed,
        entry_price: p.entry_price,
      },
      { symbol: "SPY", direction: "CALL", is_closed: false, entry_price: 500 },
    );
    // 10,000 x confidence 0.85 = 8,500 at 500 -> 17 units.
    assert.equal(p.quantity, 17);
    const [job] = await db.query<{ status: string }>("select status from pipeline_jobs");
    assert.equal(job.status, "done");
    const kinds = (await db.query<{ kind: string }>("select kind from events order by id")).map((
      e,
    ) => e.kind);
    assert.deepEqual(kinds, ["signal", "decision", "position"]);
  },
);

dbTest(
  "a signal received outside market hours is rejected MARKET_CLOSED and opens nothing",
  async ({ db }) => {
    const c = clock("2026-03-14T15:00:00Z"); // a Saturday
    const s = await pipelineServices(db, c);
    const { signal_id } = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await s.worker.runUntilIdle();
    const d = await decisionFor(db, signal_id);
    assert.equal(d.outcome, "REJECT");
    assert.equal(d.reason_code, "MARKET_CLOSED");
    assert.match(d.message, /closed/i);
    assert.equal(await countRows(db, "positions"), 0);
  },
);

dbTest(
  "missing context and GEX degrade to reduced size, or reject under the REJECT policy",
  async ({ db }) => {
    const c = clock();
    const reduce = await pipelineServices(db, c);
    const a = await send(reduce, c, { symbol: "QQQ", direction: "PUT", price: 400 });
    await reduce.worker.runUntilIdle();
    const da = await decisionFor(db, a.signal_id);
    assert.equal(da.outcome, "ENTER");
    assert.equal(da.degraded, true);
    // 10,000 x 0.85 confidence x 0.5 degraded = 4,250 at 400 -> 10 units.
    assert.equal(da.quantity, 10);

    const strict = await pipelineServices(db, c, { DEGRADED_POLICY: "REJECT" });
    const b = await send(strict, c, { symbol: "IWM", direction: "CALL", price: 200 });
    await strict.worker.runUntilIdle();
    const db2 = await decisionFor(db, b.signal_id);
    assert.equal(db2.outcome, "REJECT");
    assert.equal(db2.reason_code, "NO_CONTEXT");
  },
);

dbTest(
  "per symbol, a close and an open sent back to back are decided in that order",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { WORKER_CONCURRENCY: "8" });
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    await send(s, c, { symbol: "SPY", direction: "CALL" });
    await s.worker.runUntilIdle();
    c.advance(60_000);
    // Fired in the same second: the exit of the CALL, then a PUT entry.
    const exit = await send(s, c, {
      symbol: "SPY",
      direction: "CALL",
      action: "EXIT",
      id: "exit-1",
    });
    const entry = await send(s, c, { symbol: "SPY", direction: "PUT", id: "entry-1" });
    await s.worker.runUntilIdle();
    assert.equal((await decisionFor(db, exit.signal_id)).reason_code, "EXIT_APPROVED");
    assert.equal((await decisionFor(db, entry.signal_id)).reason_code, "ENTRY_APPROVED");
    const book = await positions(db);
    assert.deepEqual(book.map((p) => [p.direction, p.is_closed]), [["CALL", true], ["PUT", false]]);
  },
);

dbTest(
  "one claim takes a symbol's queued jobs and decides them in order, open and close alike",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    // A bar close: entry, exit and a new entry of one symbol, all queued before any claim.
    const sent = [
      await send(s, c, { symbol: "SPY", direction: "CALL", price: 500, id: "a" }),
      await send(s, c, { symbol: "SPY", direction: "CALL", action: "EXIT", price: 505, id: "b" }),
      await send(s, c, { symbol: "SPY", direction: "CALL", price: 506, id: "c" }),
      await send(s, c, { symbol: "QQQ", direction: "PUT", price: 400, id: "d" }),
    ];
    assert.equal(await s.worker.runUntilIdle(), 4);
    const [claims] = await db.query<{ n: number }>(
      "select count(distinct locked_at)::integer as n from pipeline_jobs",
    );
    assert.equal(claims.n, 1, "all four in one claim");
    const [writes] = await db.query<{ n: number }>(
      "select count(distinct xmin::text)::integer as n from decisions",
    );
    assert.equal(writes.n, 1, "and in one write");
    const reasons = [];
    for (const { signal_id } of sent) reasons.push((await decisionFor(db, signal_id)).reason_code);
    assert.deepEqual(reasons, [
      "ENTRY_APPROVED",
      "EXIT_APPROVED",
      "ENTRY_APPROVED",
      "ENTRY_APPROVED",
    ]);
    // The first CALL opened and closed within the batch: written once, closed.
    const book = (await positions(db))
      .map((p) => [p.symbol, p.direction, p.is_closed, p.exit_price, p.realized_pnl])
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    assert.deepEqual(book, [
      ["QQQ", "PUT", false, null, null],
      ["SPY", "CALL", false, null, null],
      ["SPY", "CALL", true, 505, 85],
    ]);
  },
);

dbTest(
  "a job that fails holds back the jobs behind it of its symbol, and only those",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { JOB_MAX_ATTEMPTS: "3" });
    const first = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500, id: "1" });
    const boom = await send(s, c, {
      symbol: "SPY",
      direction: "CALL",
      action: "EXIT",
      price: 505,
      id: "2",
    });
    const after = await send(s, c, { symbol: "SPY", direction: "PUT", price: 500, id: "3" });
    const other = await send(s, c, { symbol: "QQQ", direction: "PUT", price: 400, id: "4" });
    await refuseDecisionsFor(db, { signalId: boom.signal_id });
    await s.worker.runUntilIdle();
    const jobs = async () =>
      (await db.query<{ signal_id: string; status: string; attempts: number }>(
        "select signal_id, status, attempts from pipeline_jobs order by id",
      )).map((j) => [j.signal_id, j.status, j.attempts]);
    assert.deepEqual(await jobs(), [
      [first.signal_id, "done", 1],
      [boom.signal_id, "pending", 1], // retried later, with backoff
      [after.signal_id, "pending", 0], // given back, behind it, its claim not counted
      [other.signal_id, "done", 1],
    ]);
    assert.equal(await countRows(db, "decisions"), 2);
    // Once the failing job goes through, the one behind it follows, in order.
    await db.exec("drop trigger test_refuse on decisions");
    await db.exec("update pipeline_jobs set run_at = now()");
    assert.equal(await s.worker.runUntilIdle(), 2);
    assert.equal((await decisionFor(db, boom.signal_id)).reason_code, "EXIT_APPROVED");
    assert.equal((await decisionFor(db, after.signal_id)).reason_code, "ENTRY_APPROVED");
    const book = await positions(db);
    assert.deepEqual(
      book.filter((p) => p.symbol === "SPY").map((p) => [p.direction, p.is_closed]),
      [["CALL", true], ["PUT", false]],
    );
  },
);

dbTest(
  "an EXIT closes the position at the signal's price with its realized PnL",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    await send(s, c, { symbol: "SPY", direction: "PUT", price: 500 });
    await s.worker.runUntilIdle();
    c.advance(30 * 60_000);
    await send(s, c, { symbol: "SPY", direction: "flat", price: 490 });
    await s.worker.runUntilIdle();
    const [p] = await positions(db);
    assert.equal(p.is_closed, true);
    assert.equal(p.exit_price, 490);
    // PUT is short the underlying: (500 - 490) x 17.
    assert.equal(p.realized_pnl, 170);
  },
);

dbTest(
  "a stage that keeps failing is retried, then the job fails with a processing_errors row",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { JOB_MAX_ATTEMPTS: "2" });
    // Make the decision write fail for one symbol only.
    await refuseDecisionsFor(db, { symbol: "BOOM" });
    const boom = await send(s, c, { symbol: "BOOM", direction: "CALL", price: 10 });
    await s.worker.runUntilIdle();
    const [first] = await db.query<{ status: string; attempts: number; last_error: string }>(
      "select status, attempts, last_error from pipeline_jobs",
    );
    assert.equal(first.status, "pending");
    assert.equal(first.attempts, 1);
    assert.match(first.last_error, /injected failure/);
    await db.exec("update pipeline_jobs set run_at = now()");
    await s.worker.runUntilIdle();
    const [last] = await db.query<{ status: string; attempts: number }>(
      "select status, attempts from pipeline_jobs",
    );
    assert.deepEqual({ ...last }, { status: "failed", attempts: 2 });
    const errors = await db.query<{ signal_id: string; code: string; stage: string }>(
      "select signal_id, code, stage from processing_errors",
    );
    assert.deepEqual(errors.map((e) => ({ ...e })), [{
      signal_id: boom.signal_id,
      code: "PIPELINE_FAILED",
      stage: "pipeline",
    }]);
    assert.equal(await countRows(db, "decisions"), 0);
    // The failed job no longer blocks its symbol.
    await db.exec("drop trigger test_refuse on decisions");
    c.advance(60_000);
    const next = await send(s, c, { symbol: "BOOM", direction: "PUT", price: 10 });
    await s.worker.runUntilIdle();
    assert.equal((await decisionFor(db, next.signal_id)).outcome, "ENTER");
  },
);

dbTest("a job left running by a dead instance is reclaimed and decided", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c, { JOB_CLAIM_TIMEOUT_SECONDS: "30" });
  const { signal_id } = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
  await db.exec(
    `update pipeline_jobs set status = 'running', locked_by = 'dead-instance', attempts = 1,
       locked_at = now() - interval '5 minutes'`,
  );
  assert.equal(await s.worker.runUntilIdle(), 1);
  assert.equal((await decisionFor(db, signal_id)).outcome, "ENTER");
  const [job] = await db.query<{ status: string; attempts: number }>(
    "select status, attempts from pipeline_jobs",
  );
  assert.deepEqual({ ...job }, { status: "done", attempts: 2 });
});

dbTest(
  "runUntilIdle claims again when a batch finishes while a claim comes back empty",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { WORKER_CONCURRENCY: "2", WORKER_BATCH_SIZE: "1" });
    const first = await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    c.advance(1000);
    const second = await send(s, c, { symbol: "SPY", direction: "flat", price: 101 });
    // The second claim runs while the first job's batch is being decided, so it finds SPY's
    // head running: that batch may not write before the claim is back, and the claim's empty
    // answer is held until the batch has finished.
    let claims = 0;
    const secondClaimBack = Promise.withResolvers<void>();
    const timed = aroundQueries(db, async (text, run) => {
      if (text === WRITE_BATCH_SQL) await secondClaimBack.promise;
      if (text !== CLAIM_JOBS_SQL || ++claims !== 2) return await run();
      const rows = await run();
      secondClaimBack.resolve();
      assert.equal(rows.length, 0, "the second claim found SPY's head running");
      while (worker.active > 0) await delay(5);
      return rows;
    });
    // Only claims use it, and the first runs after this line.
    const worker = workerOn(s, c, { db: timed, workerId: "idle-check" });
    assert.equal(await worker.runUntilIdle(), 2);
    await decisionFor(db, first.signal_id);
    await decisionFor(db, second.signal_id);
  },
);

for (const batch of ["100", "7"]) {
  dbTest(
    `two instances' workers decide every job exactly once, each symbol in receipt order (batches of ${batch})`,
    async ({ db, connectAgain }) => {
      const c = clock();
      // Small batches: claims take a few heads and a few jobs behind them while the other
      // instance's claims race for the rest.
      const env = { WORKER_CONCURRENCY: "4", WORKER_BATCH_SIZE: batch };
      const a = await pipelineServices(db, c, env);
      const b = await pipelineServices(await connectAgain(), c, env);
      const symbols = ["SPY", "QQQ", "IWM", "DIA", "AAPL"];
      const sentOrder = new Map<string, string[]>();
      for (let i = 0; i < 60; i++) {
        const symbol = symbols[i % symbols.length];
        c.advance(1000);
        const r = await send(i % 2 ? a : b, c, {
          symbol,
          direction: i % 3 === 0 ? "flat" : i % 3 === 1 ? "CALL" : "PUT",
          price: 100 + i,
        });
        sentOrder.set(symbol, [...(sentOrder.get(symbol) ?? []), r.signal_id]);
      }
      const decidedOrder = new Map<string, string[]>();
      const record = (symbol: string, id: string) =>
        decidedOrder.set(symbol, [...(decidedOrder.get(symbol) ?? []), id]);
      // Per symbol, decisions commit one after another, so event id order is commit order.
      await Promise.all([a.worker.runUntilIdle(), b.worker.runUntilIdle()]);
      // One pass decides everything: nothing left claimed, failed or pending.
      const left = await db.query<{ status: string; attempts: number; last_error: string | null }>(
        "select status, attempts, last_error from pipeline_jobs where status <> 'done' order by id",
      );
      assert.deepEqual(left.map((j) => ({ ...j })), []);
      const events = await db.query<{ symbol: string; signal_id: string }>(
        `select symbol, payload->>'signal_id' as signal_id from events where kind = 'decision' order by id`,
      );
      for (const e of events) record(e.symbol, e.signal_id);
      assert.equal(await countRows(db, "decisions"), 60);
      const [{ n }] = await db.query<{ n: number }>(
        "select count(distinct signal_id)::integer as n from decisions",
      );
      assert.equal(n, 60);
      for (const symbol of symbols) {
        assert.deepEqual(decidedOrder.get(symbol), sentOrder.get(symbol), symbol);
      }
    },
    { drivers: ["postgres"] },
  );
}

dbTest(
  "within one batch, each decision sees the positions the ones before it opened",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "2", WORKER_BATCH_SIZE: "50" });
    const ids = [];
    for (const symbol of ["SPY", "QQQ", "IWM", "DIA", "AAPL"]) {
      ids.push((await send(s, c, { symbol, direction: "CALL", price: 100 })).signal_id);
    }
    assert.equal(await s.worker.runUntilIdle(), 5);
    const reasons = [];
    for (const id of ids) reasons.push((await decisionFor(db, id)).reason_code);
    assert.deepEqual(reasons, [
      "ENTRY_APPROVED",
      "ENTRY_APPROVED",
      "MAX_POSITIONS",
      "MAX_POSITIONS",
      "MAX_POSITIONS",
    ]);
    assert.equal((await positions(db)).length, 2);
  },
);

dbTest(
  "a job that fails inside a batch does not hold back the rest of the batch",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { JOB_MAX_ATTEMPTS: "1" });
    await refuseDecisionsFor(db, { symbol: "BOOM" });
    const good = await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    await send(s, c, { symbol: "BOOM", direction: "CALL", price: 10 });
    const other = await send(s, c, { symbol: "QQQ", direction: "PUT", price: 100 });
    await s.worker.runUntilIdle();
    assert.equal((await decisionFor(db, good.signal_id)).outcome, "ENTER");
    assert.equal((await decisionFor(db, other.signal_id)).outcome, "ENTER");
    const jobs = await db.query<{ symbol: string; status: string }>(
      "select symbol, status from pipeline_jobs order by id",
    );
    assert.deepEqual(jobs.map((j) => [j.symbol, j.status]), [["SPY", "done"], ["BOOM", "failed"], [
      "QQQ",
      "done",
    ]]);
  },
);

/** A stand-in for the ingest's group commit that stays busy until `quiet()` is called. */
function busyIngest() {
  const waits: number[] = [];
  const quietWaiters = new Set<() => void>();
  let busy = true;
  return {
    waits,
    busy: () => busy,
    whenIdle(maxMs: number): Promise<void> {
      waits.push(maxMs);
      if (!busy) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, maxMs);
        function done() {
          clearTimeout(timer);
          quietWaiters.delete(done);
          resolve();
        }
        quietWaiters.add(done);
      });
    },
    whenNoneWaiting(): Promise<void> {
      return Promise.reject(new Error("only a lagging worker waits for the queue alone"));
    },
    quiet() {
      busy = false;
      for (const done of [...quietWaiters]) done();
    },
  };
}

function workerWith(s: Services, c: Clock, maxDeferMs: number, ingest: IngestActivity) {
  return workerOn(s, c, { config: { ...s.config.worker, maxDeferMs }, ingest });
}

dbTest(
  "a claim waits while webhooks are committing, and claims as soon as they go quiet",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const { signal_id } = await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    const ingest = busyIngest();
    const decided = workerWith(s, c, 60_000, ingest).runUntilIdle();
    // Until the worker reaches its wait (a fixed pause could end first on a slow machine).
    await waitFor("the worker to wait for quiet", () => ingest.waits.length || undefined, 10_000);
    assert.equal(ingest.waits.length, 1);
    assert.ok(ingest.waits[0] > 59_000, `waited at most ${ingest.waits[0]} ms`);
    const [job] = await db.query<{ status: string }>("select status from pipeline_jobs");
    assert.equal(job.status, "pending", "claimed while webhooks were still committing");
    ingest.quiet();
    assert.equal(await decided, 1);
    assert.equal((await decisionFor(db, signal_id)).outcome, "ENTER");
  },
  { drivers: ["pglite"] },
);

dbTest(
  "webhooks that never go quiet delay a claim by WORKER_MAX_DEFER_MS at most; 0 never waits",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    const ingest = busyIngest();
    assert.equal(await workerWith(s, c, 30, ingest).runUntilIdle(), 1);
    assert.ok(ingest.waits.length >= 1 && ingest.waits.every((ms) => ms <= 30), `${ingest.waits}`);

    await send(s, c, { symbol: "QQQ", direction: "CALL", price: 400 });
    const never = busyIngest();
    assert.equal(await workerWith(s, c, 0, never).runUntilIdle(), 1);
    assert.deepEqual(never.waits, []);
  },
  { drivers: ["pglite"] },
);

/**
 * Webhook commits that never stop, though each wait for them ends at once;
 * counts the waits for quiet (`waits`) and for the queue to empty (`queueWaits`).
 */
function endlessIngest() {
  const waits: number[] = [];
  const queueWaits: number[] = [];
  return {
    waits,
    queueWaits,
    busy: () => true,
    whenIdle(maxMs: number): Promise<void> {
      waits.push(maxMs);
      return Promise.resolve();
    },
    whenNoneWaiting(maxMs: number): Promise<void> {
      queueWaits.push(maxMs);
      return Promise.resolve();
    },
  };
}

dbTest(
  "with WORKER_MAX_LAG_MS set, claims wait only for queued webhooks while decisions lag more, until they catch up; 0 is off",
  async ({ db }) => {
    const c = clock();
    // One job per claim, so each signal is a claim of its own.
    const s = await pipelineServices(db, c, { WORKER_BATCH_SIZE: "1" });
    const config = { ...s.config.worker, maxDeferMs: 60_000, maxLagMs: 1000 };

    // Keeping up: every claim (two jobs, then the empty one) gives way first.
    const fresh = endlessIngest();
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await send(s, c, { symbol: "QQQ", direction: "CALL", price: 400 });
    assert.equal(await workerOn(s, c, { config, ingest: fresh }).runUntilIdle(), 2);
    assert.equal(fresh.waits.length, 3);
    assert.equal(fresh.queueWaits.length, 0);

    // Behind: after the first claim finds 5 s old jobs, the next claims wait only for
    // webhooks queued behind the flushes (one finds a job, the last one nothing).
    const behind = endlessIngest();
    const worker = workerOn(s, c, { config, ingest: behind });
    await send(s, c, { symbol: "IWM", direction: "CALL", price: 200 });
    await send(s, c, { symbol: "DIA", direction: "CALL", price: 300 });
    c.advance(5_000);
    assert.equal(await worker.runUntilIdle(), 2);
    assert.equal(behind.waits.length, 1);
    assert.equal(behind.queueWaits.length, 2);

    // Caught up (the last claim found nothing): the same worker gives way again.
    await send(s, c, { symbol: "AAPL", direction: "CALL", price: 150 });
    assert.equal(await worker.runUntilIdle(), 1);
    assert.equal(behind.waits.length, 3);
    assert.equal(behind.queueWaits.length, 2);

    // 0 (the default): off, every claim gives way however far behind.
    const off = endlessIngest();
    const unbounded = workerOn(s, c, { config: { ...config, maxLagMs: 0 }, ingest: off });
    await send(s, c, { symbol: "MSFT", direction: "CALL", price: 300 });
    await send(s, c, { symbol: "NVDA", direction: "CALL", price: 100 });
    c.advance(5_000);
    assert.equal(await unbounded.runUntilIdle(), 2);
    assert.equal(off.waits.length, 3);
    assert.equal(off.queueWaits.length, 0);
    assert.equal(s.config.worker.maxLagMs, 0);
  },
  { drivers: ["pglite"] },
);

dbTest(
  "two workers deciding at once never both pass the position limit: each writes only on the book it decided on",
  async ({ db, connectAgain }) => {
    const c = clock();
    const env = { MAX_OPEN_POSITIONS: "1", WORKER_BATCH_SIZE: "1" };
    const a = await pipelineServices(db, c, env);
    const b = await pipelineServices(await connectAgain(), c, env);
    // A slow write holds the book row a while: a batch decided on the book before it lands inside.
    await db.exec(`
      create function test_slow_decision() returns trigger language plpgsql as $$
      begin perform pg_sleep(0.02); return new; end $$;
      create trigger test_slow_decision before insert on decisions
        for each row execute function test_slow_decision();`);
    const symbols = ["SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "AMZN", "META", "TSLA"];
    for (const symbol of symbols) await send(a, c, { symbol, direction: "CALL", price: 100 });
    // One job per claim: the two workers' decision transactions interleave all the way.
    // (Their sessions are not named after them here, so each may also take over the other's
    // claims as abandoned: a job can be claimed twice, and is still decided once.)
    await Promise.all([a.worker.runUntilIdle(), b.worker.runUntilIdle()]);
    const reasons = await db.query<{ reason_code: string; n: number }>(
      "select reason_code, count(*)::integer as n from decisions group by 1 order by 1",
    );
    assert.deepEqual(reasons.map((r) => [r.reason_code, Number(r.n)]), [
      ["ENTRY_APPROVED", 1],
      ["MAX_POSITIONS", symbols.length - 1],
    ]);
    assert.equal((await positions(db)).length, 1);
  },
  { drivers: ["postgres"] },
);
