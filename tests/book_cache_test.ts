/**
 * The book the worker keeps between batches (db/decisions.ts): read once,
 * then updated from its own writes, and written against only while
 * `book_version` says no one else changed positions since. A change made
 * elsewhere (another instance, an operator's hand edit) makes the next batch
 * read the book again and decide again; it is never decided on the old one.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { COMPLETE_TIMINGS_SQL, newBookCache, WRITE_BATCH_SQL } from "../db/decisions.ts";
import { CLAIM_JOBS_SQL } from "../db/jobs.ts";
import { byOpening, insertByOpening, readOpenBook } from "../db/positions.ts";
import type { OpenPosition } from "../core/book.ts";
import type { Services } from "../compose.ts";
import type { Database } from "../db/port.ts";
import { countRows } from "./_app.ts";
import { aroundQueries, dbTest } from "./_db.ts";
import { delay, waitFor } from "./_service.ts";
import { clock, decisionFor, pipelineServices, send, workerOn } from "./_pipeline.ts";

dbTest(
  "a position closed by hand frees its slot for the next decision: the kept book is read again",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "1" });
    const book = newBookCache();
    const worker = workerOn(s, c, { book });
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    assert.equal(await worker.runUntilIdle(), 1);
    assert.equal(book.open.length, 1);
    await db.exec(`update positions set is_closed = true, closed_at = now(), exit_price = 101,
      realized_pnl = 10, exit_signal_id = entry_signal_id`);
    const next = await send(s, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    await worker.runUntilIdle();
    assert.equal((await decisionFor(db, next.signal_id)).reason_code, "ENTRY_APPROVED");
    assert.equal(book.retries, 1, "the first write found the book changed and decided again");
    assert.deepEqual(book.open.map((p) => p.symbol), ["QQQ"]);
  },
);

/** This instance's book counters, from /metrics as JSON and as Prometheus text. */
async function bookCounters(s: Services) {
  const json = await (await s.app.request("/metrics")).json();
  const text = await (await s.app.request("/metrics/prometheus")).text();
  const value = (name: string) =>
    text.split("\n").find((l) => l.startsWith(`optionstrat_${name}{scope="instance"} `))?.split(
      " ",
    )[1];
  return {
    json: { conflicts: json.worker.bookConflicts, locks: json.worker.bookLocks },
    prometheus: {
      conflicts: value("book_conflicts_total"),
      locks: value("book_locked_writes_total"),
    },
  };
}

dbTest(
  "/metrics reports this instance's book conflicts: batches decided again after a change elsewhere",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "1" });
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    await s.worker.runUntilIdle();
    assert.deepEqual(await bookCounters(s), {
      json: { conflicts: 0, locks: 0 },
      prometheus: { conflicts: "0", locks: "0" },
    });
    await db.exec(`update positions set is_closed = true, closed_at = now(), exit_price = 101,
      realized_pnl = 10, exit_signal_id = entry_signal_id`);
    await send(s, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    await s.worker.runUntilIdle();
    // One loss, then written on the next optimistic try: no lock taken.
    assert.deepEqual(await bookCounters(s), {
      json: { conflicts: 1, locks: 0 },
      prometheus: { conflicts: "1", locks: "0" },
    });
  },
);

dbTest(
  "a position another instance opened counts against the limit at once",
  async ({ db }) => {
    const c = clock();
    const env = { MAX_OPEN_POSITIONS: "2" };
    const a = await pipelineServices(db, c, env);
    const b = await pipelineServices(db, c, env);
    const bookA = newBookCache();
    const workerA = workerOn(a, c, { book: bookA, workerId: "worker-a" });
    const workerB = workerOn(b, c, { workerId: "worker-b" });
    await send(a, c, { symbol: "SPY", direction: "CALL", price: 100 });
    await workerA.runUntilIdle();
    await send(b, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    await workerB.runUntilIdle();
    // A keeps a book with one position; the table has two.
    assert.equal(bookA.open.length, 1);
    const third = await send(a, c, { symbol: "IWM", direction: "CALL", price: 100 });
    await workerA.runUntilIdle();
    assert.equal((await decisionFor(db, third.signal_id)).reason_code, "MAX_POSITIONS");
    assert.equal(bookA.retries, 1);
    assert.deepEqual(bookA.open.map((p) => p.symbol).sort(), ["QQQ", "SPY"]);
  },
);

/**
 * A release before book_version (3ec25f7) decided under advisory lock 727002, held from its
 * read of the book to its commit. During a rolling deploy or a rollback it shares the database
 * with this one. Postgres only: no second process can open an embedded database.
 */
dbTest(
  "a batch is not written between an older release's read of the book and its write",
  async ({ db, connectAgain }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "1" });
    const spy = await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    const qqq = await send(s, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    const old = await connectAgain({ max: 1 });
    let run: Promise<number> | undefined;
    // The older release deciding SPY: its lock, its job taken, the book read (nothing open) ...
    await old.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock(727002)");
      await tx.query("update pipeline_jobs set status = 'done' where signal_id = $1::uuid", [
        spy.signal_id,
      ]);
      const [{ n }] = await tx.query<{ n: number }>(
        "select count(*)::integer as n from positions where not is_closed",
      );
      assert.equal(n, 0);
      // ... while this release decides QQQ, until its write has ended or waits for that lock.
      run = workerOn(s, c).runUntilIdle();
      let ended = false;
      run.then(() => ended = true, () => ended = true);
      await waitFor("the batch's write to end or to wait for the older release", async () => {
        if (ended) return true;
        const [{ waiting }] = await db.query<{ waiting: number }>(
          `select count(*)::integer as waiting from pg_locks
           where locktype = 'advisory' and objid = 727002 and not granted`,
        );
        return waiting > 0 ? true : undefined;
      }, 30_000);
      // ... then it opens SPY on the book it read and commits.
      await tx.query(
        `insert into positions (symbol, direction, quantity, entry_price, entry_signal_id, opened_at)
         values ('SPY', 'CALL', 50, 100, $1::uuid, now())`,
        [spy.signal_id],
      );
    });
    await run;
    assert.equal((await decisionFor(db, qqq.signal_id)).reason_code, "MAX_POSITIONS");
    assert.equal(await countRows(db, "positions"), 1);
  },
  { drivers: ["postgres"] },
);

dbTest(
  "a batch that keeps losing the book to another writer takes the book's lock and is written",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    await send(s, c, { symbol: "DIA", direction: "CALL", price: 100 });
    await s.worker.runUntilIdle();
    // Every read of the book outside a transaction is followed by another writer's change
    // to positions (an operator's edit), committed before the batch can write.
    let readsOutside = 0;
    let contending = true;
    const contended = aroundQueries(db, async (text, run) => {
      const rows = await run();
      if (text.includes("from book_version v")) {
        readsOutside++;
        if (contending) {
          await db.exec("update positions set updated_at = now() where symbol = 'DIA'");
        }
      }
      return rows;
    });
    // A second instance on the contended connection, with its own worker and /metrics.
    const other = await pipelineServices(contended, c, { MAX_OPEN_POSITIONS: "2" });
    const { signal_id } = await send(other, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    assert.equal(await other.worker.runUntilIdle(), 1);
    assert.equal((await decisionFor(db, signal_id)).reason_code, "ENTRY_APPROVED");
    assert.equal(readsOutside, 3, "three tries on a book read without its lock");
    assert.deepEqual(await bookCounters(other), {
      json: { conflicts: 3, locks: 1 },
      prometheus: { conflicts: "3", locks: "1" },
    });
    // The book it wrote under the lock is kept: the next batch decides on it without a read.
    contending = false;
    const third = await send(other, c, { symbol: "IWM", direction: "CALL", price: 100 });
    assert.equal(await other.worker.runUntilIdle(), 1);
    assert.equal((await decisionFor(db, third.signal_id)).reason_code, "MAX_POSITIONS");
    assert.equal(readsOutside, 3, "no read of the book after the locked write");
    const jobs = await db.query<{ status: string; attempts: number }>(
      "select status, attempts from pipeline_jobs order by id",
    );
    assert.deepEqual(jobs.map((j) => ({ ...j })), [
      { status: "done", attempts: 1 },
      { status: "done", attempts: 1 },
      { status: "done", attempts: 1 },
    ]);
    assert.equal(await countRows(db, "processing_errors"), 0);
  },
);

/**
 * One free position slot, an entry for each of `symbols` received 1 ms apart,
 * and workers that decide one job per batch, `concurrency` batches at once.
 */
async function raceForOneSlot(db: Database, symbols: string[], concurrency: number) {
  const c = clock();
  const s = await pipelineServices(db, c, {
    MAX_OPEN_POSITIONS: "1",
    WORKER_CONCURRENCY: String(concurrency),
    WORKER_BATCH_SIZE: "1",
  });
  const ids: string[] = [];
  for (const symbol of symbols) {
    c.advance(1);
    ids.push((await send(s, c, { symbol, direction: "CALL", price: 100 })).signal_id);
  }
  return { s, c, ids };
}

/** `s`'s market data with SPY's lookups 300 ms slow (a provider's fetch); `before` runs first. */
function slowSpy(s: Services, before: (symbol: string) => void = () => {}) {
  return {
    ...s.context,
    get: async (symbol: string) => {
      before(symbol);
      if (symbol === "SPY") await delay(300);
      return await s.context.get(symbol);
    },
  };
}

dbTest(
  "an instance's batches decided at once take turns on its book: none is decided again",
  async ({ db }) => {
    const { s, c, ids: [first, second] } = await raceForOneSlot(db, ["SPY", "QQQ"], 2);
    // The first batch's write is held until the second batch is claimed and has had time to
    // be decided and written: taking turns, it waits for the first; otherwise it goes ahead.
    let claims = 0;
    let writes = 0;
    const secondClaimed = Promise.withResolvers<void>();
    const secondWrite = Promise.withResolvers<void>();
    const held = aroundQueries(db, async (text, run) => {
      if (text === CLAIM_JOBS_SQL && ++claims === 2) secondClaimed.resolve();
      if (text === WRITE_BATCH_SQL && ++writes === 1) {
        await secondClaimed.promise;
        await Promise.race([secondWrite.promise, delay(300)]);
      } else if (text === WRITE_BATCH_SQL && writes === 2) {
        secondWrite.resolve();
      }
      return await run();
    });
    const book = newBookCache();
    const worker = workerOn(s, c, { db: held, book });
    assert.equal(await worker.runUntilIdle(), 2);
    assert.ok(claims >= 2, "the second batch was claimed while the first was being written");
    // The second was decided on the book the first batch's write left: the slot was taken.
    assert.equal((await decisionFor(db, first)).reason_code, "ENTRY_APPROVED");
    const later = await decisionFor(db, second);
    assert.equal(later.reason_code, "MAX_POSITIONS");
    assert.deepEqual({ retries: book.retries, locked: book.locked }, { retries: 0, locked: 0 });
    // Its wait for the first batch's write is its book stage: most of the 300 ms hold (going
    // ahead it would be about 0), less whatever a slow machine spent before it began waiting
    // (a run saw 249.2 ms against a bound of 250).
    assert.ok((later.timings as { book_ms: number }).book_ms >= 150, JSON.stringify(later.timings));
  },
);

dbTest(
  "an instance's batches are decided in claim order, whichever finished its lookups first",
  async ({ db }) => {
    const { s, c, ids: [first, second] } = await raceForOneSlot(db, ["SPY", "QQQ"], 2);
    // The first batch's market data comes slowly, the second's at once.
    const worker = workerOn(s, c, { context: slowSpy(s) });
    assert.equal(await worker.runUntilIdle(), 2);
    assert.equal((await decisionFor(db, first)).reason_code, "ENTRY_APPROVED");
    const later = await decisionFor(db, second);
    assert.equal(later.reason_code, "MAX_POSITIONS");
    // It waited for the first batch, lookups and write: its book stage.
    assert.ok((later.timings as { book_ms: number }).book_ms >= 250, JSON.stringify(later.timings));
  },
);

dbTest(
  "a batch looks up its symbols at once and decides them in claim order; one symbol's jobs in turn",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "1" });
    const ids: string[] = [];
    // SPY first (its lookups slowest), then QQQ, IWM and DIA, then SPY's exit: one batch.
    for (const symbol of ["SPY", "QQQ", "IWM", "DIA"]) {
      c.advance(1);
      ids.push((await send(s, c, { symbol, direction: "CALL", price: 100 })).signal_id);
    }
    c.advance(1);
    const exit = (await send(s, c, { symbol: "SPY", direction: "EXIT", price: 101 })).signal_id;
    let inFlight = 0;
    let most = 0;
    const spyLookups: string[] = [];
    const context = {
      ...s.context,
      get: async (symbol: string) => {
        most = Math.max(most, ++inFlight);
        if (symbol === "SPY") spyLookups.push(`start ${spyLookups.length}`);
        try {
          await delay(symbol === "SPY" ? 300 : 100);
          return await s.context.get(symbol);
        } finally {
          inFlight--;
          if (symbol === "SPY") spyLookups.push("end");
        }
      },
    };
    const worker = workerOn(s, c, { context });
    assert.equal(await worker.runUntilIdle(), 5);
    assert.equal(most, 4, "the four symbols' lookups did not overlap");
    assert.deepEqual(spyLookups, ["start 0", "end", "start 2", "end"], "SPY's two overlapped");
    assert.equal((await decisionFor(db, ids[0])).reason_code, "ENTRY_APPROVED");
    for (const id of ids.slice(1)) {
      assert.equal((await decisionFor(db, id)).reason_code, "MAX_POSITIONS");
    }
    assert.equal((await decisionFor(db, exit)).outcome, "EXIT");
  },
);

dbTest(
  "a batch that has nothing to decide does not let the next one overtake those before it",
  async ({ db }) => {
    const { s, c, ids: [first, , third] } = await raceForOneSlot(db, ["SPY", "QQQ", "IWM"], 3);
    // SPY's market data comes slowly; QQQ's lookup fails once, so its batch ends at once.
    let qqqFailed = false;
    const context = slowSpy(s, (symbol) => {
      if (symbol === "QQQ" && !qqqFailed) {
        qqqFailed = true;
        throw new Error("provider down");
      }
    });
    const worker = workerOn(s, c, { context });
    await worker.runUntilIdle();
    assert.ok(qqqFailed);
    assert.equal((await decisionFor(db, first)).reason_code, "ENTRY_APPROVED");
    assert.equal((await decisionFor(db, third)).reason_code, "MAX_POSITIONS");
  },
);

dbTest(
  "the next batch's turn comes once a batch has written, not after its timings are stored",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { WORKER_CONCURRENCY: "2", WORKER_BATCH_SIZE: "1" });
    await send(s, c, { symbol: "SPY", direction: "CALL", price: 100 });
    c.advance(1);
    await send(s, c, { symbol: "QQQ", direction: "CALL", price: 100 });
    // The first batch's timings wait for the second batch's write, for 2 s at most.
    let writes = 0;
    let timingUpdates = 0;
    const secondWrite = Promise.withResolvers<void>();
    let timedOut = false;
    const held = aroundQueries(db, async (text, run) => {
      if (text === WRITE_BATCH_SQL && ++writes === 2) secondWrite.resolve();
      if (text === COMPLETE_TIMINGS_SQL && ++timingUpdates === 1) {
        await Promise.race([secondWrite.promise, delay(2000).then(() => (timedOut = true))]);
      }
      return await run();
    });
    const worker = workerOn(s, c, { db: held });
    assert.equal(await worker.runUntilIdle(), 2);
    assert.equal(timedOut, false, "the second batch wrote while the first's timings waited");
    assert.equal(writes, 2);
  },
);

Deno.test("insertByOpening places new positions exactly where sorting the whole book would", () => {
  // Few distinct instants, so ties fall to the ids, as same-millisecond receipts do.
  const position = fc.record({
    id: fc.uuid(),
    openedAt: fc.integer({ min: 0, max: 5 }).map((s) =>
      new Date(Date.UTC(2026, 10, 30, 15, 0, s)).toISOString()
    ),
  }).map((p): OpenPosition => ({
    ...p,
    symbol: "SPY",
    direction: "CALL",
    quantity: 1,
    entryPrice: 100,
    entrySignalId: p.id,
    entrySignalTime: p.openedAt,
  }));
  fc.assert(
    fc.property(
      fc.uniqueArray(position, { selector: (p) => p.id, maxLength: 30 }),
      fc.nat(30),
      (positions, split) => {
        const before = positions.slice(0, split).sort(byOpening);
        const added = positions.slice(split);
        assert.deepEqual(insertByOpening(before, added), [...positions].sort(byOpening));
      },
    ),
    { numRuns: 300 },
  );
});

dbTest(
  "after any run of entries and exits, the kept book is exactly the stored one, in its order",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { MAX_OPEN_POSITIONS: "6", WORKER_BATCH_SIZE: "4" });
    const book = newBookCache();
    const worker = workerOn(s, c, { book });
    const symbols = ["SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "TSLA"];
    const alert = fc.record({
      symbol: fc.constantFrom(...symbols),
      direction: fc.constantFrom("CALL", "PUT"),
      action: fc.constantFrom("ENTRY", "ENTRY", "EXIT"),
      price: fc.integer({ min: 50, max: 500 }),
      // Same-millisecond receipts make the order fall to the position ids.
      sameInstant: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(alert, { minLength: 1, maxLength: 8 }), async (alerts) => {
        for (const a of alerts) {
          if (!a.sameInstant) c.advance(1);
          await send(s, c, {
            symbol: a.symbol,
            direction: a.direction,
            action: a.action,
            price: a.price,
            // Its own alert id: no alert is a duplicate of an earlier one at the same instant.
            id: crypto.randomUUID(),
          });
        }
        await worker.runUntilIdle();
        const stored = await readOpenBook(db);
        assert.equal(book.writer, stored.writer);
        assert.deepEqual(book.open, stored.open);
      }),
      { numRuns: 100 },
    );
    assert.equal(book.retries, 0, "one worker never finds its own book changed");
  },
);

dbTest(
  "the batch write is planned at every run: a kept plan from a small table would scan it whole later",
  async ({ connectAgain }) => {
    // One connection, so its prepared statements are the ones this session lists.
    const db = await connectAgain({ max: 1 });
    const c = clock();
    const s = await pipelineServices(db, c, { WORKER_BATCH_SIZE: "1" });
    // Past the five runs after which Postgres may keep a generic plan.
    for (const symbol of ["SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "TSLA"]) {
      await send(s, c, { symbol, direction: "CALL", price: 100 });
    }
    assert.equal(await s.worker.runUntilIdle(), 8);
    const kept = await db.query<{ statement: string }>(
      "select statement from pg_prepared_statements",
    );
    assert.ok(kept.some((k) => k.statement === CLAIM_JOBS_SQL), "control: the claim is kept");
    assert.ok(!kept.some((k) => k.statement === WRITE_BATCH_SQL));
  },
  { drivers: ["postgres"] },
);
