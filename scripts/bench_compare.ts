/**
 * `deno task bench:compare FILE...`: prints bench result files (the JSON
 * `deno task bench` writes to bench-results/) side by side, pooled by
 * variant (scripts/bench/compare.ts). Give the runs of an interleaved A/B
 * in any order; the first file's variant is the one the others are
 * compared with.
 *
 * Exit code: 0 when printed, 2 for a usage error or a file that is not a
 * bench result.
 */
import { comparisonReport, type LoadedRun, notABenchReport } from "./bench/compare.ts";
import type { BenchReport } from "./bench/results.ts";

const USAGE = `Compare bench runs: deno task bench:compare [LABEL=]FILE [[LABEL=]FILE...]

FILE is a result of deno task bench (bench-results/<time>-<commit>.json).
Runs of the same commit, uncommitted changes and --service-env are pooled as
one variant (each round of a --repeat run counts as a run); LABEL=FILE puts a
run in the variant LABEL instead (for what a run cannot record, such as a
Postgres setting). Every figure is the median over a variant's runs, and the
figure each scenario's target reads is compared with the first file's variant.`;

/** "A=path.json" names the run's variant; a path alone does not (a label has no "/"). */
export function parseRunArg(arg: string): { label?: string; file: string } {
  const m = /^([^=/]+)=(.+)$/.exec(arg);
  return m ? { label: m[1], file: m[2] } : { file: arg };
}

export async function loadRuns(args: readonly string[]): Promise<LoadedRun[]> {
  const runs: LoadedRun[] = [];
  for (const arg of args) {
    const { label, file } = parseRunArg(arg);
    let value: unknown;
    try {
      value = JSON.parse(await Deno.readTextFile(file));
    } catch (error) {
      const why = error instanceof Deno.errors.NotFound
        ? "no such file"
        : error instanceof SyntaxError
        ? "not JSON"
        : error instanceof Error
        ? error.message
        : String(error);
      throw new Error(`${file}: ${why}`);
    }
    const problem = notABenchReport(value);
    if (problem !== null) throw new Error(`${file}: not a bench result (${problem})`);
    runs.push({ file, report: value as BenchReport, ...(label === undefined ? {} : { label }) });
  }
  return runs;
}

async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  const unknownFlag = args.find((a) => a.startsWith("-"));
  if (args.length === 0 || unknownFlag !== undefined) {
    console.error(unknownFlag ? `Unknown flag ${unknownFlag}\n\n${USAGE}` : USAGE);
    return 2;
  }
  try {
    console.log(comparisonReport(await loadRuns(args)));
    return 0;
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
