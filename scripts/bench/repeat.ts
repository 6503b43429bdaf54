/**
 * `--repeat N`: every scenario run in N rounds, each row reduced to its
 * median round. The round is kept whole (a p99 from one round beside a p50
 * from another describes no run), chosen by the figure its target reads;
 * with an even N the worse of the two middle rounds. A check that failed in
 * any round (durability, order, errors, undecided signals) is carried over
 * to the row, so a median never hides a broken promise. Pure.
 */
import { ms, rate } from "./format.ts";
import { errorCount } from "./load_result.ts";
import type { ScenarioName } from "./flags.ts";
import type { ScenarioResult } from "./results.ts";

export interface Repeats {
  rounds: number;
  /** The figure the median round was chosen by, e.g. "ack p99". */
  by: string;
  /** That figure in every round, in round order (null: the round did not measure it). */
  values: (number | null)[];
  /** Which round this row is (1-based). */
  chosen: number;
  /** Failed checks, e.g. "round 2: 3 errors"; empty when every round passed them. */
  problems: string[];
}

interface MedianKey {
  by: string;
  value: number | null;
  /** accepted/s: more is better; latencies: less is better. */
  higherIsBetter: boolean;
  format: (n: number) => string;
}

/** How the figure a scenario's target reads is printed: a rate, ms, or a percentage. */
export function keyFormat(scenario: ScenarioName): (n: number) => string {
  return scenario === "ceiling" || scenario === "ingest"
    ? rate
    : scenario === "memory"
    ? (n) => `${n.toFixed(1)} %`
    : ms;
}

/** Rows of one scenario and database, across rounds and runs. */
export function rowKey(r: ScenarioResult): string {
  return `${r.db}\u0000${r.label}`;
}

/** The figure a scenario's target reads, which picks its median round. */
export function medianKey(r: ScenarioResult): MedianKey {
  const format = keyFormat(r.scenario);
  switch (r.scenario) {
    case "ceiling":
    case "ingest":
      return { by: "accepted/s", value: r.load.acceptedPerSec, higherIsBetter: true, format };
    case "steady":
      return { by: "ack p99", value: r.load.ackMs.p99, higherIsBetter: false, format };
    case "e2e":
      return {
        by: "e2e p99",
        value: r.decisions?.storedEndToEndMs.p99 ?? null,
        higherIsBetter: false,
        format,
      };
    case "burst":
      return {
        by: "time to decided",
        value: r.burst?.lastDecision.lastObservedMs ?? null,
        higherIsBetter: false,
        format,
      };
    case "memory": {
      const drift = r.memory?.driftPct ?? null;
      return {
        by: "RSS drift",
        value: drift === null ? null : Math.abs(drift),
        higherIsBetter: false,
        format,
      };
    }
  }
}

/** What failed in one round's row; empty when nothing did. */
export function failedChecks(r: ScenarioResult): string[] {
  const out: string[] = [];
  const errors = errorCount(r.load);
  if (errors > 0) out.push(`${errors} errors`);
  const d = r.durability;
  if (d && !d.ok) out.push(`stored ${d.stored} / ACCEPTED ${d.accepted} (${d.unknown} unanswered)`);
  if (r.order && !r.order.held) out.push("per-symbol order broken");
  if (r.scenario === "e2e" && r.drainMs === null) out.push("not all decided");
  const b = r.burst;
  if (b) {
    if (!b.allAcknowledged) out.push(`burst ${b.accepted}/${b.alerts} acknowledged`);
    if (!b.allDecided) out.push("burst not all decided");
    if (!b.orderHeld) out.push("burst per-symbol order broken");
  }
  return out;
}

/**
 * One row from its rounds: the median round by `medianKey`, a round that
 * measured nothing counting as the worst, with `repeats` filled in. A single
 * round is returned as it is.
 */
export function medianRound(runs: readonly ScenarioResult[]): ScenarioResult {
  if (runs.length === 0) throw new Error("medianRound: no rounds");
  if (runs.length === 1) return runs[0];
  const keyed = runs.map((r, i) => ({ r, i, key: medianKey(r) }));
  const badness = (k: MedianKey) =>
    k.value === null || !Number.isFinite(k.value)
      ? Infinity
      : k.higherIsBetter
      ? -k.value
      : k.value;
  // Stable: equal figures keep round order.
  const ranked = [...keyed].sort((a, b) => badness(a.key) - badness(b.key));
  const median = ranked[Math.floor(runs.length / 2)];
  const problems = keyed.flatMap(({ r, i }) =>
    failedChecks(r).map((problem) => `round ${i + 1}: ${problem}`)
  );
  return {
    ...median.r,
    repeats: {
      rounds: runs.length,
      by: median.key.by,
      values: keyed.map(({ key }) => key.value),
      chosen: median.i + 1,
      problems,
    },
  };
}

/**
 * Rows from rounds of rows: each scenario and database (by label) reduced to
 * its median round, in the order the first round ran them. A scenario that
 * ran in fewer rounds (memory runs once) is reduced over those.
 */
export function combineRounds(rounds: readonly (readonly ScenarioResult[])[]): ScenarioResult[] {
  const groups = new Map<string, ScenarioResult[]>();
  for (const round of rounds) {
    for (const r of round) {
      const key = rowKey(r);
      const group = groups.get(key);
      if (group) group.push(r);
      else groups.set(key, [r]);
    }
  }
  return [...groups.values()].map(medianRound);
}

/** "median of 5 by ack p99: 12.1-34.0", for the notes column. */
export function repeatsNote(r: ScenarioResult): string | null {
  const rep = r.repeats;
  if (!rep) return null;
  const format = medianKey(r).format;
  const known = rep.values.filter((v): v is number => v !== null && Number.isFinite(v));
  const range = known.length === 0
    ? "not measured"
    : `${format(Math.min(...known))}-${format(Math.max(...known))}`;
  const missing = rep.values.length - known.length;
  return `median of ${rep.rounds} by ${rep.by} (range ${range}${
    missing > 0 ? `, ${missing} not measured` : ""
  })`;
}
