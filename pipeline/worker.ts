/**
 * The pipeline worker, one per instance: claims jobs (FOR UPDATE SKIP
 * LOCKED, per symbol in order, oldest first), runs each through the
 * stages and records its decision in one statement. Wakes on NOTIFY from
 * the ingest, falls back to polling. A stage that throws is retried with
 * backoff, then the job is marked failed with a processing_errors row. Jobs
 * whose instance died are reclaimed as soon as its sessions are gone (or
 * after the claim timeout); jobs this worker held when the database went away
 * are given back as soon as it answers again.
 */
import { decide } from "../core/decide.ts";
import { inExitGrace } from "../core/decision_inputs.ts";
import { marketStatus } from "../core/market_hours.ts";
import type { WorkerConfig } from "../core/pipeline_config.ts";
import type { Rules } from "../core/rules.ts";
import {
  type BookCache,
  completeTimings,
  type DecisionInput,
  JobLostError,
  newBookCache,
  recordDecisions,
  type RecordedDecision,
} from "../db/decisions.ts";
import { insertEvents } from "../db/events.ts";
import type { GroupCommit } from "../db/group_commit.ts";
import { runMaintenance } from "../db/maintenance.ts";
import {
  type ClaimedJob,
  claimJobs,
  reclaimStaleJobs,
  releaseClaims,
  releaseFailedJob,
  releaseOrphanedClaims,
} from "../db/jobs.ts";
import { type Database, isUnavailable, type Queryable } from "../db/port.ts";
import { insertProcessingError } from "../db/processing_errors.ts";
import { EVENTS_CHANNEL, JOBS_CHANNEL } from "../db/signals.ts";
import { logger, withContext } from "../logging.ts";
import { type ContextProvider, ProviderStoppedError } from "../providers/context.ts";
import type { GexProvider } from "../providers/gex.ts";

export interface WorkerDeps {
  db: Database;
  /** Unique per process: it names this worker's claims. */
  workerId: string;
  config: WorkerConfig;
  rules: Rules;
  context: ContextProvider;
  gex: GexProvider;
  now: () => number;
  /** Called after each committed decision, with its job (metrics, tests). */
  onDecision?: (recorded: RecordedDecision, job: ClaimedJob) => void;
  /** This instance's webhook commits, which go first (`config.maxDeferMs`). */
  ingest?: IngestActivity;
  /** The book this worker keeps (db/decisions.ts); a new one by default, tests pass theirs. */
  book?: BookCache;
}

/** What the worker needs to know of the ingest's group commit. */
export type IngestActivity = Pick<
  GroupCommit<unknown, unknown>,
  "busy" | "whenIdle" | "whenNoneWaiting"
>;

export interface Worker {
  start(): Promise<void>;
  /** Stops claiming, finishes the jobs being decided, releases the rest. */
  stop(): Promise<void>;
  /** Claims and decides until nothing is ready (tests, and `deno task bench`). */
  runUntilIdle(): Promise<number>;
  readonly active: number;
  /**
   * Batches decided again because another writer (another instance, a hand
   * edit) changed the positions since this worker last read them.
   */
  readonly bookConflicts: number;
  /** Batches that lost the positions three times, then were written holding their lock. */
  readonly bookLocks: number;
}

const log = logger("worker");

/** Symbols of one batch whose market data is looked up at the same time. */
const LOOKUPS_AT_ONCE = 8;

/**
 * A job that gave up: its processing_errors row and a live `failure` event,
 * so the dashboard stops showing the signal as pending.
 */
async function recordGiveUp(
  tx: Queryable,
  f: { signalId: string; symbol: string; correlationId: string | null; message: string },
): Promise<void> {
  await insertProcessingError(tx, {
    signalId: f.signalId,
    correlationId: f.correlationId,
    stage: "pipeline",
    code: "PIPELINE_FAILED",
    message: f.message,
  });
  await insertEvents(tx, [{
    kind: "failure",
    symbol: f.symbol,
    payload: {
      signal_id: f.signalId,
      symbol: f.symbol,
      code: "PIPELINE_FAILED",
      message: f.message,
    },
  }]);
  await tx.query("select pg_notify($1::text, '')", [EVENTS_CHANNEL]);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export function createWorker(deps: WorkerDeps): Worker {
  const { db, config, workerId } = deps;
  const active = new Set<Promise<void>>();
  let running = false;
  let loopDone: Promise<void> | null = null;
  let unlisten: (() => Promise<void>) | null = null;
  let wake: (() => void) | null = null;
  let lastReclaim = 0;
  let lastMaintenance = Date.now();
  let activeJobs = 0;
  let batchesFinished = 0;
  /** Ids of the jobs being decided now. */
  const activeIds = new Set<number>();
  /** The open book as this worker last read or wrote it (db/decisions.ts). */
  const book = deps.book ?? newBookCache();
  /**
   * Settles once the batch claimed last has written its decisions, or failed.
   * Batches look up their market data at once (`config.concurrency`) but
   * decide and write in claim order, one after another: a batch decided
   * beside another's write would find the book changed by it and be decided
   * again, and a later one could take a free slot from an earlier one.
   */
  let lastTurn: Promise<void> = Promise.resolve();
  /** Set when the database failed mid-way: some of our claims may have no one deciding them. */
  let orphansPossible = false;

  // Set by every NOTIFY and finished batch; a sleep that starts after one returns at once,
  // so a notification that arrives while a claim is running is never lost.
  let poked = false;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (poked) {
        poked = false;
        return resolve();
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        poked = false;
        resolve();
      }
      wake = done;
    });
  const poke = () => {
    poked = true;
    wake?.();
  };

  async function reclaimIfDue() {
    if (Date.now() - lastReclaim < (config.claimTimeoutSeconds * 1000) / 2) return;
    lastReclaim = Date.now();
    // One transaction: a job failed here always has its give-up recorded (an event
    // and a processing_errors row), or stays as it was for the next pass.
    const reclaimed = await db.transaction(async (tx) => {
      const r = await reclaimStaleJobs(tx, {
        timeoutSeconds: config.claimTimeoutSeconds,
        maxAttempts: config.maxAttempts,
        selfWorkerId: workerId,
      });
      for (const { signalId, symbol } of r.failed) {
        await recordGiveUp(tx, {
          signalId,
          symbol,
          correlationId: null,
          message: "Job abandoned: its claim expired on its last attempt",
        });
      }
      return r.reclaimed;
    });
    if (reclaimed > 0) {
      log.warn("Reclaimed {count} jobs left by a stopped instance", { count: reclaimed });
    }
  }

  /** When this worker last claimed or finished a batch (or was created), whichever is latest. */
  let lastWorkAt = performance.now();
  /**
   * How long the oldest job of the last claim had waited (0 once a claim
   * finds none); measured only with `maxLagMs` set.
   */
  let lagMs = 0;
  /**
   * While webhook commits are queued or in flight, waits for them to go
   * quiet, at most until `maxDeferMs` after the worker's last claim or
   * finished batch: a claim and its decision compete with them for the
   * database (PGlite's one thread; on Postgres the cores), so under a burst
   * the acknowledgements go first and the decisions follow in larger
   * batches. At low load nothing waits. While the decisions lag more than
   * `maxLagMs` (when set), a claim waits only for webhooks that wait for a
   * flush to start, not for those already being written: under load that
   * never eases, deferring to every commit lets the backlog grow without end,
   * while webhooks queued behind the flushes mean the ingest is at its limit.
   */
  async function yieldToIngest(): Promise<void> {
    const { ingest } = deps;
    if (ingest === undefined || !ingest.busy()) return;
    const left = config.maxDeferMs - (performance.now() - lastWorkAt);
    if (left <= 0) return;
    if (config.maxLagMs > 0 && lagMs > config.maxLagMs) await ingest.whenNoneWaiting(left);
    else await ingest.whenIdle(left);
  }

  /** Claims a batch (per symbol, jobs in order) and starts deciding it; returns how many were claimed. */
  async function claimAndStart(): Promise<number> {
    if (active.size >= config.concurrency) return 0;
    await yieldToIngest();
    lastWorkAt = performance.now();
    poked = false; // whatever arrives from here on is seen by this claim or wakes the next
    const jobs = await claimJobs(db, workerId, config.batchSize);
    if (config.maxLagMs > 0) {
      const claimedAt = deps.now();
      lagMs = jobs.reduce((most, j) => Math.max(most, claimedAt - j.receivedAt.getTime()), 0);
    }
    if (!running && loopDone !== null) {
      // Stopped while claiming: give them back untouched.
      await releaseClaims(db, workerId, jobs.map((j) => j.id));
      return 0;
    }
    if (jobs.length === 0) return 0;
    activeJobs += jobs.length;
    for (const job of jobs) activeIds.add(job.id);
    const ended = Promise.withResolvers<void>();
    const turn = { after: lastTurn, end: ended.resolve };
    // A batch that ends without waiting its turn (nothing left to decide) must not let the next
    // one overtake those before it: the next turn comes when both this one and theirs are over.
    lastTurn = Promise.all([turn.after, ended.promise]).then(() => {});
    const task: Promise<void> = processBatch(jobs, turn).finally(() => {
      turn.end();
      batchesFinished++;
      lastWorkAt = performance.now();
      activeJobs -= jobs.length;
      for (const job of jobs) activeIds.delete(job.id);
      active.delete(task);
      poke();
    });
    active.add(task);
    return jobs.length;
  }

  async function maintainIfDue() {
    if (Date.now() - lastMaintenance < config.maintenanceSeconds * 1000) return;
    lastMaintenance = Date.now();
    const r = await runMaintenance(db, {
      eventsRetentionDays: config.eventsRetentionDays,
      refusalsRetentionDays: config.refusalsRetentionDays,
      // PGlite's vacuum steps hold up webhooks like a claim would: same courtesy.
      beforeStep: () => deps.ingest?.whenIdle(config.maxDeferMs) ?? Promise.resolve(),
    });
    log.info(
      "Maintenance: {dedup} expired dedup keys, {events} old events, {refusals} old refusals deleted",
      {
        dedup: r.dedupKeysDeleted,
        events: r.eventsDeleted,
        refusals: r.refusalsDeleted,
        vacuumed: r.vacuumed,
        analyzed: r.analyzed,
        longest_step_ms: r.longestStepMs,
        ranges_summarized: r.rangesSummarized,
      },
    );
  }

  async function releaseOrphansIfAny() {
    if (!orphansPossible) return;
    // Cleared first: a batch that fails while this runs sets it again for the next pass.
    orphansPossible = false;
    let released;
    try {
      released = await releaseOrphanedClaims(db, workerId, [...activeIds]);
    } catch (error) {
      orphansPossible = true;
      throw error;
    }
    if (released > 0) {
      log.warn("Gave back {count} claimed jobs interrupted by the database outage", {
        count: released,
      });
    }
  }

  async function loop() {
    while (running) {
      try {
        await releaseOrphansIfAny();
        await reclaimIfDue();
        await maintainIfDue().catch((error) =>
          log.error("Maintenance failed: {error}", { error: String(error) })
        );
        const claimed = await claimAndStart();
        // A full batch suggests more is waiting; so does a free slot after a claim.
        if (claimed > 0 && active.size < config.concurrency) continue;
      } catch (error) {
        // A claim may have committed though its answer was lost.
        if (isUnavailable(error)) orphansPossible = true;
        log.error("Claiming jobs failed: {error}", { error: String(error) });
      }
      if (running) await sleep(config.pollMs);
    }
  }

  /**
   * Looks up a batch's market data, then, once the batch claimed before it has
   * written (`turn.after`), decides it and writes it in one statement
   * (db/decisions.ts), and passes the turn on (`turn.end`). If that fails,
   * each job is tried on its own, still in its turn, so one job's failure
   * never holds back another symbol's; the jobs of its own symbol behind it
   * wait for it.
   */
  async function processBatch(
    jobs: ClaimedJob[],
    turn: { after: Promise<void>; end: () => void },
  ): Promise<void> {
    // Symbols look up side by side (a batch spans up to WORKER_BATCH_SIZE of them,
    // and a slow provider one after another would outlast the claim), at most
    // LOOKUPS_AT_ONCE, so that a burst of cache misses does not queue ahead of the
    // webhooks' commits on the database; each symbol's jobs in order. The
    // decisions then go in claim order.
    const slots: ({ job: ClaimedJob; input: DecisionInput } | undefined)[] = [];
    const groups = [
      ...Map.groupBy(jobs.map((job, index) => ({ job, index })), (x) => x.job.symbol).values(),
    ];
    const lookUp = async () => {
      for (let group = groups.shift(); group !== undefined; group = groups.shift()) {
        await inSymbolOrder(
          group,
          async ({ job, index }) => {
            slots[index] = { job, input: await prepare(job) };
          },
          ({ job }, error) => failed(job, error),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(LOOKUPS_AT_ONCE, groups.length) }, lookUp));
    const prepared = slots.filter((p) => p !== undefined);
    if (prepared.length === 0) return;
    const waitStart = performance.now();
    await turn.after;
    const waitedMs = performance.now() - waitStart;
    try {
      report(await decideBatch(prepared, { waitedMs, written: turn.end }));
    } catch (error) {
      if (prepared.length === 1) {
        await failed(prepared[0].job, error);
        return;
      }
      if (isUnavailable(error)) {
        log.error("Database unavailable while deciding {count} jobs: {error}", {
          count: prepared.length,
          error: String(error),
        });
        orphansPossible = true; // given back once the database answers
        return;
      }
      await inSymbolOrder(
        prepared,
        async (one) => report(await decideBatch([one])),
        (one, singleError) => failed(one.job, singleError),
      );
    }
  }

  /**
   * Runs `step` on each item in job order. Once a step fails (`onFailure`
   * handles it), the items of that symbol behind it are not run but given
   * back to the queue, behind the one that failed, rather than be decided
   * before it.
   */
  async function inSymbolOrder<T extends { job: ClaimedJob }>(
    items: readonly T[],
    step: (item: T) => Promise<void>,
    onFailure: (item: T, error: unknown) => Promise<void>,
  ): Promise<void> {
    const failedSymbols = new Set<string>();
    const heldBack: ClaimedJob[] = [];
    for (const item of items) {
      if (failedSymbols.has(item.job.symbol)) {
        heldBack.push(item.job);
        continue;
      }
      try {
        await step(item);
      } catch (error) {
        failedSymbols.add(item.job.symbol);
        await onFailure(item, error);
      }
    }
    await giveBack(heldBack);
  }

  /** Jobs not to decide now (held back behind a failed one of their symbol): back to the queue, uncounted. */
  async function giveBack(
    jobs: ClaimedJob[],
    why = "queued behind a failed one of their symbol",
  ): Promise<void> {
    if (jobs.length === 0) return;
    try {
      await releaseClaims(db, workerId, jobs.map((j) => j.id));
      log.warn("Gave back {count} jobs {why}", { count: jobs.length, why });
    } catch (error) {
      // No longer being decided: releaseOrphanedClaims gives them back once the database answers.
      for (const job of jobs) activeIds.delete(job.id);
      orphansPossible = true;
      log.error("Could not give back {count} jobs: {error}", {
        count: jobs.length,
        error: String(error),
      });
    }
  }

  /** The stages before the decision: timings, market hours, context, GEX. */
  async function prepare(job: ClaimedJob): Promise<DecisionInput> {
    const { signal } = job;
    // One clock for every timing (the instance's): received_at was stamped with it too.
    const timings: Record<string, number> = {
      queue_ms: Math.max(0, deps.now() - job.receivedAt.getTime()),
    };
    const timed = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
      const t = performance.now();
      try {
        return await f();
      } finally {
        timings[`${name}_ms`] = round(performance.now() - t);
      }
    };
    const { rules } = deps;
    const status = await timed(
      "market_hours",
      () => marketStatus(new Date(signal.receivedAt), rules.marketHours),
    );
    // Outside market hours the decision is MARKET_CLOSED whatever the data says: skip the
    // lookups. Not just after the close, when a signal still closes positions at a price.
    const needData = !rules.marketHours.enforce || status.open ||
      inExitGrace(status, Date.parse(signal.receivedAt), rules);
    const context = needData ? await timed("context", () => deps.context.get(signal.symbol)) : null;
    const lastKnown = needData && context === null ? deps.context.lastKnown(signal.symbol) : null;
    const gex = needData ? await timed("gex", () => deps.gex.get(signal.symbol)) : null;
    return {
      jobId: job.id,
      signal,
      decideWith: (book) =>
        decide(
          signal,
          context?.context ?? null,
          gex?.levels ?? null,
          book,
          rules,
          lastKnown?.context ?? null,
          deps.now(),
        ),
      contextSnapshotId: context?.id ?? null,
      gexSignalId: gex?.id ?? null,
      timings,
    };
  }

  /**
   * Decides and writes `batch`; `written` runs once the write has committed,
   * before the timings that follow it are stored.
   */
  async function decideBatch(
    batch: { job: ClaimedJob; input: DecisionInput }[],
    o: { waitedMs?: number; written?: () => void } = {},
  ): Promise<{ job: ClaimedJob; recorded: RecordedDecision }[]> {
    const recorded = await recordDecisions(db, batch.map((b) => b.input), {
      workerId,
      now: deps.now,
      book,
      waitedMs: o.waitedMs,
    });
    o.written?.();
    const now = deps.now();
    for (const [i, r] of recorded.entries()) {
      r.timings.end_to_end_ms = Math.max(0, now - batch[i].job.receivedAt.getTime());
    }
    await completeTimings(db, recorded).catch((error) =>
      log.warn("Could not store final timings: {error}", { error: String(error) })
    );
    return recorded.map((r, i) => ({ job: batch[i].job, recorded: r }));
  }

  function report(done: { job: ClaimedJob; recorded: RecordedDecision }[]): void {
    for (const { job, recorded } of done) {
      withContext({ correlation_id: job.correlationId, signal_id: job.signalId }, () => {
        deps.onDecision?.(recorded, job);
        const d = recorded.decision;
        log.info("Decision for {symbol}: {outcome} {reason} in {ms} ms", {
          symbol: job.symbol,
          outcome: d.outcome,
          reason: d.reason,
          ms: recorded.timings.end_to_end_ms,
          decision_id: recorded.decisionId,
          detail: d.message,
        });
      });
    }
  }

  function failed(job: ClaimedJob, error: unknown): Promise<void> {
    return withContext(
      { correlation_id: job.correlationId, signal_id: job.signalId },
      () => handleFailure(job, error),
    );
  }

  async function handleFailure(job: ClaimedJob, error: unknown) {
    if (error instanceof JobLostError) {
      log.warn("{error}", { error: error.message });
      return;
    }
    if (error instanceof ProviderStoppedError) {
      // Stopping: decided without its market data the job would stand so for good.
      await giveBack([job], "whose market data lookup was stopped");
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    if (isUnavailable(error)) {
      // Given back to the queue once the database answers (or reclaimed by another instance).
      orphansPossible = true;
      log.error("Database unavailable while deciding job {job}: {error}", {
        job: job.id,
        error: message,
      });
      return;
    }
    const delaySeconds = Math.min(60, 2 ** (job.attempts - 1)) * (0.75 + Math.random() * 0.5);
    try {
      const status = await db.transaction(async (tx) => {
        const s = await releaseFailedJob(tx, job, {
          error: message,
          maxAttempts: config.maxAttempts,
          delaySeconds,
          workerId,
        });
        if (s === "failed") {
          await recordGiveUp(tx, {
            signalId: job.signalId,
            symbol: job.symbol,
            correlationId: job.correlationId,
            message: `Gave up after ${job.attempts} attempts: ${message}`.slice(0, 2000),
          });
        }
        return s;
      });
      if (status === "lost") {
        log.warn("Job {job} failed here after it was taken back; left to its new owner: {error}", {
          job: job.id,
          error: message,
        });
        return;
      }
      log.error("Job {job} attempt {attempt} failed ({status}): {error}", {
        job: job.id,
        attempt: job.attempts,
        status,
        error: error instanceof Error ? (error.stack ?? message) : message,
      });
    } catch (releaseError) {
      log.error("Could not release failed job {job}: {error}", {
        job: job.id,
        error: String(releaseError),
      });
    }
  }

  return {
    get active() {
      return activeJobs;
    },
    get bookConflicts() {
      return book.retries;
    },
    get bookLocks() {
      return book.locked;
    },
    async start() {
      if (running) return;
      running = true;
      unlisten = await db.listen(JOBS_CHANNEL, poke);
      loopDone = loop();
    },
    async stop() {
      running = false;
      poke();
      await loopDone;
      await Promise.allSettled([...active]);
      await unlisten?.().catch(() => {});
      loopDone = null;
    },
    async runUntilIdle() {
      const wasRunning = running;
      running = true;
      let decided = 0;
      lastReclaim = 0;
      try {
        await reclaimIfDue();
        while (true) {
          const finishedBefore = batchesFinished;
          const started = await claimAndStart();
          if (started === 0) {
            if (active.size > 0) await Promise.race([...active]);
            // Idle only if no batch finished while the claim ran: one that did may have freed
            // heads the claim found still running (the loop above is poked for the same reason).
            else if (batchesFinished === finishedBefore) break;
          }
          decided += started;
        }
      } finally {
        running = wasRunning;
      }
      return decided;
    },
  };
}
