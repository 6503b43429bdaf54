/**
 * `deno task bench:compare FILE...`: the JSON of several bench runs side by
 * side. Runs of the same code and service settings (a "variant": git commit,
 * a fingerprint of uncommitted changes, `--service-env`) are pooled, every
 * round of a `--repeat` run counting as one run, so interleaved A/B runs
 * read as two rows per scenario instead of a pile of tables. Each figure is
 * the median over the variant's runs; the figure the scenario's target reads
 * (repeat.ts medianKey) also gets its range and its change against the first
 * variant. A run can be given a name instead (LABEL=FILE): for changes the
 * run cannot see, such as a Postgres setting. On a shared 2-core VM one run
 * says little: compare medians over several interleaved runs. Pure; scripts/bench_compare.ts reads the files.
 */
import { formatTable, ms, rate } from "./format.ts";
import { failedChecks, keyFormat, medianKey, rowKey } from "./repeat.ts";
import { rowRate } from "./report.ts";
import type { ScenarioName } from "./flags.ts";
import type { BenchReport, ScenarioResult } from "./results.ts";

export interface LoadedRun {
  /** Where it came from, for the legend. */
  file: string;
  report: BenchReport;
  /** A name given on the command line (LABEL=FILE), instead of the variant the run records. */
  label?: string;
}

/** Why a file is not a bench result, or null when it is one. */
export function notABenchReport(value: unknown): string | null {
  if (typeof value !== "object" || value === null) return "not a JSON object";
  const v = value as Partial<BenchReport>;
  if (v.schema !== "optionstrat-bench/1") {
    return `schema is ${JSON.stringify(v.schema)}, not "optionstrat-bench/1"`;
  }
  if (!Array.isArray(v.results)) return "no results array";
  if (v.rounds !== null && v.rounds !== undefined && !Array.isArray(v.rounds)) {
    return "rounds is neither null nor an array";
  }
  return null;
}

/** The code and settings a run measured: commit, `+<diff>` when uncommitted changes, service env. */
export function variantOf(report: BenchReport): string {
  const git = report.git;
  const code = (git.short ?? "unknown") +
    (git.dirty ? `+${(git.diff ?? "dirty").slice(0, 8)}` : "");
  const env = Object.entries(report.options.serviceEnv ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  return [code, ...env, ...(report.options.split ? ["--split"] : [])].join(" ");
}

/** The variant a run is pooled in: its given label, or what it recorded. */
export function runVariant(run: LoadedRun): string {
  return run.label ?? variantOf(run.report);
}

/** One measured round's rows: a `--repeat` run's rounds, or a single run's rows. */
function roundsOf(report: BenchReport): ScenarioResult[][] {
  if (!report.rounds || report.rounds.length === 0) return [report.results];
  // Rows that ran once (memory) are only in `results`.
  const inRounds = new Set(report.rounds.flat().map(rowKey));
  const once = report.results.filter((r) => !inRounds.has(rowKey(r)));
  return once.length === 0 ? report.rounds : [...report.rounds, once];
}

/** One row of one round, with that round's ceiling (for the ratio). */
interface Sample {
  row: ScenarioResult;
  ceiling: number | null;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function known(values: readonly (number | null | undefined)[]): number[] {
  return values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
}

export interface ComparedRow {
  scenario: ScenarioName;
  label: string;
  db: string;
  variant: string;
  runs: number;
  acceptedPerSec: number | null;
  pctCeiling: number | null;
  ackP50: number | null;
  ackP99: number | null;
  e2eP99: number | null;
  /** Burst: from its start until every decision was seen committed. */
  decidedMs: number | null;
  decisionsPerSec: number | null;
  serviceCores: number | null;
  postgresCores: number | null;
  key: { by: string; median: number | null; min: number | null; max: number | null };
  /** Change of the key figure's median against the first variant's, percent. */
  changePct: number | null;
  /** True when the change is for the better (more throughput, less latency). */
  better: boolean | null;
  /** Runs in which a promise failed (lost or doubled signals, errors, order). */
  failedRuns: number;
}

/** Every scenario row of every variant, in the order they first appear; pure. */
export function compareRuns(runs: readonly LoadedRun[]): ComparedRow[] {
  const variants: string[] = [];
  const samples = new Map<string, Map<string, Sample[]>>(); // row key -> variant -> samples
  const rowOrder: string[] = [];
  for (const run of runs) {
    const { report } = run;
    const variant = runVariant(run);
    if (!variants.includes(variant)) variants.push(variant);
    for (const round of roundsOf(report)) {
      const ceilingRow = round.find((r) => r.scenario === "ceiling");
      const ceiling = ceilingRow ? ceilingRow.load.acceptedPerSec : null;
      for (const row of round) {
        const key = rowKey(row);
        if (!samples.has(key)) {
          samples.set(key, new Map());
          rowOrder.push(key);
        }
        const byVariant = samples.get(key)!;
        if (!byVariant.has(variant)) byVariant.set(variant, []);
        byVariant.get(variant)!.push({ row, ceiling });
      }
    }
  }
  const out: ComparedRow[] = [];
  for (const key of rowOrder) {
    const byVariant = samples.get(key)!;
    // Only the first variant is the baseline: a row it lacks is compared with nothing.
    const first = byVariant.get(variants[0]);
    const baseline = first ? median(known(first.map((s) => medianKey(s.row).value))) : null;
    for (const variant of variants) {
      const group = byVariant.get(variant);
      if (!group) continue;
      const rows = group.map((s) => s.row);
      const keyInfo = medianKey(rows[0]);
      const keyValues = known(rows.map((r) => medianKey(r).value));
      const keyMedian = median(keyValues);
      let changePct: number | null = null;
      let better: boolean | null = null;
      if (variant !== variants[0] && baseline !== null && baseline !== 0 && keyMedian !== null) {
        changePct = ((keyMedian - baseline) / baseline) * 100;
        better = changePct === 0 ? null : (changePct > 0) === keyInfo.higherIsBetter;
      }
      const rated = rows[0].scenario === "ceiling" || rows[0].scenario === "ingest";
      out.push({
        scenario: rows[0].scenario,
        label: rows[0].label,
        db: rows[0].db,
        variant,
        runs: rows.length,
        acceptedPerSec: median(known(rows.map(rowRate))),
        pctCeiling: rated
          ? median(
            known(
              group.map((s) => s.ceiling ? (100 * s.row.load.acceptedPerSec) / s.ceiling : null),
            ),
          )
          : null,
        ackP50: median(known(rows.map((r) => r.load.ackMs.p50))),
        ackP99: median(known(rows.map((r) => r.load.ackMs.p99))),
        e2eP99: median(known(rows.map((r) => r.decisions?.storedEndToEndMs.p99))),
        decidedMs: median(known(rows.map((r) => r.burst?.lastDecision.lastObservedMs))),
        decisionsPerSec: median(known(rows.map((r) => r.decisionsPerSec))),
        serviceCores: median(known(rows.map((r) => r.cpu?.service))),
        postgresCores: median(known(rows.map((r) => r.cpu?.postgres))),
        key: {
          by: keyInfo.by,
          median: keyMedian,
          min: keyValues.length ? Math.min(...keyValues) : null,
          max: keyValues.length ? Math.max(...keyValues) : null,
        },
        changePct,
        better,
        failedRuns: rows.filter((r) => failedChecks(r).length > 0).length,
      });
    }
  }
  return out;
}

const cores = (v: number | null) => (v === null ? "-" : v.toFixed(2));

function keyText(row: ComparedRow): string {
  const f = keyFormat(row.scenario);
  const { by, median, min, max } = row.key;
  if (median === null || min === null || max === null) return `${by} -`;
  const range = row.runs > 1 && min !== max ? ` (${f(min)}-${f(max)})` : "";
  return `${by} ${f(median)}${range}`;
}

function changeText(row: ComparedRow): string {
  if (row.changePct === null) return "-";
  const sign = row.changePct > 0 ? "+" : "";
  const verdict = row.better === null ? "" : row.better ? " better" : " worse";
  return `${sign}${row.changePct.toFixed(0)} %${verdict}`;
}

/** The printed comparison: the variants and their files, then one line per scenario and variant. */
export function comparisonReport(runs: readonly LoadedRun[]): string {
  const rows = compareRuns(runs);
  const variants = [...new Set(runs.map(runVariant))];
  const legend = formatTable(
    ["variant", "files", "runs", "measured"],
    variants.map((v) => {
      const mine = runs.filter((r) => runVariant(r) === v);
      const starts = mine.map((r) => r.report.startedAt).sort();
      return [
        v,
        mine.map((r) => r.file.split("/").pop()).join(", "),
        String(mine.reduce((n, r) => n + roundsOf(r.report).length, 0)),
        starts.length > 1 ? `${starts[0]} .. ${starts[starts.length - 1]}` : starts[0],
      ];
    }),
  );
  const table = formatTable(
    [
      "scenario",
      "db",
      "variant",
      "runs",
      "accepted/s",
      "% ceiling",
      "ack p50",
      "ack p99",
      "e2e p99",
      "decided",
      "dec/s",
      "cores svc/pg",
      "target's figure (range)",
      "vs first",
      "failed",
    ],
    rows.map((r) => [
      r.label,
      r.db,
      r.variant,
      String(r.runs),
      rate(r.acceptedPerSec),
      r.pctCeiling === null ? "-" : `${r.pctCeiling.toFixed(0)} %`,
      ms(r.ackP50),
      ms(r.ackP99),
      ms(r.e2eP99),
      ms(r.decidedMs),
      rate(r.decisionsPerSec),
      r.serviceCores === null && r.postgresCores === null
        ? "-"
        : `${cores(r.serviceCores)}/${cores(r.postgresCores)}`,
      keyText(r),
      changeText(r),
      r.failedRuns === 0 ? "-" : `${r.failedRuns} of ${r.runs}`,
    ]),
  );
  return [
    `${runs.length} bench result files, ${variants.length} variants ` +
    "(commit, +fingerprint of uncommitted changes, --service-env); " +
    "a --repeat run counts each round",
    legend,
    "",
    "Each figure is the median over the variant's runs (ms unless named); 'vs first' compares the " +
    "median of the figure the scenario's target reads with the first variant's; 'failed': runs " +
    "with errors or a broken check (durability, order, decisions).",
    table,
  ].join("\n");
}
