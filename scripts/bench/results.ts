/**
 * The shape of a bench run's results: one `ScenarioResult` per scenario and
 * database, and the report that the table is printed from and the JSON file
 * holds. Every figure is raw (ms, counts, per-second rates); formatting is
 * report.ts's job.
 */
import type { DecisionStats, GroupCommitStats, IngestCounts } from "./analysis.ts";
import type { OrderCheck } from "./order_check.ts";
import type { BenchOptions, ScenarioName } from "./flags.ts";
import type { LoadResult } from "./load_result.ts";
import type { ProfileSummary } from "./cpu_watch.ts";
import type { CpuSplit } from "./proc.ts";
import type { StopResult } from "./server_process.ts";
import type { Repeats } from "./repeat.ts";
import type { Summary } from "./stats.ts";

export type DbLabel = "none" | "pglite" | "postgres";

export interface Durability {
  /** ACCEPTED answers over every phase of the scenario (warm-up included). */
  accepted: number;
  /** Signals in the database afterwards. */
  stored: number;
  /** Requests whose outcome the client never learned (timeouts, socket errors, cut off). */
  unknown: number;
  duplicateAnswers: number;
  duplicatesRecorded: number;
  /** stored >= accepted (ACCEPTED means committed) and stored <= accepted + unknown. */
  ok: boolean;
}

export interface BurstFigures {
  alerts: number;
  symbols: number;
  connections: number;
  accepted: number;
  /** All answered 200 ACCEPTED. */
  allAcknowledged: boolean;
  /** Longest single request, write to answer. */
  maxAckMs: number | null;
  /** From the burst's start until the last answer. */
  allAcknowledgedAfterMs: number | null;
  /**
   * From the burst's start until the last decision was committed, bracketed:
   * at least `lastStoredMs` (the worker's stored end-to-end, taken just before
   * its final insert and commit), at most `lastObservedMs` (when the bench's
   * poll first saw nothing left to decide; poll interval in `pollMs`).
   */
  lastDecision: {
    startedMs: number | null;
    lastStoredMs: number | null;
    lastObservedMs: number | null;
    pollMs: number;
  };
  allDecided: boolean;
  orderHeld: boolean;
}

export interface MemorySample {
  /** Seconds since the load started. */
  t: number;
  rssMiB: number;
}

export interface MemoryFigures {
  minutes: number;
  rate: number;
  idleMiB: number | null;
  /** First sample 30 s into the load (heap settled), last sample, largest. */
  startMiB: number | null;
  endMiB: number | null;
  maxMiB: number | null;
  /** (end - start) / start, percent. */
  driftPct: number | null;
  /** Least-squares slope after the first 30 s, MiB per minute. */
  slopeMiBPerMin: number | null;
  samples: MemorySample[];
  /** Jobs not yet decided when the load stopped (the worker's backlog). */
  backlogAtEnd: number | null;
}

/** A service's decision batches that lost the positions to another writer (GET /metrics). */
export interface BookCounters {
  /** Decided again because the positions changed after they were read. */
  conflicts: number;
  /** Written holding the positions' lock, after losing them three times. */
  locked: number;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  /** e.g. "ingest c=64". */
  label: string;
  db: DbLabel;
  load: LoadResult;
  warmup: LoadResult | null;
  cpu: CpuSplit | null;
  /** With --profile: the server's main thread over the measured load. */
  profile: ProfileSummary | null;
  durability: Durability | null;
  counts: IngestCounts | null;
  groupCommit: GroupCommitStats | null;
  /** Decisions of this phase (e2e, burst) as the database recorded them. */
  decisions: DecisionStats | null;
  /** Decision transactions started per second during the measured load. */
  decisionsPerSec: number | null;
  /** The worker's claims per second, of the decisions committed during the measured load. */
  claimsPerSec?: number | null;
  /**
   * Postgres e2e only: receipt to when the bench, polling the database every
   * few ms, first saw the committed decision (an upper bound on commit).
   */
  commitObservedMs: Summary | null;
  /** The service's own ack times (GET /metrics/latency webhookAck, last 10,000). */
  serverAckMs: Summary | null;
  /** Waiting for every decision after the load; null when not waited for. */
  drainMs: number | null;
  order: OrderCheck | null;
  burst: BurstFigures | null;
  memory: MemoryFigures | null;
  stop: StopResult | null;
  /** The deciding instance's book counters at the end (absent in results from before them). */
  book?: BookCounters | null;
  /** With --repeat: this row is the median of its rounds. */
  repeats: Repeats | null;
  notes: string[];
}

export interface GitState {
  sha: string | null;
  short: string | null;
  /** Tracked files differ from HEAD. */
  dirty: boolean | null;
  /** Fingerprint of those differences (null when git is unavailable). */
  diff: string | null;
}

export interface BenchReport {
  schema: "optionstrat-bench/1";
  startedAt: string;
  finishedAt: string;
  /** The code measured, when the run started. */
  git: GitState & { changedDuringRun: boolean; atEnd: GitState };
  deno: typeof Deno.version;
  cpuCount: number;
  loadAverage: { start: number[]; end: number[] };
  argv: string[];
  options: Omit<BenchOptions, "postgresUrl"> & { postgresUrl: string | null };
  results: ScenarioResult[];
  /** With --repeat: every round's rows, in round order; `results` holds their medians. */
  rounds: ScenarioResult[][] | null;
  table: string;
}

export function emptyResult(
  scenario: ScenarioName,
  label: string,
  db: DbLabel,
  load: LoadResult,
): ScenarioResult {
  return {
    scenario,
    label,
    db,
    load,
    warmup: null,
    cpu: null,
    profile: null,
    durability: null,
    counts: null,
    groupCommit: null,
    decisions: null,
    decisionsPerSec: null,
    claimsPerSec: null,
    commitObservedMs: null,
    serverAckMs: null,
    drainMs: null,
    order: null,
    burst: null,
    memory: null,
    stop: null,
    book: null,
    repeats: null,
    notes: [],
  };
}
