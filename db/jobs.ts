/**
 * The pipeline job queue. Claims use FOR UPDATE SKIP LOCKED so any number of
 * workers on any number of instances share it, and a job is claimable only
 * when it is the oldest unfinished job of its symbol and no job of that
 * symbol is running: per symbol, jobs are decided strictly in order (a close
 * and an open fired together cannot swap), different symbols in parallel. A
 * claim may take a symbol's queued jobs behind its head too; they are decided
 * in order in the same batch.
 */
import type { ReceivedSignal } from "../core/signal.ts";
import type { Queryable } from "./port.ts";
import { receivedSignalFromRow, SIGNAL_COLUMNS, type SignalRow } from "./signals.ts";
import { jsonKeys } from "./sql.ts";

export interface ClaimedJob {
  id: number;
  signalId: string;
  symbol: string;
  attempts: number;
  /** When the signal was received: the start of its end-to-end time. */
  receivedAt: Date;
  /** When this claim was made (database clock). */
  claimedAt: Date;
  /** The webhook request's correlation id, carried into the pipeline's logs. */
  correlationId: string;
  /** The signal to decide, read in the same statement as the claim. */
  signal: ReceivedSignal;
}

interface JobRow extends SignalRow {
  job_id: string | number;
  attempts: number;
  claimed_at: Date;
  correlation_id: string;
}

/**
 * The claim. The heads are looked up in `ready` by primary key. Joined to
 * the heads with `j.status = 'pending'`, they were found through the partial
 * index of pending jobs instead, and when the statistics were taken before a
 * backlog formed (a burst: seconds, long before autovacuum's next analyze)
 * that read every pending job to find a few hundred heads, 8 ms per claim at
 * an 11,000-job backlog. `id = any(array(...))` asks for the ids themselves,
 * and `(...) is true` means the same as the plain comparison but does not
 * match the partial indexes' predicates, so only the primary key can serve
 * it (tests/query_plans_test.ts).
 *
 * Behind each head this claim locked, `queued` reads the symbol's next
 * unfinished jobs in order (the index of active jobs, at most as many as the
 * batch has room for beside the heads) and keeps them up to the first that
 * is not pending and due. `taken` then fills the batch round by round: every
 * head first, then each symbol's second job, and so on, so a symbol with a
 * long queue neither waits behind others nor holds them up. No other claim
 * can take a job behind a head this one holds: a job is claimable only as
 * the head of its symbol, or behind a head its own claim locked.
 */
export const CLAIM_JOBS_SQL = `with recursive heads as (
     (select symbol, id from pipeline_jobs
      where status in ('pending', 'running')
      order by symbol, id limit 1)
     union all
     select next.symbol, next.id from heads h cross join lateral (
       select symbol, id from pipeline_jobs
       where status in ('pending', 'running') and symbol > h.symbol
       order by symbol, id limit 1
     ) next
   ), ready as (
     -- By primary key whatever the statistics say: see the note on CLAIM_JOBS_SQL.
     select j.id, j.symbol from pipeline_jobs j
     where j.id = any (array(select id from heads))
       and (j.status = 'pending') is true and j.run_at <= now()
     order by j.id
     limit $2::integer
     for update of j skip locked
   ), queued as (
     select q.id, q.round from ready r cross join lateral (
       select a.id, 1 + row_number() over w as round,
         bool_and(a.status = 'pending' and a.run_at <= now()) over w as due_so_far
       from (
         select id, status, run_at from pipeline_jobs
         where symbol = r.symbol and status in ('pending', 'running') and id > r.id
         order by symbol, id
         limit $2::integer - (select count(*) from ready)
       ) a
       window w as (order by a.id)
     ) q
     where q.due_so_far
   ), taken as (
     select id from (
       select id, 1 as round from ready
       union all
       select id, round from queued
     ) c
     order by round, id
     limit $2::integer
   )
   update pipeline_jobs j
     set status = 'running', locked_by = $1::text, locked_at = now(), attempts = j.attempts + 1
   from taken, signals s
   where j.id = taken.id and s.id = j.signal_id and (j.status = 'pending') is true
   returning j.id as job_id, j.attempts, j.locked_at as claimed_at, s.correlation_id,
     ${SIGNAL_COLUMNS}`;

/**
 * Claims up to `limit` ready jobs: the oldest unfinished job of each symbol
 * that has one pending and due, and with room left, the jobs queued behind
 * it, in order (the worker decides them in id order, so per symbol in
 * receipt order). The heads come from the partial index of active jobs by a
 * skip scan (one index probe per symbol, recursively), so the cost follows
 * the number of symbols with work, not the backlog: a `DISTINCT ON` read
 * every active job, 90 ms at a 160,000-job backlog against 4 ms for this,
 * and a worker that falls behind must not slow down as it does. In READ
 * COMMITTED a concurrent claimer either skips a locked head or re-checks it
 * after the other commits (then it is no longer pending), so no job is
 * claimed twice.
 */
export async function claimJobs(
  db: Queryable,
  workerId: string,
  limit: number,
): Promise<ClaimedJob[]> {
  const rows = await db.query<JobRow>(
    CLAIM_JOBS_SQL,
    [workerId, limit],
  );
  return rows.map((r) => ({
    id: Number(r.job_id),
    signalId: r.id,
    symbol: r.symbol,
    attempts: r.attempts,
    receivedAt: r.received_at,
    claimedAt: r.claimed_at,
    correlationId: r.correlation_id,
    signal: receivedSignalFromRow(r),
  })).sort((a, b) => a.id - b.id);
}

/** Marks a claimed job done; part of the transaction that writes its decision. */
export async function completeJob(
  tx: Queryable,
  jobId: number,
  workerId: string,
): Promise<boolean> {
  const rows = await tx.query(
    `update pipeline_jobs set status = 'done', finished_at = now(), last_error = null
     where id = $1::bigint and status = 'running' and locked_by = $2::text
     returning id`,
    [jobId, workerId],
  );
  return rows.length === 1;
}

/**
 * After a failed attempt: back to pending after `delaySeconds`, or failed
 * for good once `maxAttempts` is reached. Returns the new status, or "lost"
 * when the job is no longer this worker's claim (taken back and given to
 * another, maybe decided by now): then it is left as it is.
 */
export async function releaseFailedJob(
  db: Queryable,
  job: { id: number; attempts: number },
  options: { error: string; maxAttempts: number; delaySeconds: number; workerId: string },
): Promise<"pending" | "failed" | "lost"> {
  const failed = job.attempts >= options.maxAttempts;
  const rows = await db.query(
    `update pipeline_jobs
       set status = $2::text, last_error = $3::text, locked_by = null, locked_at = null,
           run_at = now() + make_interval(secs => $4::double precision),
           finished_at = case when $2::text = 'failed' then now() end
     where id = $1::bigint and status = 'running' and locked_by = $5::text
     returning id`,
    [
      job.id,
      failed ? "failed" : "pending",
      options.error.slice(0, 2000),
      options.delaySeconds,
      options.workerId,
    ],
  );
  if (rows.length === 0) return "lost";
  return failed ? "failed" : "pending";
}

/**
 * Gives claimed jobs that were never started back to the queue, uncounted:
 * at shutdown, and the jobs queued behind one that failed in the same batch.
 * Only this worker's claims: a job reclaimed meanwhile is left to its new owner.
 */
export async function releaseClaims(
  db: Queryable,
  workerId: string,
  jobIds: readonly number[],
): Promise<void> {
  if (jobIds.length === 0) return;
  await db.query(
    `update pipeline_jobs set status = 'pending', locked_by = null, locked_at = null,
       attempts = greatest(attempts - 1, 0)
     where id = any (${jsonKeys("$1", "bigint")})
       and (status = 'running') is true and locked_by = $2::text`, // by primary key: see CLAIM_JOBS_SQL
    [JSON.stringify(jobIds), workerId],
  );
}

/** The connection name of a worker's database sessions: how other instances see it is alive. */
export function connectionName(workerId: string): string {
  // Postgres keeps 63 bytes of application_name; the reclaim below compares the same prefix.
  return `optionstrat-backend/${workerId}`.slice(0, 63);
}

/**
 * Jobs left running by a dead instance go back to pending (or to failed once
 * out of attempts): at once when the worker that claimed them has no session
 * open any more (its connections carry `connectionName(workerId)`; a
 * restarted process comes back as a new worker), and in any case once the
 * claim is older than `timeoutSeconds` (a live but stuck instance). Stealing
 * a job from an instance that is alive after all is safe: its decision
 * commits only while the job is still its own. Returns how many were reclaimed.
 */
export async function reclaimStaleJobs(
  db: Queryable,
  options: { timeoutSeconds: number; maxAttempts: number; selfWorkerId: string },
): Promise<{ reclaimed: number; failed: { signalId: string; symbol: string }[] }> {
  const rows = await db.query<{ status: string; signal_id: string; symbol: string }>(
    `update pipeline_jobs
       set status = case when attempts >= $2::integer then 'failed' else 'pending' end,
           last_error = 'Claim expired: the instance that took this job stopped answering',
           locked_by = null, locked_at = null,
           finished_at = case when attempts >= $2::integer then now() end
     where status = 'running'
       and (locked_at < now() - make_interval(secs => $1::double precision)
         or (locked_by <> $3::text and not exists (
               select 1 from pg_stat_activity a
               where a.application_name = left('optionstrat-backend/' || pipeline_jobs.locked_by, 63))))
     returning status, signal_id, symbol`,
    [options.timeoutSeconds, options.maxAttempts, options.selfWorkerId],
  );
  return {
    reclaimed: rows.length,
    failed: rows.filter((r) => r.status === "failed").map((r) => ({
      signalId: r.signal_id,
      symbol: r.symbol,
    })),
  };
}

/**
 * Gives back this worker's own claims that it is no longer deciding: after
 * the database went away mid-batch, or a claim committed whose answer was
 * lost, so they need not wait out the claim timeout. The attempt is not
 * counted: the job never ran to a failure of its own.
 */
export async function releaseOrphanedClaims(
  db: Queryable,
  workerId: string,
  activeJobIds: readonly number[],
): Promise<number> {
  const rows = await db.query(
    `update pipeline_jobs set status = 'pending', locked_by = null, locked_at = null,
       attempts = greatest(attempts - 1, 0)
     where status = 'running' and locked_by = $1::text
       and id <> all (select jsonb_array_elements_text($2::text::jsonb)::bigint)
     returning id`,
    [workerId, JSON.stringify(activeJobIds)],
  );
  return rows.length;
}

export interface QueueDepth {
  pending: number;
  running: number;
  failed: number;
  /** Age of the oldest pending job in seconds, 0 when none. */
  oldestPendingSeconds: number;
}

/**
 * Only the unfinished and the failed jobs, each through its partial index:
 * `status <> 'done'` matched no index and read every job ever queued, on
 * every /health check (tests/query_plans_test.ts).
 */
export const QUEUE_DEPTH_SQL = `select
    count(*) filter (where status = 'pending')::integer as pending,
    count(*) filter (where status = 'running')::integer as running,
    (select count(*) from pipeline_jobs where status = 'failed')::integer as failed,
    coalesce(extract(epoch from now() - min(created_at) filter (where status = 'pending')), 0)::float8
      as oldest
  from pipeline_jobs where status in ('pending', 'running')`;

export async function queueDepth(db: Queryable): Promise<QueueDepth> {
  const [row] = await db.query<Record<string, string | number | null>>(QUEUE_DEPTH_SQL);
  return {
    pending: Number(row.pending),
    running: Number(row.running),
    failed: Number(row.failed),
    oldestPendingSeconds: Number(row.oldest),
  };
}
