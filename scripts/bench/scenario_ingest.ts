/**
 * Scenarios (b) ingest and (c) steady, on the real service with a fresh
 * database each:
 * - ingest: closed-loop, as fast as `connections` connections go, for
 *   `--duration`: the durable ingest throughput (compare with the ceiling);
 * - steady: a fixed `--steady-rate` (open loop): the ack latency a
 *   TradingView-like sender sees at that rate.
 * The worker runs as in production meanwhile (it shares the CPU); how many
 * decisions it committed during the window is reported. Afterwards: every
 * ACCEPTED stored, no DUPLICATE, and the group-commit batches.
 */
import { claimRate, decisionRate } from "./analysis.ts";
import type { DbChoice } from "./flags.ts";
import { logProblems } from "./durability.ts";
import { watchCpu } from "./cpu_watch.ts";
import type { ScenarioResult } from "./results.ts";
import { type BenchContext, maxThroughput, paced } from "./harness.ts";
import { measuredResult, type MeasuredRun, serverAck, withService } from "./service_run.ts";

export type IngestMode = { kind: "max"; connections: number } | { kind: "rate"; rate: number };

export async function runIngest(
  ctx: BenchContext,
  driver: DbChoice,
  plan: { mode: IngestMode; rateEstimate?: number },
): Promise<ScenarioResult> {
  const { mode, rateEstimate } = plan;
  const o = ctx.options;
  const scenario = mode.kind === "max" ? "ingest" : "steady";
  const label = mode.kind === "max" ? `ingest c=${mode.connections}` : `steady ${mode.rate}/s`;
  const tag = mode.kind === "max" ? `i${mode.connections}` : `s${mode.rate}`;
  const prefix = `${ctx.runId}-${driver[0]}${tag}`;
  let result: ScenarioResult | null = null;
  ctx.progress(`${label} [${driver}]: starting a fresh service`);

  const send = (port: number, durationS: number, p: string, estimate?: number) =>
    mode.kind === "max"
      ? maxThroughput(ctx, port, {
        connections: mode.connections,
        durationS,
        prefix: p,
        rateEstimate: estimate,
      })
      : paced(ctx, port, { rate: mode.rate, durationS, prefix: p });

  await withService(ctx, {
    driver,
    label: `${driver}-${tag}`,
    load: async ({ svc, db }) => {
      const warmup = o.warmupS > 0 ? await send(svc.port, o.warmupS, `${prefix}w`) : null;
      ctx.progress(`${label} [${driver}]: ${o.durationS} s`);
      // The warm-up's own rate sizes wrk's requests (with headroom); the ceiling bounds it.
      const estimate = warmup !== null && !warmup.exhausted && warmup.acceptedPerSec > 0
        ? Math.min(warmup.acceptedPerSec, rateEstimate ?? Infinity)
        : rateEstimate;
      const watch = await watchCpu(ctx, svc, { database: db.name, name: `${driver}-${tag}` });
      const fromMs = Date.now();
      const load = await send(svc.port, o.durationS, prefix, estimate);
      const toMs = Date.now();
      const { cpu, profile } = await watch.stop();
      return {
        warmup,
        load,
        fromMs,
        toMs,
        cpu,
        profile,
        ack: await serverAck(svc),
      };
    },
    analyze: async (db, run: Loaded, { stop, logTail, book }) => {
      const r = await measuredResult(db, run, { scenario, label, driver, prefix });
      r.decisionsPerSec = await decisionRate(db, run);
      r.claimsPerSec = await claimRate(db, run);
      r.stop = stop;
      r.book = book;
      r.notes.push(mode.kind === "max" ? `${run.load.driver} closed loop` : "paced, open loop");
      const problems = logProblems(logTail);
      if (problems.errors > 0) {
        r.notes.push(`${problems.errors} error log lines: ${problems.first}`);
      }
      result = r;
    },
  });
  return result!;
}

interface Loaded extends MeasuredRun {
  fromMs: number;
  toMs: number;
}
