/**
 * One bench run: the ceiling first (every throughput is read against it),
 * then per database ingest at each connection count, steady, end to end,
 * burst and memory, each on its own fresh service and database. With
 * --repeat, that many rounds of it (the ceiling in each, so a ratio never
 * compares two different hours of the machine), reduced by repeat.ts.
 * Returns the report (results, environment, the printed text); writing it
 * is the caller's.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchSymbols, hmacSigner } from "./alerts.ts";
import { registerCleanup } from "./cleanup.ts";
import type { BenchOptions } from "./flags.ts";
import { type BenchContext, lazyTemplate } from "./harness.ts";
import { combineRounds } from "./repeat.ts";
import { fullReport } from "./report.ts";
import type { BenchReport, GitState, ScenarioResult } from "./results.ts";
import { runBurst } from "./scenario_burst.ts";
import { runCeiling, runFloor } from "./scenario_ceiling.ts";
import { runEndToEnd } from "./scenario_e2e.ts";
import { runIngest } from "./scenario_ingest.ts";
import { runMemory } from "./scenario_memory.ts";
import { serviceSettingsLine } from "./server_process.ts";
import { wrkAvailable } from "./wrk_driver.ts";

export interface RunHooks {
  argv: string[];
  progress: (message: string) => void;
}

/** The repository the bench measures: the one it is part of. */
const REPO_ROOT = new URL("../../", import.meta.url);

async function git(root: URL, args: string[]): Promise<string | null> {
  try {
    const { code, stdout } = await new Deno.Command("git", {
      args,
      cwd: root,
      stdout: "piped",
      stderr: "null",
    }).output();
    return code === 0 ? new TextDecoder().decode(stdout).trim() : null;
  } catch {
    return null;
  }
}

/**
 * The code being measured: HEAD and whether the working tree differs from it,
 * in tracked files or in untracked ones that are not ignored (a new migration
 * changes the service as much as an edit). `diff` fingerprints those changes,
 * so a run can tell that someone edited the service while it was measuring,
 * and bench:compare tells two variants of one commit apart. Markdown is prose
 * (README, docs): writing up a run while another measures is not a variant.
 */
export async function gitState(root: URL = REPO_ROOT): Promise<GitState> {
  const notProse = ["--", ".", ":(exclude,glob)**/*.md"];
  const [sha, short, diff, untracked] = await Promise.all([
    git(root, ["rev-parse", "HEAD"]),
    git(root, ["rev-parse", "--short", "HEAD"]),
    git(root, ["diff", "HEAD", ...notProse]),
    git(root, ["ls-files", "--others", "--exclude-standard", "-z", ...notProse]),
  ]);
  if (diff === null || untracked === null) return { sha, short, dirty: null, diff: null };
  const added: string[] = [];
  for (const path of untracked.split("\0").filter((p) => p !== "").sort()) {
    const content = await Deno.readTextFile(join(fileURLToPath(root), path))
      .catch(() => "(unreadable)");
    added.push(`untracked ${path}\n${content}`);
  }
  const changes = [diff, ...added].join("\n");
  const digest = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(changes))),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("").slice(0, 16);
  return { sha, short, dirty: diff !== "" || added.length > 0, diff: digest };
}

/** Every chosen scenario once, the ceiling first; memory only when asked. */
async function runRound(ctx: BenchContext, o: { memory: boolean }): Promise<ScenarioResult[]> {
  const { options } = ctx;
  const results: ScenarioResult[] = [];
  const has = (name: BenchOptions["scenarios"][number]) => options.scenarios.includes(name);
  if (has("ceiling")) results.push(await runCeiling(ctx));
  if (has("steady")) results.push(await runFloor(ctx));
  const ceiling = results.find((r) => r.scenario === "ceiling")?.load.acceptedPerSec;
  for (const db of options.dbs) {
    if (has("ingest")) {
      for (const connections of options.ingestConnections) {
        results.push(
          await runIngest(ctx, db, { mode: { kind: "max", connections }, rateEstimate: ceiling }),
        );
      }
    }
    if (has("steady")) {
      results.push(await runIngest(ctx, db, { mode: { kind: "rate", rate: options.steadyRate } }));
    }
    if (has("e2e")) results.push(await runEndToEnd(ctx, db));
    if (has("burst")) results.push(await runBurst(ctx, db));
    if (has("memory") && o.memory) results.push(await runMemory(ctx, db));
  }
  return results;
}

export async function runBench(options: BenchOptions, hooks: RunHooks): Promise<BenchReport> {
  const startedAt = new Date();
  const gitAtStart = await gitState();
  const loadStart = Deno.loadavg();
  const useWrk = options.driver === "wrk" || (options.driver === "auto" && await wrkAvailable());
  if (options.driver === "wrk" && !await wrkAvailable()) {
    throw new Error("--driver wrk: wrk is not installed (/usr/bin/wrk)");
  }
  const tmpDir = await Deno.makeTempDir({ prefix: "optionstrat-bench-" });
  const forgetTmp = registerCleanup(() => Deno.remove(tmpDir, { recursive: true }));
  const secret = `bench-${crypto.randomUUID()}`;
  const ctx: BenchContext = {
    options,
    secret,
    sign: hmacSigner(secret),
    runId: crypto.randomUUID().slice(0, 6),
    symbols: benchSymbols(options.symbols),
    seedSymbols: benchSymbols(Math.max(options.symbols, options.burstSymbols)),
    tmpDir,
    useWrk,
    cores: navigator.hardwareConcurrency,
    progress: hooks.progress,
    pgliteTemplate: lazyTemplate(tmpDir),
  };
  const rounds: ScenarioResult[][] = [];
  try {
    for (let round = 1; round <= options.repeat; round++) {
      if (options.repeat > 1) ctx.progress(`Round ${round} of ${options.repeat}`);
      // Memory runs once: five minutes per round would buy little.
      rounds.push(await runRound(ctx, { memory: round === 1 }));
    }
  } finally {
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    forgetTmp();
  }
  const results = options.repeat === 1 ? rounds[0] : combineRounds(rounds);
  const gitAtEnd = await gitState();
  const changed = gitAtStart.sha !== gitAtEnd.sha || gitAtStart.diff !== gitAtEnd.diff;
  const loadEnd = Deno.loadavg();
  const header = [
    `optionstrat-backend bench, ${startedAt.toISOString()}, git ${gitAtStart.short ?? "?"}${
      gitAtStart.dirty ? " (uncommitted changes)" : ""
    }, ` +
    `deno ${Deno.version.deno}, ${ctx.cores} cpus, load average ${
      loadStart.map((l) => l.toFixed(2)).join(" ")
    } -> ` +
    `${loadEnd.map((l) => l.toFixed(2)).join(" ")}`,
    `max-throughput client: ${
      useWrk ? `wrk (${options.wrkThreads} thread)` : "Deno closed loop"
    }; ` +
    `fixed-rate client: Deno, open loop; ack latency in ms; e2e = receipt -> decision ` +
    `(worker's stored end_to_end_ms, timed once its write committed)` +
    (options.repeat > 1
      ? `; ${options.repeat} rounds, each row its median round (notes give the range)`
      : ""),
    serviceSettingsLine(options.serviceEnv),
    ...(options.split
      ? [
        "split (--split): on Postgres the loaded instance runs with WORKER_ENABLED=false and a " +
        "second one on the same database, sent no webhooks, decides; svc CPU is the two together",
      ]
      : []),
    ...(changed
      ? [
        `WARNING: the code changed during the run (git ${gitAtStart.short} -> ${gitAtEnd.short}` +
        `${gitAtStart.diff !== gitAtEnd.diff ? ", working tree edited" : ""}): ` +
        "scenarios measured different code; run again",
      ]
      : []),
  ].join("\n");
  return {
    schema: "optionstrat-bench/1",
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    git: { ...gitAtStart, changedDuringRun: changed, atEnd: gitAtEnd },
    deno: Deno.version,
    cpuCount: ctx.cores,
    loadAverage: { start: loadStart, end: loadEnd },
    argv: hooks.argv,
    // The server URL may carry a password: keep only where it points.
    options: {
      ...options,
      postgresUrl: options.postgresUrl === null ? null : redactUrl(options.postgresUrl),
    },
    results,
    rounds: options.repeat === 1 ? null : rounds,
    table: fullReport(results, header),
  };
}

/**
 * `url` with its password masked, for the result file. The password ends at
 * the last "@" before the host (as the driver reads it), not the first: a
 * bare "@" in it left the rest in the file.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:@/]*):.*@/, "//$1:***@");
  }
}

/** Why `--out` cannot take the result files (made if missing), or null when it can. */
export async function outDirProblem(dir: string): Promise<string | null> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    const probe = await Deno.makeTempFile({ dir, prefix: ".bench-out-" });
    await Deno.remove(probe);
    return null;
  } catch (error) {
    return `--out ${dir}: ${error instanceof Error ? error.message : error}`;
  }
}

/** `<out>/<ISO time>-<short sha>.json`; colons become dashes so the name works everywhere. */
export function resultPath(
  outDir: string,
  report: { startedAt: string; git: { short: string | null } },
): string {
  const time = report.startedAt.replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  return `${outDir.replace(/\/+$/, "")}/${time}-${report.git.short ?? "nogit"}.json`;
}
