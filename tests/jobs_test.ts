/**
 * The job claim (db/jobs.ts) against a model of its promise, on random
 * queues: per symbol, only the oldest unfinished job may run, and only when
 * it is pending and due; the oldest such heads are taken first, up to the
 * limit; nothing else is touched.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { claimJobs } from "../db/jobs.ts";
import type { Queryable } from "../db/port.ts";
import { dbTest } from "./_db.ts";

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

/** The jobs the claim must take, oldest first: the model. */
function expectedClaim(jobs: readonly (JobSpec & { id: number })[], limit: number): number[] {
  const heads = new Map<string, JobSpec & { id: number }>();
  for (const job of jobs) {
    const active = job.status === "pending" || job.status === "running";
    if (active && !heads.has(job.symbol)) heads.set(job.symbol, job);
  }
  return [...heads.values()]
    .filter((h) => h.status === "pending" && h.due)
    .map((h) => h.id)
    .sort((a, b) => a - b)
    .slice(0, limit);
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

dbTest("the claim takes exactly the due heads of each symbol, oldest first", async ({ db }) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(jobSpec, { maxLength: 40 }),
      fc.integer({ min: 1, max: 8 }),
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
});
