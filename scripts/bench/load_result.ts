/**
 * What every load driver (wrk, the paced sender, the closed-loop sender)
 * reports, in one shape, so scenarios and the table never care which ran.
 */
import type { Summary } from "./stats.ts";

export interface LoadResult {
  driver: "wrk" | "deno-paced" | "deno-closed";
  connections: number;
  /** Requests per second asked for (paced); null for as-fast-as-possible. */
  targetRate: number | null;
  /** The measured window, seconds. */
  durationS: number;
  sent: number;
  /** 200 ACCEPTED. */
  accepted: number;
  /** 200 DUPLICATE: zero when every alert is distinct and dedup is exact. */
  duplicate: number;
  /** Every other answer, by status ("200" here is a 200 that was neither). */
  otherStatuses: Record<string, number>;
  socketErrors: number;
  /** No answer within the timeout (3 s: TradingView's limit). */
  timeouts: number;
  /**
   * Requests possibly still in flight when the client stopped and never
   * answered (wrk stops at its deadline without waiting: up to one per
   * connection). They may have been committed, so they count as unknown.
   */
  cutOff: number;
  acceptedPerSec: number;
  /**
   * Acknowledgement latency in ms. For the paced driver it is measured from
   * when the request was due, not when it was written (see paced_driver.ts).
   */
  ackMs: Summary;
  /** Paced driver only: from the write, i.e. what a closed-loop tool would report. */
  ackFromSendMs?: Summary;
  /** Paced driver only: how late requests were written versus their schedule. */
  sendLagMs?: Summary;
  /** wrk only: requests beyond the pre-generated ones (then the run is void and is redone). */
  exhausted?: number;
  /** Earlier attempts that ran out of requests: void as measurements, but what they sent was stored. */
  voidAttempts?: LoadResult[];
}

/** This result and its void attempts: everything that was sent. */
export function allAttempts(r: LoadResult): LoadResult[] {
  return [...(r.voidAttempts ?? []), r];
}

/** Non-200s, 200s that were neither ACCEPTED nor DUPLICATE, socket errors and timeouts. */
export function errorCount(r: LoadResult): number {
  return Object.values(r.otherStatuses).reduce((a, b) => a + b, 0) + r.socketErrors + r.timeouts;
}

/** A mutable tally the Deno drivers fill while running. */
export class Tally {
  accepted = 0;
  duplicate = 0;
  otherStatuses: Record<string, number> = {};
  socketErrors = 0;
  timeouts = 0;

  other(status: number | string): void {
    const key = String(status);
    this.otherStatuses[key] = (this.otherStatuses[key] ?? 0) + 1;
  }

  /** The counted part of a LoadResult, rated over `durationS` (the Deno drivers never cut off). */
  counts(durationS: number): Pick<
    LoadResult,
    | "accepted"
    | "duplicate"
    | "otherStatuses"
    | "socketErrors"
    | "timeouts"
    | "cutOff"
    | "acceptedPerSec"
  > {
    return {
      accepted: this.accepted,
      duplicate: this.duplicate,
      otherStatuses: this.otherStatuses,
      socketErrors: this.socketErrors,
      timeouts: this.timeouts,
      cutOff: 0,
      acceptedPerSec: Math.round((this.accepted / durationS) * 10) / 10,
    };
  }
}
