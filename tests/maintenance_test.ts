/** Housekeeping: expired dedup keys and old events go; everything live stays. */
import assert from "node:assert/strict";
import { runMaintenance, VACUUMED_TABLES } from "../db/maintenance.ts";
import { countRows, signed, testServices, uniqueSignal } from "./_app.ts";
import { cpSync } from "node:fs";
import { openPglite } from "../db/pglite.ts";
import type { Database } from "../db/port.ts";
import { dbTest, insertSignalsSql, pgliteTemplate } from "./_db.ts";

dbTest(
  "maintenance deletes dedup keys long expired, events and refusals past retention, nothing else",
  async ({ db }) => {
    const s = await testServices(db);
    for (let i = 0; i < 3; i++) {
      await s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal())));
    }
    // One key expired two hours ago, one event ten days old.
    await db.exec(`
    update signal_dedup set expires_at = now() - interval '2 hours'
      where dedup_key = (select dedup_key from signal_dedup order by dedup_key limit 1);
    update events set created_at = now() - interval '10 days'
      where id = (select min(id) from events);`);
    // Two refusals and a give-up of the pipeline, all 31 days old, and a fresh refusal.
    await db.exec(`
    insert into processing_errors (stage, code, message, created_at) values
      ('ingest', 'UNAUTHORIZED', 'old', now() - interval '31 days'),
      ('ingest', 'DUPLICATE', 'old', now() - interval '31 days'),
      ('decide', 'PIPELINE_FAILED', 'old', now() - interval '31 days'),
      ('ingest', 'UNAUTHORIZED', 'new', now());`);
    const steps: string[] = [];
    const r = await runMaintenance(db, {
      eventsRetentionDays: 7,
      refusalsRetentionDays: 30,
      beforeStep: () => {
        steps.push("step");
        return Promise.resolve();
      },
    });
    assert.equal(r.dedupKeysDeleted, 1);
    assert.equal(r.eventsDeleted, 1);
    assert.equal(r.refusalsDeleted, 2);
    const left = await db.query<{ stage: string; message: string }>(
      "select stage, message from processing_errors order by id",
    );
    assert.deepEqual(left, [
      { stage: "decide", message: "old" },
      { stage: "ingest", message: "new" },
    ]);
    assert.equal(r.vacuumed, db.driver === "pglite");
    // On PGlite, each table's vacuum and each analyze (of the tables with rows and no
    // statistics yet, here) is a statement of its own, each after the yield, and so is the
    // summary of the signals' new page ranges.
    if (db.driver === "pglite") {
      assert.deepEqual(r.analyzed.sort(), ["events", "pipeline_jobs", "signal_dedup", "signals"]);
      assert.equal(steps.length, VACUUMED_TABLES.length + r.analyzed.length + 1);
    } else {
      assert.deepEqual(steps, []);
    }
    assert.equal(await countRows(db, "signal_dedup"), 2);
    assert.equal(await countRows(db, "events"), 2);
    assert.equal(await countRows(db, "signals"), 3);
  },
);

dbTest(
  "PGlite maintenance analyzes a table again only once enough of it changed",
  async ({ db }) => {
    const analyzeCounts = async () =>
      Object.fromEntries(
        (await db.query<{ relname: string; n: number }>(
          `select relname, analyze_count::integer as n from pg_stat_user_tables
           where relname = any ($1::text[])`,
          [VACUUMED_TABLES],
        )).map((r) => [r.relname, Number(r.n)]),
      );
    const run = () => runMaintenance(db, { eventsRetentionDays: 7, refusalsRetentionDays: 30 });
    // Never analyzed: every table with rows is; an empty one has nothing to sample.
    await db.exec(`
      with s as (${insertSignalsSql(100, { prefix: "first" })})
      insert into pipeline_jobs (signal_id, symbol) select id, symbol from s;`);
    assert.deepEqual((await run()).analyzed, ["pipeline_jobs", "signals"]);
    const first = await analyzeCounts();
    // Nothing changed: an analyze would sample the same pages again (up to 30,000 of them, the
    // most of a step that webhooks wait behind on PGlite's one thread), for the same statistics.
    assert.deepEqual((await run()).analyzed, []);
    assert.deepEqual(await analyzeCounts(), first);
    // 500 new jobs and their signals (more than 50 + 10 % of the 100 there): those two tables
    // are analyzed, only they.
    await db.exec(`
      with s as (${insertSignalsSql(500)})
      insert into pipeline_jobs (signal_id, symbol) select id, symbol from s;`);
    assert.deepEqual((await run()).analyzed, ["pipeline_jobs", "signals"]);
    const third = await analyzeCounts();
    assert.equal(third.pipeline_jobs, first.pipeline_jobs + 1);
    assert.equal(third.decisions, first.decisions);
  },
  { drivers: ["pglite"] },
);

dbTest(
  "maintenance adds new signals' page ranges to the time filters' index, once",
  async ({ db }) => {
    const run = () => runMaintenance(db, { eventsRetentionDays: 7, refusalsRetentionDays: 30 });
    assert.equal((await run()).rangesSummarized, 0);
    // Some 600 pages of signals, none summarized yet: every full range of 128 pages is (the
    // last one, still filling, is read by every query until it is full).
    await db.exec(insertSignalsSql(40_000));
    const [{ pages }] = await db.query<{ pages: number }>(
      "select (pg_relation_size('signals') / current_setting('block_size')::integer)::integer as pages",
    );
    const first = await run();
    assert.equal(first.rangesSummarized, Math.floor(Number(pages) / 128));
    assert.equal((await run()).rangesSummarized, 0);
  },
);

Deno.test({
  name:
    "[pglite] after a restart, maintenance analyzes only tables that changed, not every table again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // PGlite's activity statistics (when a table was last analyzed) live in memory and are gone
    // after a restart; the statistics an analyze leaves are on disk.
    const dir = `${await pgliteTemplate()}-restart-${crypto.randomUUID()}`;
    cpSync(await pgliteTemplate(), dir, { recursive: true });
    const run = (db: Database) =>
      runMaintenance(db, { eventsRetentionDays: 7, refusalsRetentionDays: 30 });
    try {
      let db = await openPglite(dir, { thread: "main" });
      await db.exec(`
        with s as (${insertSignalsSql(2_000)})
        insert into pipeline_jobs (signal_id, symbol) select id, symbol from s;`);
      await run(db);
      assert.deepEqual((await run(db)).analyzed, []);
      await db.close();
      db = await openPglite(dir, { thread: "main" });
      assert.deepEqual((await run(db)).analyzed, [], "analyzed again after the restart");
      // Changes after the restart still count.
      await db.exec(`
        with s as (${insertSignalsSql(2_000, { prefix: "after" })})
        insert into pipeline_jobs (signal_id, symbol) select id, symbol from s;`);
      assert.deepEqual((await run(db)).analyzed, ["pipeline_jobs", "signals"]);
      await db.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
