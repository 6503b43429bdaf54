/**
 * The promise behind "200 ACCEPTED": the signal was committed before the
 * answer. After a scenario every ACCEPTED must be a stored row, and the only
 * extra rows allowed are requests whose answer the client never got
 * (timeouts, dropped sockets: the commit may have happened anyway). Every
 * alert is distinct, so a DUPLICATE answer is itself a failure of exact
 * dedup, and each one must have been recorded. Pure.
 */
import type { IngestCounts } from "./analysis.ts";
import { allAttempts, type LoadResult } from "./load_result.ts";
import type { Durability } from "./results.ts";

export function checkDurability(given: readonly LoadResult[], counts: IngestCounts): Durability {
  const phases = given.flatMap(allAttempts);
  const accepted = phases.reduce((n, p) => n + p.accepted, 0);
  const unknown = phases.reduce((n, p) => n + p.timeouts + p.socketErrors + p.cutOff, 0);
  const duplicateAnswers = phases.reduce((n, p) => n + p.duplicate, 0);
  const stored = counts.storedAll;
  return {
    accepted,
    stored,
    unknown,
    duplicateAnswers,
    duplicatesRecorded: counts.duplicatesRecorded,
    ok: stored >= accepted && stored <= accepted + unknown && duplicateAnswers === 0 &&
      counts.duplicatesRecorded === 0,
  };
}

/** Error and warning lines in the service's output tail (JSON logs). */
export function logProblems(
  tail: string,
): { errors: number; warnings: number; first: string | null } {
  const lines = tail.split("\n").filter((l) => l.trim() !== "");
  const errors = lines.filter((l) =>
    l.includes('"level":"ERROR"') || l.includes('"level":"FATAL"')
  );
  const warnings = lines.filter((l) => l.includes('"level":"WARNING"'));
  return {
    errors: errors.length,
    warnings: warnings.length,
    first: errors[0]?.slice(0, 300) ?? null,
  };
}
