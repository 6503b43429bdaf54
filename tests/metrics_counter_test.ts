/**
 * /metrics' running totals (db/metrics.ts createSignalCounter): after any
 * mix of webhooks, decisions and reads, concurrent or failed, they equal a
 * full recount of the tables, on both drivers.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { countSlices, createSignalCounter, type SignalCounts } from "../db/metrics.ts";
import type { Queryable } from "../db/port.ts";
import { dbTest, insertSignalsSql } from "./_db.ts";
import { clock, pipelineServices, pushChain, pushContext, send } from "./_pipeline.ts";

/** The counts taken the plain way, every table read whole: the oracle, independent of the counter. */
async function signalCounts(db: Queryable): Promise<SignalCounts> {
  const [totals] = await db.query<Record<string, number>>(
    `select (select count(*) from signals)::integer as total,
            (select count(*) from pipeline_jobs where status in ('pending', 'running'))::integer as pending,
            (select count(*) from pipeline_jobs where status = 'failed')::integer as failed`,
  );
  const outcomes = await db.query<{ outcome: string; reason_code: string; n: number }>(
    `select outcome, reason_code, count(*)::integer as n from decisions group by outcome, reason_code`,
  );
  const refusals = await db.query<{ code: string; n: number }>(
    `select code, count(*)::integer as n from processing_errors where stage = 'ingest' group by code`,
  );
  const decisionsByOutcome: Record<string, number> = { ENTER: 0, EXIT: 0, REJECT: 0 };
  const rejectionsByReason: Record<string, number> = {};
  for (const o of outcomes) {
    decisionsByOutcome[o.outcome] += Number(o.n);
    if (o.outcome === "REJECT") rejectionsByReason[o.reason_code] = Number(o.n);
  }
  return {
    total: Number(totals.total),
    accepted: decisionsByOutcome.ENTER + decisionsByOutcome.EXIT,
    rejected: decisionsByOutcome.REJECT,
    pending: Number(totals.pending),
    failed: Number(totals.failed),
    decisionsByOutcome,
    rejectionsByReason,
    refusalsByCode: Object.fromEntries(refusals.map((r) => [r.code, Number(r.n)])),
  };
}

dbTest(
  "running totals equal a full recount after webhooks, decisions and reads interleave",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    const counter = createSignalCounter(db);
    const empty = await counter.read();
    assert.equal(empty.total, 0);
    assert.deepEqual(empty, await signalCounts(db));

    // SPY opens (ENTER) and later closes (EXIT); QQQ's exits have nothing to close (REJECT).
    const qqqExit = { symbol: "QQQ", direction: "CALL", action: "EXIT", price: 400 };
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
    await send(s, c, qqqExit);
    const undecided = await counter.read();
    assert.equal(undecided.total, 2);
    assert.equal(undecided.pending, 2);
    assert.deepEqual(undecided, await signalCounts(db));

    assert.equal(await s.worker.runUntilIdle(), 2);
    c.advance(60_000);
    await send(s, c, { symbol: "SPY", direction: "CALL", action: "EXIT", price: 505 });
    await send(s, c, qqqExit);
    const half = await counter.read();
    assert.deepEqual(half, await signalCounts(db));
    assert.equal(half.total, 4);
    assert.equal(half.pending, 2);
    assert.deepEqual(half.decisionsByOutcome, { ENTER: 1, EXIT: 0, REJECT: 1 });

    await s.worker.runUntilIdle();
    // Reads at once take turns: each sees every row, none counts one twice.
    const together = await Promise.all(Array.from({ length: 5 }, () => counter.read()));
    const recount = await signalCounts(db);
    assert.equal(recount.total, 4);
    assert.deepEqual(recount.decisionsByOutcome, { ENTER: 1, EXIT: 1, REJECT: 2 });
    assert.equal(recount.rejected, 2);
    for (const counts of together) assert.deepEqual(counts, recount);

    // And through the app: /metrics/signals reads its own running totals.
    for (let i = 0; i < 2; i++) {
      const body = await (await s.app.request("/metrics/signals")).json();
      assert.equal(body.totalSignals, 4);
      assert.deepEqual(body.decisionsByOutcome, recount.decisionsByOutcome);
      assert.deepEqual(body.rejectionsByReason, recount.rejectionsByReason);
    }
  },
);

dbTest("a read that fails half-way counts nothing twice afterwards", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  await send(s, c, { symbol: "SPY", direction: "CALL", price: 500 });
  await s.worker.runUntilIdle();
  let failDecisions = false;
  const flaky: Queryable = {
    query(text, params) {
      if (failDecisions && text.includes("from decisions")) {
        return Promise.reject(new Error("injected failure"));
      }
      return db.query(text, params);
    },
    exec: (script) => db.exec(script),
  };
  const counter = createSignalCounter(flaky);
  assert.equal((await counter.read()).total, 1);
  await send(s, c, { symbol: "QQQ", direction: "CALL", action: "EXIT", price: 400 });
  await s.worker.runUntilIdle();
  failDecisions = true;
  await assert.rejects(counter.read(), /injected failure/);
  failDecisions = false;
  assert.deepEqual(await counter.read(), await signalCounts(db));
  const after = await counter.read();
  assert.equal(after.total, 2);
  assert.equal(after.decisionsByOutcome.ENTER + after.decisionsByOutcome.REJECT, 2);
});

dbTest(
  "a first read counts a long history in slices of seq, and equals a full recount",
  async ({ db }) => {
    // 2,500 signals, 2,000 of them decided, in the shapes the webhook and the worker write.
    await db.exec(`
      with s as (${insertSignalsSql(2500)})
      insert into decisions (signal_id, outcome, reason_code, message)
      select id, case when seq % 3 = 0 then 'ENTER' else 'REJECT' end,
        case when seq % 3 = 0 then 'ENTRY_APPROVED' else 'MARKET_CLOSED' end, 'm'
      from s where seq <= 2000;`);
    const ranges: { sql: string; from: bigint; to: bigint }[] = [];
    const recording: Queryable = {
      query(text, params) {
        if (/ from (signals|decisions) where seq > /.test(text)) {
          const [from, to] = params as string[];
          ranges.push({ sql: text, from: BigInt(from), to: BigInt(to) });
        }
        return db.query(text, params);
      },
      exec: (script) => db.exec(script),
    };
    const counter = createSignalCounter(recording, { slice: 1000 });
    assert.deepEqual(await counter.read(), await signalCounts(db));
    // No statement counted more than a slice: PGlite's one thread is free between them.
    assert.ok(ranges.every((r) => r.to - r.from <= 1000n), JSON.stringify(ranges, replacer));
    assert.equal(ranges.filter((r) => r.sql.includes("from signals")).length, 3);
    assert.equal(ranges.filter((r) => r.sql.includes("from decisions")).length, 2);
    // Caught up: the next read counts only what came after.
    ranges.length = 0;
    assert.deepEqual(await counter.read(), await signalCounts(db));
    assert.deepEqual(ranges, []);
  },
);

function replacer(_key: string, value: unknown) {
  return typeof value === "bigint" ? String(value) : value;
}

Deno.test("countSlices() covers (after, newest] in contiguous slices of at most `slice`", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: 10n ** 12n }),
      fc.bigInt({ min: 0n, max: 100_000n }),
      fc.integer({ min: 1, max: 5_000 }),
      (after, ahead, slice) => {
        const newest = after + ahead;
        const s = countSlices(String(after), String(newest), slice);
        let at = after;
        for (const [from, to] of s) {
          assert.equal(BigInt(from), at);
          assert.ok(BigInt(to) > at && BigInt(to) - at <= BigInt(slice));
          at = BigInt(to);
        }
        assert.equal(at, newest);
        assert.deepEqual(countSlices(String(after), null, slice), []);
      },
    ),
    { numRuns: 200 },
  );
});
