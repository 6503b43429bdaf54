/** Bench results to feed the report, repeat and compare code in tests. */
import type { LoadResult } from "../scripts/bench/load_result.ts";
import type { Durability } from "../scripts/bench/results.ts";
import { summarizeMs } from "../scripts/bench/stats.ts";

/** A paced run of 100 requests in a second, every one ACCEPTED; `overrides` win. */
export function load(overrides: Partial<LoadResult> = {}): LoadResult {
  return {
    driver: "deno-paced",
    connections: 4,
    targetRate: 100,
    durationS: 1,
    sent: 100,
    accepted: 100,
    duplicate: 0,
    otherStatuses: {},
    socketErrors: 0,
    timeouts: 0,
    cutOff: 0,
    acceptedPerSec: 100,
    ackMs: summarizeMs([1, 2, 3]),
    ...overrides,
  };
}

/** A run that lost an acknowledged signal: 10 ACCEPTED, 9 stored, none unanswered. */
export const LOST_ONE: Durability = {
  accepted: 10,
  stored: 9,
  unknown: 0,
  duplicateAnswers: 0,
  duplicatesRecorded: 0,
  ok: false,
};
