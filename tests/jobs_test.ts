/**
 * The job claim (db/jobs.ts) against a model of its promise, on random
 * queues: per symbol, jobs run only in order, from the oldest unfinished one
 * and only while they are pending and due; every such head is taken before
 * any job queued behind one, up to the limit; nothing else is touched. Then the ways a claim comes back: from a
 * worker whose sessions are gone, and a worker's own claims after an outage.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { newWorkerId } from "../compose.ts";
import { loadConfig } from "../core/config.ts";
import {
  claimJobs,
  connectionName,
  reclaimStaleJobs,
  releaseFailedJob,
  releaseOrphanedClaims,
} from "../db/jobs.ts";
import type { Queryable } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { dbTest, POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";

type Status = "pending" | "running" | "done" | "failed";

interface JobSpec {
  symbol: string;
  status: Status;
  /** A pending job retried later (run_at in the future) is not due. */
  due: boolean;
}

const jobSpec: fc.Arbitrary<JobSpec> = fc.record({
  symbol: fc.constantFrom("AAPL", "SPY", "QQQ", "TSLA", "NVDA", "IWM"),
  status: fc.constantFrom<Status>("pending", "pending", "pending", "running", "done", "failed"),
  due: fc.constantFrom(true, true, true, false),
});

/**
 * The jobs the claim must take: the model. The oldest pending, due heads (at
 * most `limit`), then behind each the symbol's next unfinished jobs while
 * they are pending and due, taken round by round (every head, then every
 * second job, ...), oldest first within a round, up to `limit` in all.
 */
function expectedClaim(jobs: readonly (JobSpec & { id: number })[], limit: number): number[] {
  const active = (j: JobSpec) => j.status === "pending" || j.status === "running";
  const ready = (j: JobSpec) => j.status === "pending" && j.due;
  const bySymbol = new Map<string, (JobSpec & { id: number })[]>();
  for (const job of [...jobs].sort((a, b) => a.id - b.id)) {
    if (!active(job)) continue;
    bySymbol.set(job.symbol, [...(bySymbol.get(job.symbol) ?? []), job]);
  }
  const heads = [...bySymbol.values()].map((q) => q[0]).filter(ready)
    .sort((a, b) => a.id - b.id).slice(0, limit);
  const candidates: { id: number; round: number }[] = [];
  for (const head of heads) {
    const queue = bySymbol.get(head.symbol)!;
    for (let i = 0; i < queue.length && ready(queue[i]); i++) {
      candidates.push({ id: queue[i].id, round: i + 1 });
    }
  }
  return candidates.sort((a, b) => a.round - b.round || a.id - b.id)
    .slice(0, limit).map((c) => c.id).sort((a, b) => a - b);
}

async function insertJobs(db: Queryable, jobs: readonly JobSpec[]): Promise<number[]> {
  const rows = await db.query<{ id: string | number }>(
    `with input as (
       select * from jsonb_to_recordset($1::text::jsonb) as x(n integer, signal_id uuid,
         symbol text, status text, due boolean)
     ), sig as (
       insert into signals (id, received_at, source, symbol, direction, action, timeframe,
         signal_time, dedup_key, raw_payload, auth_method, correlation_id)
       select signal_id, now(), 'test', symbol, 'CALL', 'ENTRY', '5m', now(),
         signal_id::text, '{}', 'none', 'claim-test'
       from input
       returning id
     )
     insert into pipeline_jobs (signal_id, symbol, status, run_at)
     select i.signal_id, i.symbol, i.status,
       case when i.due then now() - interval '1 second' else now() + interval '1 hour' end
     from input i join sig on sig.id = i.signal_id
     order by i.n
     returning id`,
    [JSON.stringify(jobs.map((j, n) => ({ n, signal_id: crypto.randomUUID(), ...j })))],
  );
  // Identity values follow the insert order (n).
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

dbTest(
  "the claim takes the due heads, then the due jobs queued behind them, round by round",
  async ({ db }) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(jobSpec, { maxLength: 40 }),
        fc.integer({ min: 1, max: 12 }),
        async (specs, limit) => {
          await db.query("delete from pipeline_jobs");
          const ids = await insertJobs(db, specs);
          const jobs = specs.map((s, i) => ({ ...s, id: ids[i] }));
          const claimed = await claimJobs(db, "model-worker", limit);
          assert.deepEqual(claimed.map((c) => c.id), expectedClaim(jobs, limit));
          // Claimed jobs are running under this worker; every other job is as it was.
          const after = await db.query<{ id: string | number; status: string; locked_by: string }>(
            "select id, status, locked_by from pipeline_jobs order by id",
          );
          const taken = new Set(claimed.map((c) => c.id));
          for (const row of after) {
            const before = jobs.find((j) => j.id === Number(row.id))!;
            if (taken.has(Number(row.id))) {
              assert.equal(row.status, "running");
              assert.equal(row.locked_by, "model-worker");
            } else {
              assert.equal(row.status, before.status);
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  },
);

async function jobStates(db: Queryable) {
  const rows = await db.query<{ id: string | number; status: string; attempts: number }>(
    "select id, status, attempts from pipeline_jobs order by id",
  );
  return rows.map((r) => ({ id: Number(r.id), status: r.status, attempts: r.attempts }));
}

dbTest(
  "a claim whose worker has no session left is reclaimed at once; a live worker's is kept",
  async ({ db, driver }) => {
    const [mine, dead, alive] = await insertJobs(db, [
      { symbol: "SPY", status: "pending", due: true },
      { symbol: "QQQ", status: "pending", due: true },
      { symbol: "IWM", status: "pending", due: true },
    ]);
    const claimAs = (worker: string, id: number) =>
      db.query(
        `update pipeline_jobs set status = 'running', locked_by = $1::text, locked_at = now(),
           attempts = 1 where id = $2::bigint`,
        [worker, id],
      );
    await claimAs("me:1", mine);
    await claimAs("crashed:2", dead);
    await claimAs("alive:3", alive);
    // A live instance: a session named after its worker, as main.ts opens them.
    let liveSession: { close(): Promise<void> } | null = null;
    if (driver === "postgres") {
      const [{ db: name }] = await db.query<{ db: string }>("select current_database() as db");
      const base = new URL(TEST_DATABASE_URL);
      base.pathname = `/${name}`;
      const live = await openPostgres(base.toString(), {
        max: 1,
        applicationName: connectionName("alive:3"),
      });
      await live.query("select 1"); // opens the session
      liveSession = live;
    }
    try {
      // The claim timeout is an hour away: only the missing session can free a job.
      const r = await reclaimStaleJobs(db, {
        timeoutSeconds: 3600,
        maxAttempts: 5,
        selfWorkerId: "me:1",
      });
      const states = new Map((await jobStates(db)).map((j) => [j.id, j.status]));
      assert.equal(states.get(mine), "running", "its own claim was taken from the worker");
      assert.equal(states.get(dead), "pending", "a dead worker's claim was not reclaimed");
      // PGlite is one process: no other instance can be alive on it.
      assert.equal(states.get(alive), driver === "postgres" ? "running" : "pending");
      assert.equal(r.reclaimed, driver === "postgres" ? 1 : 2);
    } finally {
      await liveSession?.close();
    }
  },
);

dbTest(
  "releaseOrphanedClaims gives back only this worker's claims it is not deciding, uncounted",
  async ({ db }) => {
    const ids = await insertJobs(db, [
      { symbol: "SPY", status: "pending", due: true },
      { symbol: "QQQ", status: "pending", due: true },
      { symbol: "IWM", status: "pending", due: true },
      { symbol: "DIA", status: "pending", due: true },
    ]);
    const mine = await claimJobs(db, "w:1", 3); // SPY, QQQ, IWM
    await claimJobs(db, "w:2", 10); // DIA
    const deciding = mine[0].id;
    assert.equal(await releaseOrphanedClaims(db, "w:1", [deciding]), 2);
    assert.deepEqual(await jobStates(db), [
      { id: ids[0], status: "running", attempts: 1 },
      { id: ids[1], status: "pending", attempts: 0 },
      { id: ids[2], status: "pending", attempts: 0 },
      { id: ids[3], status: "running", attempts: 1 },
    ]);
  },
);

dbTest(
  "releaseFailedJob leaves a job that was taken back from this worker to its new owner",
  async ({ db }) => {
    const ids = await insertJobs(db, [
      { symbol: "SPY", status: "pending", due: true },
      { symbol: "QQQ", status: "pending", due: true },
    ]);
    const [spy, qqq] = await claimJobs(db, "w:1", 2);
    // SPY's claim was taken back (w:1 looked gone) and w:2 decided it.
    await db.query(
      `update pipeline_jobs set status = 'done', locked_by = 'w:2', finished_at = now()
       where id = $1::bigint`,
      [spy.id],
    );
    const options = { error: "boom", maxAttempts: 5, delaySeconds: 0, workerId: "w:1" };
    assert.equal(await releaseFailedJob(db, spy, options), "lost");
    assert.equal(await releaseFailedJob(db, qqq, options), "pending");
    assert.equal(await releaseFailedJob(db, qqq, options), "lost", "no longer its claim");
    assert.deepEqual(await jobStates(db), [
      { id: ids[0], status: "done", attempts: 1 },
      { id: ids[1], status: "pending", attempts: 1 },
    ]);
    const [again] = await claimJobs(db, "w:1", 1);
    assert.equal(again.id, qqq.id);
    assert.equal(
      await releaseFailedJob(db, again, { ...options, maxAttempts: 2 }),
      "failed",
      "its second attempt was its last",
    );
  },
);

Deno.test({
  name:
    "[postgres] the longest valid INSTANCE_ID's session name reaches pg_stat_activity unchanged",
  ignore: !POSTGRES_REACHABLE && Deno.env.get("CI") !== "true",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { config } = loadConfig({ INSTANCE_ID: "Zurich-1.iad_" + "x".repeat(19) });
    const name = connectionName(newWorkerId(config));
    const sessionName = async (applicationName: string) => {
      const db = await openPostgres(TEST_DATABASE_URL, { max: 1, applicationName });
      try {
        const [row] = await db.query<{ application_name: string }>(
          "select application_name from pg_stat_activity where pid = pg_backend_pid()",
        );
        return row.application_name;
      } finally {
        await db.close();
      }
    };
    assert.equal(await sessionName(name), name);
    // What the check keeps out: a name the reclaim would never find, so its jobs would be taken.
    const accented = connectionName("zürich-1:0123abcd");
    assert.notEqual(await sessionName(accented), accented);
  },
});

dbTest(
  "an application_name in DATABASE_URL does not rename a live worker's sessions out of sight",
  async ({ db }) => {
    const [job] = await insertJobs(db, [{ symbol: "SPY", status: "pending", due: true }]);
    const [{ db: name }] = await db.query<{ db: string }>("select current_database() as db");
    // As an operator might write it for their monitoring; postgres.js lets the URL's win.
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${name}`;
    url.search = "?application_name=monitoring&APPLICATION_NAME=monitoring";
    const live = await openPostgres(url.toString(), {
      max: 1,
      applicationName: connectionName("alive:3"),
    });
    try {
      await claimJobs(live, "alive:3", 1); // on its own session, which stays open
      const r = await reclaimStaleJobs(db, {
        timeoutSeconds: 3600,
        maxAttempts: 5,
        selfWorkerId: "other:4",
      });
      assert.equal(r.reclaimed, 0, "another instance took the live worker's claim");
      assert.deepEqual(await jobStates(db), [{ id: job, status: "running", attempts: 1 }]);
    } finally {
      await live.close();
    }
  },
  { drivers: ["postgres"] },
);
