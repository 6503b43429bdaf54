/**
 * `deno task bench:ladder [flags]`: issue 6's reference table measured on
 * this machine (scripts/bench/ladder.ts), so the service's figures from
 * `deno task bench` can be read against what the machine itself allows. Each
 * rung is a fresh server (scripts/bench/ladder_server.ts, or the bench's
 * ceiling server), warmed up, then loaded closed-loop for `--duration` by wrk
 * (or the bench's Deno client without it) with one signed alert, which these
 * servers, having no dedup, accept every time; the commit ceiling is
 * pgbench. Rounds run the rungs in turn; each row is its median round.
 * Loopback only, bounded in time; the databases it makes are dropped.
 */
import { parseArgs } from "node:util";
import { databaseUrlProblem } from "../core/config.ts";
import { alertBody, hmacSigner, rawRequest } from "./bench/alerts.ts";
import { freshPostgres } from "./bench/bench_database.ts";
import { registerCleanup, runCleanups } from "./bench/cleanup.ts";
import { runClosed } from "./bench/closed_driver.ts";
import {
  ladderReport,
  type Rung,
  rungKey,
  type RungResult,
  type RungRun,
  RUNGS,
} from "./bench/ladder.ts";
import { whole } from "./bench/flags.ts";
import { gitState, outDirProblem, redactUrl, resultPath } from "./bench/run_bench.ts";
import { type ServerProcess, startCeiling, startLadder } from "./bench/server_process.ts";
import { percentileOf } from "./bench/stats.ts";
import { WRK_PATH, wrkAvailable } from "./bench/wrk_driver.ts";

const HELP = `deno task bench:ladder [flags]

Issue 6's reference table on this machine: bare Deno.serve, a Hono route, Hono + HMAC + zod,
the service's own route without a store, one INSERT per request on Postgres and on PGlite (also
through the service's own PGlite driver), and pgbench's one-row INSERT per transaction, each
beside the issue's own figure.

  --repeat N      rounds (default 5, as the issue's medians of 5)
  --duration S    seconds of load per rung (default 10)
  --warmup S      seconds of load before each (default 2)
  --rungs LIST    comma-separated rung names (default all): ${
  [...new Set(RUNGS.map((r) => r.name))].join(", ")
}
  --out DIR       where the JSON goes (default bench-results)

The Postgres rungs and pgbench use DATABASE_URL's server (a fresh database each, dropped after);
without it they are skipped.`;

const SECRET = "ladder-secret-0123456789abcdef";

interface Options {
  repeat: number;
  durationS: number;
  warmupS: number;
  rungs: Set<string>;
  outDir: string;
  databaseUrl: string | null;
}

/** The command line and environment, checked; null for --help. Throws on a bad flag. */
export function parseLadderArgs(
  args: string[],
  env: Record<string, string | undefined>,
): Options | null {
  const { values } = parseArgs({
    args,
    options: {
      repeat: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      rungs: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return null;
  const names = new Set(RUNGS.map((r) => r.name as string));
  const rungs = new Set(values.rungs?.split(",").map((s) => s.trim()) ?? names);
  for (const r of rungs) if (!names.has(r)) throw new Error(`Unknown rung "${r}"`);
  // Blank is unset, as for the service and the bench: "" would reach the driver's defaults.
  const databaseUrl = env.DATABASE_URL?.trim() || null;
  const urlProblem = databaseUrl === null ? null : databaseUrlProblem(databaseUrl);
  if (urlProblem !== null) throw new Error(urlProblem);
  return {
    // Bounded: the ladder has no watchdog, and "1e12" would run for ever.
    repeat: whole("repeat", values.repeat, 5, 1, 15),
    durationS: whole("duration", values.duration, 10, 1, 3600),
    warmupS: whole("warmup", values.warmup, 2, 0, 600),
    rungs,
    outDir: values.out ?? "bench-results",
    databaseUrl,
  };
}

/** One signed alert, replayed: valid for every rung, since none of them dedups. */
function theAlert() {
  const body = alertBody(0, { symbols: ["LADDER"], prefix: "ladder", timeMs: Date.now() });
  const sign = hmacSigner(SECRET);
  return { body, signature: sign(body), sign };
}

function wrkScript(body: string, signature: string): string {
  if (body.includes("]]")) throw new Error("The alert cannot go in a Lua long string");
  return `wrk.method = "POST"
wrk.body = [[${body}]]
wrk.headers["content-type"] = "application/json"
wrk.headers["x-signature"] = "${signature}"
accepted = 0
function response(status, headers, body)
  if status == 200 and body:find('"status":"ACCEPTED"', 1, true) then accepted = accepted + 1 end
end
threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local acc = 0
  for _, t in ipairs(threads) do acc = acc + t:get("accepted") end
  local e = summary.errors
  io.write(string.format(
    'LADDER_JSON {"requests":%d,"duration_us":%d,"accepted":%d,"p50_us":%d,"p99_us":%d,' ..
    '"socket_errors":%d}\\n', summary.requests, summary.duration, acc,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
`;
}

async function loadWithWrk(port: number, connections: number, durationS: number, dir: string) {
  const { body, signature } = theAlert();
  const script = `${dir}/ladder.lua`;
  await Deno.writeTextFile(script, wrkScript(body, signature));
  const { code, stdout, stderr } = await new Deno.Command(WRK_PATH, {
    args: [
      "-t2",
      `-c${connections}`,
      `-d${durationS}s`,
      "--timeout",
      "3s",
      "-s",
      script,
      `http://127.0.0.1:${port}/webhook`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const line = out.split("\n").find((l) => l.startsWith("LADDER_JSON "));
  if (code !== 0 || line === undefined) {
    throw new Error(`wrk failed (${code}): ${new TextDecoder().decode(stderr).slice(0, 300)}`);
  }
  const w = JSON.parse(line.slice("LADDER_JSON ".length));
  const seconds = w.duration_us / 1e6;
  return {
    perSec: Math.round(w.accepted / seconds),
    p50Ms: w.p50_us / 1000,
    p99Ms: w.p99_us / 1000,
    errors: w.requests - w.accepted + w.socket_errors,
  } satisfies RungRun;
}

async function loadWithDeno(port: number, connections: number, durationS: number) {
  const { body, sign } = theAlert();
  const request = rawRequest(body, { sign, host: `127.0.0.1:${port}` });
  const { result } = await runClosed({
    port,
    connections,
    durationMs: durationS * 1000,
    makeRequest: () => request,
  });
  const errors = result.sent - result.accepted;
  return {
    perSec: Math.round(result.acceptedPerSec),
    p50Ms: result.ackMs.p50,
    p99Ms: result.ackMs.p99,
    errors,
  };
}

/** pgbench's commit ceiling on a fresh database: tps, and latency from its per-transaction log. */
async function pgbench(serverUrl: string, o: Options, dir: string): Promise<RungRun> {
  const db = await freshPostgres(serverUrl);
  const forget = registerCleanup(() => db.dispose());
  try {
    const admin = await db.open();
    await admin.exec("create table ladder_pgbench (id bigserial primary key, v integer)");
    await admin.close();
    const url = db.serviceEnv.DATABASE_URL;
    const script = `${dir}/insert.sql`;
    await Deno.writeTextFile(script, "insert into ladder_pgbench (v) values (1);\n");
    const run = async (seconds: number, log: boolean) => {
      const { code, stdout, stderr } = await new Deno.Command("pgbench", {
        args: [
          "-n",
          "-c",
          "16",
          "-j",
          "2",
          "-T",
          String(seconds),
          "-f",
          script,
          ...(log ? ["-l", `--log-prefix=${dir}/pgbench`] : []),
          url,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(stdout);
      const tps = out.match(/tps = ([\d.]+)/);
      if (code !== 0 || tps === null) {
        throw new Error(
          `pgbench failed (${code}): ${new TextDecoder().decode(stderr).slice(0, 300)}`,
        );
      }
      return Number(tps[1]);
    };
    if (o.warmupS > 0) await run(o.warmupS, false);
    const perSec = await run(o.durationS, true);
    // Each log line: client, transaction, latency (µs), script, epoch s, epoch µs.
    const latencies: number[] = [];
    for await (const f of Deno.readDir(dir)) {
      if (!f.name.startsWith("pgbench.")) continue;
      for (const l of (await Deno.readTextFile(`${dir}/${f.name}`)).split("\n")) {
        const us = Number(l.split(" ")[2]);
        if (l !== "" && Number.isFinite(us)) latencies.push(us / 1000);
      }
      await Deno.remove(`${dir}/${f.name}`);
    }
    const sorted = Float64Array.from(latencies).sort();
    return {
      perSec: Math.round(perSec),
      p50Ms: sorted.length > 0 ? percentileOf(sorted, 50) : null,
      p99Ms: sorted.length > 0 ? percentileOf(sorted, 99) : null,
      errors: 0,
    };
  } finally {
    await db.dispose();
    forget();
  }
}

async function pgbenchInstalled(): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("pgbench", { args: ["--version"], stdout: "null" })
      .output();
    return code === 0;
  } catch {
    return false;
  }
}

/** Why `rung` cannot run here, or null. */
function whySkipped(rung: Rung, o: Options, hasPgbench: boolean): string | null {
  if (rung.name === "postgres" && o.databaseUrl === null) return "DATABASE_URL not set";
  if (rung.name === "pgbench") {
    if (o.databaseUrl === null) return "DATABASE_URL not set";
    if (!hasPgbench) return "pgbench not installed";
  }
  return null;
}

async function runRung(
  rung: Rung,
  o: Options,
  load: (port: number, connections: number, seconds: number) => Promise<RungRun>,
  dir: string,
): Promise<RungRun> {
  if (rung.name === "pgbench") return await pgbench(o.databaseUrl!, o, dir);
  const cleanups: (() => Promise<unknown>)[] = [];
  let server: ServerProcess;
  if (rung.name === "ceiling") {
    server = await startCeiling({ secret: SECRET, overrides: {} });
  } else if (rung.name === "postgres") {
    const db = await freshPostgres(o.databaseUrl!);
    cleanups.push(() => db.dispose());
    server = await startLadder({ mode: "postgres", secret: SECRET, env: db.serviceEnv });
  } else if (rung.name === "pglite" || rung.name === "pglite-driver") {
    const dataDir = await Deno.makeTempDir({ dir, prefix: "pglite-" });
    cleanups.push(() => Deno.remove(dataDir, { recursive: true }));
    server = await startLadder({
      mode: rung.name,
      secret: SECRET,
      env: { LADDER_PGLITE_DIR: dataDir },
    });
  } else {
    server = await startLadder({ mode: rung.name, secret: SECRET });
  }
  cleanups.unshift(() => server.stop());
  const forget = registerCleanup(async () => {
    for (const c of cleanups) await c().catch(() => {});
  });
  try {
    if (o.warmupS > 0) await load(server.port, rung.connections, o.warmupS);
    return await load(server.port, rung.connections, o.durationS);
  } finally {
    for (const c of cleanups) await c().catch(() => {});
    forget();
  }
}

async function main(): Promise<number> {
  let o: Options | null;
  try {
    o = parseLadderArgs(Deno.args, Deno.env.toObject());
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${HELP}`);
    return 2;
  }
  if (o === null) {
    console.log(HELP);
    return 0;
  }
  const options = o;
  const unwritable = await outDirProblem(options.outDir);
  if (unwritable !== null) {
    console.error(unwritable);
    return 2;
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      runCleanups().finally(() => Deno.exit(130));
    });
  }
  const dir = await Deno.makeTempDir({ prefix: "bench-ladder-" });
  const useWrk = await wrkAvailable();
  const hasPgbench = await pgbenchInstalled();
  const load = useWrk
    ? (port: number, c: number, s: number) => loadWithWrk(port, c, s, dir)
    : loadWithDeno;
  const startedAt = new Date().toISOString();
  const rungs = RUNGS.filter((r) => options.rungs.has(r.name));
  const results: RungResult[] = rungs.map((rung) => ({
    rung,
    runs: [],
    skipped: whySkipped(rung, options, hasPgbench),
  }));
  try {
    for (let round = 1; round <= options.repeat; round++) {
      for (const r of results) {
        if (r.skipped !== null) continue;
        console.error(`round ${round}/${options.repeat}: ${rungKey(r.rung)}`);
        r.runs.push(await runRung(r.rung, options, load, dir));
      }
    }
  } finally {
    await runCleanups();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const report = ladderReport(results);
  const git = await gitState();
  const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
    .match(/model name\s*:\s*(.+)/)?.[1] ?? null;
  const header =
    `bench:ladder ${startedAt} git ${git.short ?? "?"}; ${navigator.hardwareConcurrency} ` +
    `cores (${cpu ?? "unknown CPU"}); load: ${useWrk ? "wrk" : "Deno closed-loop client"}; ` +
    `${options.repeat} round(s) of ${options.durationS} s`;
  console.log(`${header}\n\n${report}`);
  await Deno.mkdir(options.outDir, { recursive: true });
  const path = resultPath(options.outDir, { startedAt, git }).replace(/\.json$/, "-ladder.json");
  await Deno.writeTextFile(
    path,
    `${
      JSON.stringify(
        {
          kind: "ladder",
          startedAt,
          git,
          cpu,
          useWrk,
          options: {
            ...options,
            rungs: [...options.rungs],
            databaseUrl: options.databaseUrl === null ? null : redactUrl(options.databaseUrl),
          },
          results,
        },
        null,
        2,
      )
    }\n`,
  );
  console.log(`\nResults: ${path}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
