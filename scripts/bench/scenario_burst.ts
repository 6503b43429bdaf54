/**
 * Scenario (e), the bar-close burst: `--burst-alerts` distinct alerts over
 * `--burst-symbols` symbols (round-robin, so each symbol's alerts are
 * spread through the burst), signed beforehand and fired at once over
 * `--burst-connections` pre-opened connections, each sending its next as
 * soon as the last is answered. Then poll until every job is decided.
 * Measures: all acknowledged (every answer 200 ACCEPTED), the longest single
 * acknowledgement, time from the burst's start to the last answer and to the
 * last committed decision, and whether per symbol the decisions committed in
 * receipt order. TradingView gives up on a webhook after 3 s; the targets
 * are all acknowledged within 1 s and all decided within 3 s.
 */
import { decisionStats } from "./analysis.ts";
import { orderCheck } from "./order_check.ts";
import { alertBody, benchSymbols, rawRequest } from "./alerts.ts";
import { runClosed } from "./closed_driver.ts";
import { logProblems } from "./durability.ts";
import type { DbChoice } from "./flags.ts";
import { watchCpu } from "./cpu_watch.ts";
import type { ScenarioResult } from "./results.ts";
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
  startWallMs: number;
  lastAnswerMs: number | null;
  decidedAtMs: number | null;
  pollMs: number;
}

/** A short warm-up rate: enough to compile the hot paths, little backlog to drain. */
const WARMUP_RATE = 200;

export async function runBurst(ctx: BenchContext, driver: DbChoice): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `burst ${o.burstAlerts}/${o.burstSymbols}sym`;
  const prefix = `${ctx.runId}-${driver[0]}b`;
  const symbols = benchSymbols(o.burstSymbols);
  let result: ScenarioResult | null = null;
  ctx.progress(`${label} [${driver}]: starting a fresh service`);
  await withService(ctx, {
    driver,
    label: `${driver}-burst`,
    load: async ({ svc, db, live }): Promise<Loaded> => {
      const { probe, pollMs } = unfinishedProbe(svc, live);
      const timeoutMs = o.drainTimeoutS * 1000;
      const warmup = o.warmupS > 0
        ? await paced(ctx, svc.port, {
          rate: WARMUP_RATE,
          durationS: o.warmupS,
          prefix: `${prefix}w`,
        })
        : null;
      await waitUntilDecided(probe, { pollMs, timeoutMs });
      // Signed before the clock starts: the burst measures the service, not the signing.
      const now = Date.now();
      const requests = Array.from(
        { length: o.burstAlerts },
        (_, n) =>
          rawRequest(alertBody(n, { symbols, prefix, timeMs: now }), {
            sign: ctx.sign,
            host: `127.0.0.1:${svc.port}`,
          }),
      );
      ctx.progress(`${label} [${driver}]: firing over ${o.burstConnections} connections`);
      const watch = await watchCpu(ctx, svc, { database: db.name, name: `${driver}-burst` });
      const run = await runClosed({
        port: svc.port,
        connections: o.burstConnections,
        count: o.burstAlerts,
        makeRequest: (n) => requests[n],
      });
      const decidedAtMs = await waitUntilDecided(probe, { pollMs, timeoutMs });
      const { cpu, profile } = await watch.stop();
      const answered = Array.from(run.answeredAfterMs).filter(Number.isFinite);
      return {
        warmup,
        load: run.result,
        startWallMs: run.startWallMs,
        lastAnswerMs: answered.length === 0 ? null : Math.max(...answered),
        decidedAtMs,
        pollMs,
        cpu,
        profile,
        ack: await serverAck(svc),
      };
    },
    analyze: async (db, run, { stop, logTail, book }) => {
      const r = await measuredResult(db, run, { scenario: "burst", label, driver, prefix });
      const decisions = await decisionStats(db, prefix);
      const order = await orderCheck(db, prefix);
      const since = (ms: number | null) =>
        ms === null ? null : Math.round((ms - run.startWallMs) * 10) / 10;
      r.decisions = decisions;
      r.order = order;
      r.drainMs = run.decidedAtMs === null
        ? null
        : Math.round(run.decidedAtMs - run.startWallMs - (run.lastAnswerMs ?? 0));
      r.burst = {
        alerts: o.burstAlerts,
        symbols: o.burstSymbols,
        connections: o.burstConnections,
        accepted: run.load.accepted,
        allAcknowledged: run.load.accepted === o.burstAlerts,
        maxAckMs: run.load.ackMs.max,
        allAcknowledgedAfterMs: run.lastAnswerMs === null
          ? null
          : Math.round(run.lastAnswerMs * 10) / 10,
        lastDecision: {
          startedMs: since(decisions.lastDecisionStartMs),
          lastStoredMs: since(decisions.lastStoredDecisionMs),
          lastObservedMs: since(run.decidedAtMs),
          pollMs: run.pollMs,
        },
        // Every burst signal that was stored has its decision (unstored ones show as not acknowledged).
        allDecided: decisions.undecided === 0 && decisions.decided > 0,
        orderHeld: order.held,
      };
      r.stop = stop;
      r.book = book;
      r.notes.push(`closed loop over ${o.burstConnections} pre-opened connections`);
      const problems = logProblems(logTail);
      if (problems.errors > 0) {
        r.notes.push(`${problems.errors} error log lines: ${problems.first}`);
      }
      result = r;
    },
  });
  return result!;
}
