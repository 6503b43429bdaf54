/**
 * `deno task bench [flags]`: starts the real service (main.ts) on loopback
 * on a fresh database per scenario (embedded PGlite by default, Postgres
 * when DATABASE_URL is set, both with --db both), drives it with signed,
 * distinct alerts (wrk when installed, plus a paced open-loop Deno client
 * for fixed rates), and prints one table against the no-database ceiling,
 * with the bar-close burst and memory blocks. Every raw figure goes to
 * bench-results/<ISO time>-<git short sha>.json for comparing commits.
 * Bounded in time; loopback only; every server it starts is stopped and
 * every database it creates is dropped, also on Ctrl-C.
 *
 * Exit code: 0 when the run completed (targets may still FAIL: they are
 * measured, not enforced), 1 when it could not run, 2 for a usage error.
 */
import { runCleanups } from "./bench/cleanup.ts";
import { HELP, parseBenchArgs, timeBoundS, UsageError } from "./bench/flags.ts";
import { outDirProblem, resultPath, runBench } from "./bench/run_bench.ts";

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseBenchArgs(Deno.args, Deno.env.toObject());
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\nSee deno task bench --help`);
      return 2;
    }
    throw error;
  }
  if (parsed.help) {
    console.log(HELP);
    return 0;
  }
  const { options } = parsed;
  // Checked before the load, not after it: the run's figures would have nowhere to go.
  const unwritable = await outDirProblem(options.outDir);
  if (unwritable !== null) {
    console.error(`${unwritable}\n\nSee deno task bench --help`);
    return 2;
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      console.error(`\n${signal}: stopping the servers and dropping the databases`);
      runCleanups().finally(() => Deno.exit(130));
    });
  }
  const progress = options.quiet ? () => {} : (m: string) => console.error(m);
  const boundS = timeBoundS(options);
  const watchdog = setTimeout(() => {
    console.error(`Bench exceeded its time bound of ${boundS} s: stopping everything`);
    runCleanups().finally(() => Deno.exit(1));
  }, boundS * 1000);
  try {
    const report = await runBench(options, { argv: Deno.args, progress });
    await Deno.mkdir(options.outDir, { recursive: true });
    const path = resultPath(options.outDir, report);
    await Deno.writeTextFile(path, `${JSON.stringify(report, null, 2)}\n`);
    console.log(report.table);
    console.log(`\nResults: ${path}`);
    return 0;
  } catch (error) {
    console.error(
      `Bench failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`,
    );
    await runCleanups();
    return 1;
  } finally {
    clearTimeout(watchdog);
  }
}

if (import.meta.main) Deno.exit(await main());
