/**
 * Issue 6's reference table, and this machine against it. The issue's
 * targets were set on a machine whose figures it gives (2 cores, wrk on the
 * same box, 10 s runs, medians of 5); `deno task bench:ladder` measures the
 * same rungs here, so a target missed on a slower machine can be told from
 * one missed by the code. Pure: the rounds come in, the report goes out.
 */
import { formatTable, ms, rate } from "./format.ts";

export type RungName =
  | "bare"
  | "hono"
  | "verify"
  | "ceiling"
  | "postgres"
  | "pglite"
  | "pglite-driver"
  | "pgbench";

export interface Rung {
  name: RungName;
  connections: number;
  /** How the report names it. */
  label: string;
  /** The issue's figure for this rung, when it gives one. */
  reference: { perSec: number; p99Ms: number } | null;
}

/** The rungs, in the order they run; the issue's figures as its table gives them. */
export const RUNGS: readonly Rung[] = [
  {
    name: "bare",
    connections: 16,
    label: "bare Deno.serve answering 200",
    reference: { perSec: 95_000, p99Ms: 0.3 },
  },
  { name: "hono", connections: 16, label: "Hono route", reference: { perSec: 93_000, p99Ms: 0.4 } },
  {
    name: "verify",
    connections: 16,
    label: "Hono + HMAC (Web Crypto) + zod, no database",
    reference: { perSec: 22_000, p99Ms: 1.6 },
  },
  {
    name: "ceiling",
    connections: 16,
    label: "the service's own route, no store (the bench's ceiling)",
    reference: null,
  },
  {
    name: "postgres",
    connections: 16,
    label: "same + one postgres.js INSERT per request",
    reference: { perSec: 4_600, p99Ms: 11 },
  },
  {
    name: "postgres",
    connections: 64,
    label: "same + one postgres.js INSERT per request",
    reference: { perSec: 5_500, p99Ms: 23 },
  },
  {
    name: "pglite",
    connections: 16,
    label: "same on PGlite (file-backed), one INSERT per request",
    reference: { perSec: 1_250, p99Ms: 28 },
  },
  {
    name: "pglite-driver",
    connections: 16,
    label: "same through the service's PGlite driver (own thread)",
    reference: null,
  },
  {
    name: "pgbench",
    connections: 16,
    label: "pgbench, one-row INSERT per transaction",
    reference: { perSec: 14_500, p99Ms: 2.5 },
  },
];

/** One measurement of one rung. */
export interface RungRun {
  perSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Answers that were not 200 ACCEPTED, and socket errors or timeouts. */
  errors: number;
}

export interface RungResult {
  rung: Rung;
  runs: RungRun[];
  /** Why it was not measured (no Postgres, no pgbench), else null. */
  skipped: string | null;
}

export function rungKey(r: Pick<Rung, "name" | "connections">): string {
  return `${r.name} c=${r.connections}`;
}

/**
 * The run with the median throughput (the lower middle of an even count: a
 * run that happened), so its latencies come from the same run.
 */
export function medianRun(runs: readonly RungRun[]): RungRun {
  const sorted = [...runs].sort((a, b) => a.perSec - b.perSec);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function find(results: readonly RungResult[], name: RungName, connections: number) {
  const r = results.find((x) => x.rung.name === name && x.rung.connections === connections);
  return r === undefined || r.runs.length === 0 ? null : medianRun(r.runs);
}

/**
 * The issue's throughput targets carried to this machine by the rung each
 * is best read against: the embedded store's 2,500/s was twice the issue
 * machine's one-insert-per-request PGlite rung, so here it is twice this
 * machine's; the 1,000/s steady rate was a share of the issue machine's
 * no-database route, here it is this share of this machine's.
 */
export interface ScaledTargets {
  pgliteTarget: { issue: number; multipleOfNaive: number; here: number } | null;
  steadyShare: { issue: number; here: number } | null;
}

export function scaledTargets(results: readonly RungResult[]): ScaledTargets {
  const naivePglite = find(results, "pglite", 16);
  const pgliteRef = RUNGS.find((r) => r.name === "pglite")!.reference!.perSec;
  const verify = find(results, "verify", 16);
  const verifyRef = RUNGS.find((r) => r.name === "verify")!.reference!.perSec;
  return {
    pgliteTarget: naivePglite === null ? null : {
      issue: 2_500,
      multipleOfNaive: 2_500 / pgliteRef,
      here: (2_500 / pgliteRef) * naivePglite.perSec,
    },
    steadyShare: verify === null ? null : { issue: 1_000 / verifyRef, here: 1_000 / verify.perSec },
  };
}

/** The printed report: one row per rung (median round, the rounds' range), then the targets. */
export function ladderReport(results: readonly RungResult[]): string {
  const rows = results.map((r) => {
    const ref = r.rung.reference;
    if (r.skipped !== null || r.runs.length === 0) {
      return [
        r.rung.label,
        String(r.rung.connections),
        "-",
        "-",
        "-",
        "-",
        "-",
        ref ? rate(ref.perSec) : "-",
        ref ? ms(ref.p99Ms) : "-",
        "-",
        `skipped: ${r.skipped ?? "no run"}`,
      ];
    }
    const m = medianRun(r.runs);
    const lo = Math.min(...r.runs.map((x) => x.perSec));
    const hi = Math.max(...r.runs.map((x) => x.perSec));
    const errors = r.runs.reduce((a, x) => a + x.errors, 0);
    return [
      r.rung.label,
      String(r.rung.connections),
      rate(m.perSec),
      r.runs.length > 1 ? `${rate(lo)}-${rate(hi)}` : "-",
      ms(m.p50Ms),
      ms(m.p99Ms),
      String(errors),
      ref ? rate(ref.perSec) : "-",
      ref ? ms(ref.p99Ms) : "-",
      ref ? `${(m.perSec / ref.perSec).toFixed(2)}x` : "-",
      "",
    ];
  });
  const table = formatTable(
    [
      "rung",
      "conns",
      "req/s",
      "rounds",
      "p50 ms",
      "p99 ms",
      "errors",
      "issue req/s",
      "issue p99",
      "here/issue",
      "",
    ],
    rows,
  );
  const t = scaledTargets(results);
  const lines = [table, ""];
  if (t.pgliteTarget !== null) {
    lines.push(
      `Embedded store target: ${rate(t.pgliteTarget.issue)}/s was ` +
        `${t.pgliteTarget.multipleOfNaive.toFixed(1)}x the issue machine's one-insert PGlite ` +
        `rung; the same multiple of this machine's rung is ${rate(t.pgliteTarget.here)}/s.`,
    );
  }
  if (t.steadyShare !== null) {
    lines.push(
      `Steady 1,000/s was ${(t.steadyShare.issue * 100).toFixed(1)} % of the issue machine's ` +
        `no-database route; here it is ${(t.steadyShare.here * 100).toFixed(1)} % of it.`,
    );
  }
  return lines.join("\n").trimEnd();
}
