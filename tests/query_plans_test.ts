/**
 * The statements of the hot path find their rows by primary key, however big
 * the tables and however stale their statistics (a burst builds a backlog in
 * seconds; autovacuum analyzes far less often). The planner guesses 100 rows
 * for jsonb_to_recordset, and trusts statistics taken before the backlog:
 * written plainly, these statements read a whole growing table, or every
 * pending or active job, for each batch. Each case first runs the plain form
 * as a control, to show the fixture makes the planner choose that scan.
 */
import assert from "node:assert/strict";
import { COMPLETE_TIMINGS_SQL, completeTimings, WRITE_BATCH_SQL } from "../db/decisions.ts";
import { REPLAN_AFTER_MS } from "../db/pglite_statements.ts";
import type { Queryable } from "../db/port.ts";
import { CLAIM_JOBS_SQL, QUEUE_DEPTH_SQL } from "../db/jobs.ts";
import { DECISIONS_SINCE_SQL, SIGNALS_SINCE_SQL } from "../db/metrics.ts";
import { RECORD_DUPLICATES_SQL } from "../db/signals.ts";
import { LATEST_CURSOR_SQL, READ_EVENTS_SQL } from "../db/events.ts";
import { MARKET_DATA_FRESHNESS_SQL } from "../db/market_data.ts";
import { runMaintenance } from "../db/maintenance.ts";
import { listSignals, type PageQuery, SIGNAL_POSITIONS_SQL } from "../db/read.ts";
import { dbTest, insertSignalsSql } from "./_db.ts";

const ROWS = 5_000;

/** `count` signals, dedup keys `<prefix>-1`.., each with a decision; nothing analyzed. */
async function insertDecided(db: Queryable, prefix: string, count: number): Promise<void> {
  await db.exec(`
    with s as (${insertSignalsSql(count, { prefix, symbols: 200 })})
    insert into decisions (signal_id, outcome, reason_code, message, timings)
    select id, 'REJECT', 'MARKET_CLOSED', 'closed', '{"queue_ms": 1}' from s;`);
}

async function seed(db: Queryable): Promise<void> {
  await insertDecided(db, "key", ROWS);
  await db.exec(`
    insert into signal_dedup (dedup_key, signal_id, expires_at)
    select dedup_key, id, now() + interval '1 day' from signals;
    analyze signals; analyze decisions; analyze signal_dedup;`);
}

type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };

async function planNodes(db: Queryable, sql: string, params: unknown[]): Promise<PlanNode[]> {
  const [row] = await db.query<Record<string, unknown>>(`explain (format json) ${sql}`, params);
  const plan = Object.values(row)[0];
  const json = typeof plan === "string" ? JSON.parse(plan) : plan;
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode) => {
    nodes.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(json[0].Plan);
  return nodes;
}

/** The tables the plan reads from start to end with a sequential scan. */
async function seqScanned(db: Queryable, sql: string, params: unknown[]): Promise<string[]> {
  return (await planNodes(db, sql, params))
    .filter((n) => n["Node Type"] === "Seq Scan")
    .map((n) => String(n["Relation Name"]));
}

/** The indexes the plan reads, in plan order. */
async function indexesUsed(db: Queryable, sql: string, params: unknown[]): Promise<string[]> {
  return (await planNodes(db, sql, params))
    .filter((n) => n["Index Name"] !== undefined)
    .map((n) => String(n["Index Name"]));
}

dbTest("a batch's final timings are written through the decisions index", async ({ db }) => {
  await seed(db);
  const ids = await db.query<{ id: string }>("select id from decisions limit 12");
  const param = JSON.stringify(ids.map((r) => ({ id: r.id, timings: { end_to_end_ms: 5 } })));
  const plainJoin = `update decisions d set timings = d.timings || x.timings
    from jsonb_to_recordset($1::text::jsonb) as x(id uuid, timings jsonb) where d.id = x.id`;
  assert.deepEqual(await seqScanned(db, plainJoin, [param]), ["decisions"], "control");
  assert.deepEqual(await seqScanned(db, COMPLETE_TIMINGS_SQL, [param]), []);
});

dbTest(
  "the final timings' plan follows the decisions table as it grows, unanalyzed",
  async ({ db }) => {
    // A fresh database: the statement's first runs see three decisions, and a generic
    // plan made then reads the whole table, however big it grows, until an analyze.
    await insertDecided(db, "key", 3);
    const few = await db.query<{ id: string }>("select id from decisions");
    const finish = (id: string) =>
      completeTimings(
        db,
        [{ decisionId: id, timings: { write_ms: 1, end_to_end_ms: 2 } }],
      );
    for (let i = 0; i < 12; i++) await finish(few[i % 3].id);
    await insertDecided(db, "more", ROWS * 4);
    await new Promise((resolve) => setTimeout(resolve, REPLAN_AFTER_MS + 50));
    await finish(few[0].id);
    // The plan the statement holds now (PGlite's kept statements are this session's own).
    const [kept] = await db.query<{ name: string }>(
      "select name from pg_prepared_statements where statement = $1::text",
      [COMPLETE_TIMINGS_SQL],
    );
    const param = JSON.stringify([{ id: few[0].id, timings: { end_to_end_ms: 3 } }]);
    const execute = `execute ${kept.name}('${param}')`;
    assert.deepEqual(await seqScanned(db, execute, []), []);
    assert.ok((await indexesUsed(db, execute, [])).includes("decisions_pkey"));
  },
  // Postgres: postgres.js plans it at every call (and autovacuum analyzes in production).
  { drivers: ["pglite"] },
);

dbTest("duplicates find their original through the signal_dedup index", async ({ db }) => {
  await seed(db);
  const param = JSON.stringify([1, 2, 3].map((n) => ({
    n,
    dedup_key: `key-${n}`,
    correlation_id: "c",
    client_ip: null,
    payload: "{}",
    details: {},
  })));
  const plainJoin =
    `select d.signal_id from jsonb_to_recordset($1::text::jsonb) as x(dedup_key text)
    join signal_dedup d on d.dedup_key = x.dedup_key`;
  assert.deepEqual(await seqScanned(db, plainJoin, [param]), ["signal_dedup"], "control");
  assert.deepEqual(await seqScanned(db, RECORD_DUPLICATES_SQL, [param]), []);
});

/**
 * A backlog that formed after the last analyze, as in a burst: the statistics
 * say nearly every job is done, while thousands are pending or running.
 */
async function backlogAfterAnalyze(db: Queryable, status: "pending" | "running") {
  await db.exec(`insert into pipeline_jobs (signal_id, symbol, status)
      select id, symbol, 'done' from signals;
    analyze pipeline_jobs;
    update pipeline_jobs set status = '${status}', locked_by = 'w', locked_at = now()
      where id % 5 <> 0;`);
}

/** WRITE_BATCH_SQL's parameters: these positions to close, these jobs, nothing else written. */
function writeParams(o: { closes?: unknown[]; jobIds?: number[] }): unknown[] {
  const closes = o.closes ?? [];
  return [
    JSON.stringify(closes),
    "[]",
    "[]",
    "[]",
    "channel",
    JSON.stringify(o.jobIds ?? []),
    "w",
    "0",
    closes.length,
  ];
}

dbTest(
  "a batch's jobs are checked and marked done by primary key, whatever the statistics say",
  async ({ db }) => {
    await seed(db);
    await backlogAfterAnalyze(db, "running");
    const ids = await db.query<{ id: string }>("select id::text as id from pipeline_jobs limit 12");
    const params = writeParams({ jobIds: ids.map((r) => Number(r.id)) });
    const plainStatus = WRITE_BATCH_SQL.replace(
      "(status = 'running') is true",
      "status = 'running'",
    );
    assert.notEqual(plainStatus, WRITE_BATCH_SQL);
    assert.ok(
      (await indexesUsed(db, plainStatus, params)).includes("pipeline_jobs_active"),
      "control",
    );
    const used = await indexesUsed(db, WRITE_BATCH_SQL, params);
    assert.ok(used.includes("pipeline_jobs_pkey"), used.join(", "));
    assert.ok(!used.includes("pipeline_jobs_active"), used.join(", "));
    assert.ok(!(await seqScanned(db, WRITE_BATCH_SQL, params)).includes("pipeline_jobs"));
  },
);

dbTest("a claim looks its heads up by primary key, whatever the statistics say", async ({ db }) => {
  await seed(db);
  await backlogAfterAnalyze(db, "pending");
  const plainStatus = CLAIM_JOBS_SQL.replace(
    "(j.status = 'pending') is true",
    "j.status = 'pending'",
  );
  assert.notEqual(plainStatus, CLAIM_JOBS_SQL);
  assert.ok(
    (await indexesUsed(db, plainStatus, ["w", 100])).includes("pipeline_jobs_ready"),
    "control",
  );
  const used = await indexesUsed(db, CLAIM_JOBS_SQL, ["w", 100]);
  assert.ok(!used.includes("pipeline_jobs_ready"), used.join(", "));
  assert.deepEqual(await seqScanned(db, CLAIM_JOBS_SQL, ["w", 100]), []);
});

dbTest("/signals/:id finds its signal's positions through their indexes", async ({ db }) => {
  await seed(db);
  // Every signal opened a position and the next one closed it.
  await db.exec(`insert into positions (symbol, direction, quantity, entry_price, entry_signal_id,
      opened_at, is_closed, closed_at, exit_price, exit_signal_id, realized_pnl)
    select s.symbol || '-' || s.seq, s.direction, 1, 100, s.id, now(), true, now(), 101, n.id, 1
    from signals s join signals n on n.seq = s.seq + 1;
    analyze positions;`);
  const [{ id }] = await db.query<{ id: string }>(
    "select id from signals where seq = $1::bigint",
    [ROWS / 2],
  );
  const rows = await db.query<{ change: string }>(SIGNAL_POSITIONS_SQL, [id]);
  assert.deepEqual(rows.map((r) => r.change), ["closed", "opened"]);
  assert.deepEqual(await seqScanned(db, SIGNAL_POSITIONS_SQL, [id]), []);
  await db.exec("drop index positions_entry_signal; drop index positions_exit_signal");
  assert.deepEqual(await seqScanned(db, SIGNAL_POSITIONS_SQL, [id]), ["positions"], "control");
});

dbTest("positions are closed by primary key, whatever the statistics say", async ({ db }) => {
  await seed(db);
  // Analyzed while every position was open; thousands closed since.
  await db.exec(`insert into positions (symbol, direction, quantity, entry_price, entry_signal_id,
      opened_at)
    select symbol || '-' || seq, direction, 1, 100, id, now() from signals where seq <= 20;
    analyze positions;
    insert into positions (symbol, direction, quantity, entry_price, entry_signal_id, opened_at,
      is_closed, closed_at, exit_price, realized_pnl)
    select symbol || '-' || seq, direction, 1, 100, id, now(), true, now(), 101, 1
    from signals where seq > 20;`);
  const open = await db.query<{ id: string }>(
    "select id from positions where not is_closed limit 3",
  );
  const closes = open.map((p) => ({
    id: p.id,
    exit_price: 101,
    exit_signal_id: null,
    closed_at: new Date().toISOString(),
    realized_pnl: 1,
  }));
  const params = writeParams({ closes });
  const plainJoin = WRITE_BATCH_SQL.replace(
    /where p\.id = any \(array\(select[^\n]*\n\s*and p\.id = x\.id/,
    "where p.id = x.id",
  );
  assert.notEqual(plainJoin, WRITE_BATCH_SQL);
  assert.deepEqual(await seqScanned(db, plainJoin, params), ["positions"], "control");
  assert.deepEqual(await seqScanned(db, WRITE_BATCH_SQL, params), []);
});

dbTest("the queue depth /health reads does not read every job ever queued", async ({ db }) => {
  await seed(db);
  await db.exec(`insert into pipeline_jobs (signal_id, symbol, status, finished_at)
      select id, symbol, 'done', now() from signals;
    update pipeline_jobs set status = 'pending', finished_at = null where id % 100 = 0;
    update pipeline_jobs set status = 'failed' where id % 100 = 1;
    analyze pipeline_jobs;`);
  const notDone = `select count(*) from pipeline_jobs where status <> 'done'`;
  assert.deepEqual(await seqScanned(db, notDone, []), ["pipeline_jobs"], "control");
  assert.deepEqual(await seqScanned(db, QUEUE_DEPTH_SQL, []), []);
  const [row] = await db.query<{ pending: number; running: number; failed: number }>(
    QUEUE_DEPTH_SQL,
  );
  assert.deepEqual([row.pending, row.running, row.failed], [ROWS / 100, 0, ROWS / 100]);
});

dbTest(
  "/metrics counts only the signals and decisions added since its last read",
  async ({ db }) => {
    await seed(db);
    // Analyzed before most of the rows arrived, as between autovacuum runs.
    await db.exec(
      `delete from decisions where signal_id in (select id from signals where seq > 100);
    analyze decisions;
    insert into decisions (signal_id, outcome, reason_code, message)
    select id, 'REJECT', 'MARKET_CLOSED', 'closed' from signals where seq > 100;`,
    );
    const recount = "select count(*) from signals";
    assert.deepEqual(await seqScanned(db, recount, []), ["signals"], "control");
    const [last] = await db.query<{ s: string; d: string }>(
      "select (select max(seq) from signals)::text as s, (select max(seq) from decisions)::text as d",
    );
    const since = (n: string) => String(BigInt(n) - 10n);
    assert.deepEqual(await seqScanned(db, SIGNALS_SINCE_SQL, [since(last.s), last.s]), []);
    assert.deepEqual(await indexesUsed(db, SIGNALS_SINCE_SQL, [since(last.s), last.s]), [
      "signals_seq_key",
    ]);
    assert.deepEqual(await seqScanned(db, DECISIONS_SINCE_SQL, [since(last.d), last.d]), []);
    const [row] = await db.query<{ n: number }>(SIGNALS_SINCE_SQL, [since(last.s), last.s]);
    assert.equal(Number(row.n), 10);
  },
);

dbTest("/events pages and finds its starting cursor through the events index", async ({ db }) => {
  await db.exec(`insert into events (kind, symbol, payload)
      select 'signal', 'S' || (g % 200), '{}' from generate_series(1, ${ROWS}) g;
    analyze events;`);
  const [{ txid }] = await db.query<{ txid: string }>(
    "select min(txid::text) as txid from events",
  );
  const events = (scanned: string[]) => scanned.filter((table) => table === "events");
  // A fresh client pages from the start; a live one from just behind the newest event.
  for (const params of [["0", "0", 500], [txid, String(ROWS - 10), 500]]) {
    assert.deepEqual(events(await seqScanned(db, READ_EVENTS_SQL, params)), [], String(params));
    assert.ok((await indexesUsed(db, READ_EVENTS_SQL, params)).includes("events_txid_id"));
    // Ordered by the index itself: a sort would mean the order is not (txid, id).
    const nodes = await planNodes(db, READ_EVENTS_SQL, params);
    assert.ok(!nodes.some((n) => String(n["Node Type"]).includes("Sort")), String(params));
  }
  assert.deepEqual(events(await seqScanned(db, LATEST_CURSOR_SQL, [])), []);
  assert.ok((await indexesUsed(db, LATEST_CURSOR_SQL, [])).includes("events_txid_id"));
});

dbTest(
  "/health finds each symbol's newest market data without reading every snapshot",
  async ({ db }) => {
    // A year of pushes leaves millions of snapshots over a few dozen symbols, never pruned.
    await db.exec(`insert into context_snapshots (symbol, spot, vix, trend, as_of, source)
        select 'S' || (g % 40), 100, 18, 'UP', now() - g * interval '1 minute', 'push'
        from generate_series(1, ${ROWS * 4}) g;
      insert into gex_signals (symbol, spot, net_gex, regime, as_of, source)
        select 'S' || (g % 7), 100, 1e9, 'POSITIVE', now() - g * interval '5 minutes', 'push'
        from generate_series(1, ${ROWS}) g;
      analyze context_snapshots;`); // gex_signals left unanalyzed, as PGlite's maintenance leaves it
    const plain = `select 'context' as kind, symbol, max(as_of) as as_of
        from context_snapshots group by symbol
      union all
      select 'gex' as kind, symbol, max(as_of) as as_of from gex_signals group by symbol`;
    const tables = ["context_snapshots", "gex_signals"];
    const scanned = async (sql: string) =>
      (await seqScanned(db, sql, [])).filter((t) => tables.includes(t));
    assert.deepEqual([...new Set(await scanned(plain))].sort(), tables, "control");
    assert.deepEqual(await scanned(MARKET_DATA_FRESHNESS_SQL), []);
    // The same answer as reading every row.
    type Row = { kind: string; symbol: string; as_of: Date };
    const sorted = (rows: Row[]) =>
      rows.map((r) => `${r.kind} ${r.symbol} ${r.as_of.toISOString()}`).sort();
    const expected = sorted(await db.query<Row>(plain));
    const actual = sorted(await db.query<Row>(MARKET_DATA_FRESHNESS_SQL));
    assert.deepEqual(actual, expected);
    assert.equal(actual.filter((r) => r.startsWith("context ")).length, 40);
    assert.equal(actual.filter((r) => r.startsWith("gex ")).length, 7);
  },
);

dbTest(
  "/signals' time filters read their window through the received_at index, not every newer signal",
  async ({ db }) => {
    // A day of signals a few seconds apart, stored in receipt order; the newest a minute old.
    await db.exec(`insert into signals (id, received_at, source, symbol, direction, action,
        timeframe, signal_time, dedup_key, raw_payload, auth_method, correlation_id)
      select gen_random_uuid(), t, 'test', 'S' || (g % 20), 'CALL', 'ENTRY', '5m', t,
        'key-' || g, '{}', 'hmac', 'c-' || g
      from generate_series(${ROWS * 4}, 1, -1) g,
        lateral (select now() - interval '1 minute' - g * interval '4 seconds' as t) x`);
    // What the worker's maintenance does (and on Postgres, autovacuum's analyze).
    await runMaintenance(db, { eventsRetentionDays: 7, refusalsRetentionDays: 30 });
    if (db.driver === "postgres") await db.exec("analyze signals");
    const sent: { text: string; params: unknown[]; replan?: boolean }[] = [];
    const watched: Queryable = {
      query: (text, params, options) => {
        sent.push({ text, params: [...(params ?? [])], replan: options?.replan });
        return db.query(text, params, options);
      },
      exec: (script) => db.exec(script),
    };
    const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
    const list = async (q: Omit<PageQuery, "limit">) => {
      sent.length = 0;
      const page = await listSignals(watched, { limit: 50, ...q });
      const [{ text, params, replan }] = sent;
      assert.equal(replan, true, "a time-filtered list is planned for its own window");
      return {
        page,
        indexes: await indexesUsed(db, text, params),
        scanned: (await seqScanned(db, text, params)).filter((t) => t === "signals"),
      };
    };
    // Nothing since (a quiet evening). Without the index (the control) every signal is read.
    await db.exec("drop index signals_received_at");
    const control = await list({ since: ago(0) });
    assert.ok(
      control.scanned.includes("signals") || control.indexes.includes("signals_seq_key"),
      "control",
    );
    await db.exec("create index signals_received_at on signals using brin (received_at)");
    const quiet = await list({ since: ago(0) });
    assert.deepEqual(quiet.page.items, []);
    assert.deepEqual(quiet.scanned, []);
    assert.ok(quiet.indexes.includes("signals_received_at"), quiet.indexes.join());
    // An hour in the middle of the day (here walking from the newest may be as cheap): its
    // 900 signals, newest first, and the pages after.
    const [since, until] = [ago(600), ago(540)];
    const hour = await list({ since, until });
    assert.deepEqual(hour.scanned, []);
    assert.equal(hour.page.items.length, 50);
    const times = hour.page.items.map((r) => Date.parse(String(r.received_at)));
    assert.ok(times.every((t) => t >= Date.parse(since) && t < Date.parse(until)));
    assert.deepEqual(times, [...times].sort((a, b) => b - a));
    const [{ n }] = await db.query<{ n: number }>(
      "select count(*)::integer as n from signals where received_at >= $1 and received_at < $2",
      [since, until],
    );
    let seen = 50;
    let cursor = hour.page.next_cursor;
    while (cursor !== null) {
      const next = await listSignals(db, {
        limit: 500,
        since,
        until,
        cursor: Number(cursor),
      });
      seen += next.items.length;
      cursor = next.next_cursor;
    }
    assert.equal(seen, Number(n));
  },
);
