/**
 * Scenario (d), end to end: a fixed `--e2e-rate` of signals for
 * `--duration`, then wait until every one is decided, and read receipt ->
 * decision from the database: the worker's stored `end_to_end_ms` (what the
 * table shows; it stops just before the decision row's insert and commit),
 * `decisions.created_at - received_at` (transaction start), and on Postgres
 * receipt -> visible to a poller (commit_observer.ts). Also checks that per
 * symbol the decisions committed in receipt order.
 */
import { claimRate, decisionRate, decisionStats } from "./analysis.ts";
import { orderCheck } from "./order_check.ts";
import { observeCommits } from "./commit_observer.ts";
import { logProblems } from "./durability.ts";
import type { DbChoice } from "./flags.ts";
import { watchCpu } from "./cpu_watch.ts";
import type { ScenarioResult } from "./results.ts";
import type { Summary } from "./stats.ts";
import { type BenchContext, paced } from "./harness.ts";
import {
  measuredResult,
  type MeasuredRun,
  serverAck,
  unfinishedProbe,
  waitUntilDecided,
  withService,
} from "./service_run.ts";

interface Loaded extends MeasuredRun {
  fromMs: number;
  toMs: number;
  drainMs: number | null;
  observed: Summary | null;
}

export async function runEndToEnd(ctx: BenchContext, driver: DbChoice): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `e2e ${o.e2eRate}/s`;
  const prefix = `${ctx.runId}-${driver[0]}e${o.e2eRate}`;
  let result: ScenarioResult | null = null;
  ctx.progress(`${label} [${driver}]: starting a fresh service`);
  await withService(ctx, {
    driver,
    label: `${driver}-e2e`,
    load: async ({ svc, db, live }): Promise<Loaded> => {
      const { probe, pollMs } = unfinishedProbe(svc, live);
      const timeoutMs = o.drainTimeoutS * 1000;
      const warmup = o.warmupS > 0
        ? await paced(ctx, svc.port, {
          rate: o.e2eRate,
          durationS: o.warmupS,
          prefix: `${prefix}w`,
        })
        : null;
      // Start measuring from an empty queue, as after a quiet moment.
      await waitUntilDecided(probe, { pollMs, timeoutMs });
      ctx.progress(`${label} [${driver}]: ${o.durationS} s, then waiting for every decision`);
      const observer = live !== null ? observeCommits(live, prefix) : null;
      const watch = await watchCpu(ctx, svc, { database: db.name, name: `${driver}-e2e` });
      const fromMs = Date.now();
      const load = await paced(ctx, svc.port, { rate: o.e2eRate, durationS: o.durationS, prefix });
      const toMs = Date.now();
      const { cpu, profile } = await watch.stop();
      const decidedAt = await waitUntilDecided(probe, { pollMs, timeoutMs });
      const observed = observer === null ? null : await observer.stop();
      return {
        warmup,
        load,
        fromMs,
        toMs,
        cpu,
        profile,
        ack: await serverAck(svc),
        drainMs: decidedAt === null ? null : decidedAt - toMs,
        observed,
      };
    },
    analyze: async (db, run, { stop, logTail, book }) => {
      const r = await measuredResult(db, run, { scenario: "e2e", label, driver, prefix });
      r.decisions = await decisionStats(db, prefix);
      r.decisionsPerSec = await decisionRate(db, run);
      r.claimsPerSec = await claimRate(db, run);
      r.order = await orderCheck(db, prefix);
      r.commitObservedMs = run.observed;
      r.drainMs = run.drainMs;
      r.stop = stop;
      r.book = book;
      r.notes.push("paced, open loop; e2e = stored end_to_end_ms (to the commit, worker's clock)");
      if (run.drainMs === null) {
        r.notes.push(`NOT all decided within ${o.drainTimeoutS} s: e2e is a lower bound`);
      }
      const problems = logProblems(logTail);
      if (problems.errors > 0) {
        r.notes.push(`${problems.errors} error log lines: ${problems.first}`);
      }
      result = r;
    },
  });
  return result!;
}
