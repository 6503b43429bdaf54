/**
 * The issue's targets, each measured against the results, PASS or FAIL.
 * They are later work: the bench reports them and never fails on them.
 * Pure.
 */
import { formatTable, ms, rate } from "./format.ts";
import { errorCount } from "./load_result.ts";
import type { ScenarioResult } from "./results.ts";

/** accepted/s of the no-database ceiling, the denominator of every "% of ceiling". */
export function ceilingRate(results: readonly ScenarioResult[]): number | null {
  const c = results.find((r) => r.scenario === "ceiling");
  return c ? c.load.acceptedPerSec : null;
}

interface Target {
  what: string;
  measured: string;
  target: string;
  pass: boolean | null;
}

export function targets(results: readonly ScenarioResult[]): Target[] {
  const out: Target[] = [];
  const ceiling = ceilingRate(results);
  /** The steady rate on the no-store route, by rate: what the machine and client alone add. */
  const floors = new Map(
    results.filter((r) => r.scenario === "steady" && r.db === "none")
      .map((r) => [r.load.targetRate, r.load.ackMs.p99]),
  );
  for (const db of ["pglite", "postgres"] as const) {
    const rows = results.filter((r) => r.db === db);
    const ingest = rows.filter((r) => r.scenario === "ingest");
    if (ingest.length > 0) {
      const best = ingest.reduce((a, b) => (b.load.acceptedPerSec > a.load.acceptedPerSec ? b : a));
      if (ceiling) {
        const share = (best.load.acceptedPerSec / ceiling) * 100;
        out.push({
          what: `durable ingest / ceiling [${db}, best: ${best.label}]`,
          // One decimal: 44.7 % shown as "45 %" beside FAIL would read as a contradiction.
          measured: `${share.toFixed(1)} %`,
          target: ">= 45 %",
          pass: share >= 45,
        });
      }
      if (db === "pglite") {
        out.push({
          what: `embedded PGlite accepted/s [${best.label}]`,
          measured: rate(best.load.acceptedPerSec),
          target: ">= 2,500",
          pass: best.load.acceptedPerSec >= 2500,
        });
      }
    }
    for (const r of rows.filter((r) => r.scenario === "steady")) {
      out.push({
        what: `ack p99 at ${rate(r.load.targetRate)} req/s [${db}]`,
        measured: `${ms(r.load.ackMs.p99)} ms${
          floors.has(r.load.targetRate)
            ? ` (no-store floor ${ms(floors.get(r.load.targetRate)!)} ms)`
            : ""
        }`,
        target: "<= 10 ms",
        pass: r.load.ackMs.p99 !== null && r.load.ackMs.p99 <= 10 && errorCount(r.load) === 0,
      });
    }
    for (const r of rows.filter((r) => r.scenario === "e2e" && r.decisions)) {
      const stored = r.decisions!.storedEndToEndMs.p99;
      const seen = r.commitObservedMs?.p99 ?? null;
      out.push({
        what: `e2e p99 at ${rate(r.load.targetRate)} signals/s [${db}]`,
        measured: `${ms(stored)} ms stored${
          seen !== null ? `, ${ms(seen)} ms seen committed` : ""
        }`,
        target: "<= 50 ms",
        pass: stored !== null && stored <= 50 && (seen === null || seen <= 50) &&
          r.drainMs !== null,
      });
    }
    for (const r of rows.filter((r) => r.burst)) {
      const b = r.burst!;
      out.push({
        what: `burst fully acknowledged [${db}]`,
        measured: `${ms(b.allAcknowledgedAfterMs)} ms (${b.accepted}/${b.alerts})`,
        target: "<= 1000 ms",
        pass: b.allAcknowledged && b.allAcknowledgedAfterMs !== null &&
          b.allAcknowledgedAfterMs <= 1000,
      });
      out.push({
        what: `burst fully decided [${db}]`,
        measured: `${ms(b.lastDecision.lastObservedMs)} ms seen (>= ${
          ms(b.lastDecision.lastStoredMs)
        })`,
        target: "<= 3000 ms",
        pass: b.allDecided && b.lastDecision.lastObservedMs !== null &&
          b.lastDecision.lastObservedMs <= 3000,
      });
      out.push({
        what: `burst per-symbol order [${db}]`,
        measured: b.orderHeld ? "held" : "broken",
        target: "held",
        pass: b.orderHeld,
      });
    }
    for (const r of rows.filter((r) => r.memory)) {
      const m = r.memory!;
      out.push({
        what: `RSS drift over ${m.minutes} min at ${rate(m.rate)} req/s [${db}]`,
        measured: m.driftPct === null ? "-" : `${m.driftPct.toFixed(1)} %`,
        target: "within 20 %",
        pass: m.driftPct === null ? null : Math.abs(m.driftPct) <= 20,
      });
    }
    for (const r of rows) {
      const problems = r.repeats?.problems ?? [];
      if (problems.length > 0) {
        out.push({
          what: `every round's checks [${r.label}, ${db}]`,
          measured: problems.join("; "),
          target: "none failed",
          pass: false,
        });
      }
      if (r.durability && !r.durability.ok) {
        out.push({
          what: `ACCEPTED means stored, no DUPLICATE [${r.label}, ${db}]`,
          measured: `stored ${r.durability.stored} / ACCEPTED ${r.durability.accepted}`,
          target: "equal",
          pass: false,
        });
      }
    }
  }
  return out;
}

export function targetsBlock(results: readonly ScenarioResult[]): string | null {
  const t = targets(results);
  if (t.length === 0) return null;
  return [
    "Targets (from the issue; later work, measured here)",
    formatTable(
      ["target", "measured", "goal", "result"],
      t.map((
        x,
      ) => [x.what, x.measured, x.target, x.pass === null ? "-" : x.pass ? "PASS" : "FAIL"]),
    ),
  ].join("\n");
}
