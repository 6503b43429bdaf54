/**
 * The printed report, from the results alone (pure): the main table (one
 * row per scenario and database), then the blocks of report_blocks.ts and
 * the targets of targets.ts. Figures are ms unless a column says otherwise.
 */
import { formatTable, ms, pct, rate } from "./format.ts";
import { errorCount } from "./load_result.ts";
import { burstBlock, diagnosticsBlock, memoryBlock, profileBlock } from "./report_blocks.ts";
import { repeatsNote } from "./repeat.ts";
import type { ScenarioResult } from "./results.ts";
import { ceilingRate, targetsBlock } from "./targets.ts";

/** accepted/s of a row; for the burst, over the time until the last answer. */
export function rowRate(r: ScenarioResult): number {
  if (r.burst && r.burst.allAcknowledgedAfterMs) {
    return r.load.accepted / (r.burst.allAcknowledgedAfterMs / 1000);
  }
  return r.load.acceptedPerSec;
}

function notesOf(r: ScenarioResult): string {
  const notes: string[] = [];
  const repeated = repeatsNote(r);
  if (repeated !== null) notes.push(repeated);
  if (r.repeats && r.repeats.problems.length > 0) {
    notes.push(`CHECKS FAILED IN ROUNDS: ${r.repeats.problems.join(", ")}`);
  }
  const d = r.durability;
  if (d) {
    notes.push(
      !d.ok
        ? `CHECK FAILED: stored ${d.stored}, ACCEPTED ${d.accepted}, unanswered ${d.unknown}, ` +
          `DUPLICATE ${d.duplicateAnswers}`
        : d.stored === d.accepted
        ? `stored=ACCEPTED (${d.stored})`
        : `stored ${d.stored} = ACCEPTED ${d.accepted} + ${
          d.stored - d.accepted
        } of ${d.unknown} unanswered`,
    );
  }
  if (r.load.duplicate > 0) notes.push(`DUPLICATE ${r.load.duplicate}`);
  if (r.order) {
    notes.push(r.order.held ? "order held" : `ORDER BROKEN (${r.order.violatingSymbols} symbols)`);
  }
  if (r.decisionsPerSec !== null && r.scenario !== "burst") {
    notes.push(
      `${rate(r.decisionsPerSec)} dec/s` +
        (r.claimsPerSec ? ` in ${rate(r.claimsPerSec)} claims/s` : ""),
    );
  }
  if (r.scenario === "e2e" && r.drainMs === null) notes.push("NOT ALL DECIDED");
  if (r.cpu) {
    const c = r.cpu;
    const named = c.otherNamed.map((n) => `${n.name} ${n.cores}`).join(", ");
    notes.push(
      `cpu svc ${c.service} cli ${c.client} pg ${c.postgres} oth ${c.other}` +
        (named === "" ? "" : ` (${named})`),
    );
  }
  return [...r.notes.slice(0, 1), ...notes, ...r.notes.slice(1)].join("; ");
}

export function mainTable(results: readonly ScenarioResult[]): string {
  const ceiling = ceilingRate(results);
  const rows = results.map((r) => {
    const isMax = r.scenario === "ceiling" || r.scenario === "ingest";
    const e2e = r.decisions?.storedEndToEndMs;
    const errors = errorCount(r.load);
    return [
      r.label,
      r.db,
      rate(rowRate(r)),
      isMax && ceiling ? pct((r.load.acceptedPerSec / ceiling) * 100) : "-",
      ms(r.load.ackMs.p50),
      ms(r.load.ackMs.p95),
      ms(r.load.ackMs.p99),
      ms(e2e?.p50),
      ms(e2e?.p99),
      String(errors),
      notesOf(r),
    ];
  });
  return formatTable(
    [
      "scenario",
      "db",
      "accepted/s",
      "% ceiling",
      "ack p50",
      "ack p95",
      "ack p99",
      "e2e p50",
      "e2e p99",
      "errors",
      "notes",
    ],
    rows,
  );
}

export function fullReport(results: readonly ScenarioResult[], header: string): string {
  const blocks = [
    header,
    mainTable(results),
    burstBlock(results),
    memoryBlock(results),
    diagnosticsBlock(results),
    profileBlock(results),
    targetsBlock(results),
  ];
  return blocks.filter((b): b is string => b !== null).join("\n\n");
}
