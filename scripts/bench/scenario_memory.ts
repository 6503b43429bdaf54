/**
 * Scenario (f), memory: `--memory-rate` requests/s (open loop) for
 * `--memory-minutes`, sampling the service's resident size (VmRSS of the
 * deno process; with PGlite that includes the embedded database) every
 * `--memory-sample` seconds. The bar: flat within 20 % over a
 * 5-minute run at 1,000 req/s. Drift is measured from 30 s in (start-up
 * allocation and JIT settle first) to the end; the slope says whether it
 * still climbs.
 */
import { decisionRate, ingestCounts } from "./analysis.ts";
import { checkDurability, logProblems } from "./durability.ts";
import type { DbChoice } from "./flags.ts";
import type { LoadResult } from "./load_result.ts";
import { cpuSnapshot, type CpuSplit, cpuSplit, rssKib } from "./proc.ts";
import {
  emptyResult,
  type MemoryFigures,
  type MemorySample,
  type ScenarioResult,
} from "./results.ts";
import { type BenchContext, paced } from "./harness.ts";
import { serverAck, unfinishedProbe, withService } from "./service_run.ts";
import type { Summary } from "./stats.ts";

const SETTLE_S = 30;

/** Pure: the memory block's figures from the samples. */
export function memoryFigures(
  samples: readonly MemorySample[],
  o: { minutes: number; rate: number; idleMiB: number | null; backlogAtEnd: number | null },
): MemoryFigures {
  const settled = samples.filter((s) => s.t >= SETTLE_S);
  const window = settled.length >= 2 ? settled : samples;
  const start = window[0]?.rssMiB ?? null;
  const end = window.at(-1)?.rssMiB ?? null;
  let slope: number | null = null;
  if (window.length >= 2) {
    const n = window.length;
    const mx = window.reduce((a, s) => a + s.t, 0) / n;
    const my = window.reduce((a, s) => a + s.rssMiB, 0) / n;
    const sxy = window.reduce((a, s) => a + (s.t - mx) * (s.rssMiB - my), 0);
    const sxx = window.reduce((a, s) => a + (s.t - mx) ** 2, 0);
    slope = sxx === 0 ? 0 : Math.round((sxy / sxx) * 60 * 100) / 100;
  }
  return {
    minutes: o.minutes,
    rate: o.rate,
    idleMiB: o.idleMiB,
    startMiB: start,
    endMiB: end,
    maxMiB: samples.length === 0 ? null : Math.max(...samples.map((s) => s.rssMiB)),
    driftPct: start === null || end === null
      ? null
      : Math.round(((end - start) / start) * 1000) / 10,
    slopeMiBPerMin: slope,
    samples: [...samples],
    backlogAtEnd: o.backlogAtEnd,
  };
}

interface Loaded {
  load: LoadResult;
  samples: MemorySample[];
  idleMiB: number | null;
  backlog: number | null;
  fromMs: number;
  toMs: number;
  cpu: CpuSplit;
  ack: Summary | null;
}

const mib = (kib: number | null) => (kib === null ? null : Math.round((kib / 1024) * 10) / 10);

export async function runMemory(ctx: BenchContext, driver: DbChoice): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `memory ${o.memoryMinutes} min ${o.memoryRate}/s`;
  const prefix = `${ctx.runId}-${driver[0]}m`;
  let result: ScenarioResult | null = null;
  ctx.progress(`${label} [${driver}]: starting a fresh service`);
  await withService(ctx, {
    driver,
    label: `${driver}-memory`,
    load: async ({ svc, db, live }): Promise<Loaded> => {
      // The loaded instance's size (with --split, not the deciding one's); CPU counts both.
      const servicePids = [svc.pid, ...(svc.companionPids ?? [])];
      const idleMiB = mib(rssKib(svc.pid));
      const samples: MemorySample[] = [];
      const startedAt = performance.now();
      const sample = () => {
        const rss = mib(rssKib(svc.pid));
        if (rss !== null) {
          samples.push({ t: Math.round((performance.now() - startedAt) / 100) / 10, rssMiB: rss });
        }
      };
      sample();
      let minutesShown = 0;
      const timer = setInterval(() => {
        sample();
        const last = samples.at(-1);
        if (last !== undefined && Math.floor(last.t / 60) > minutesShown) {
          minutesShown = Math.floor(last.t / 60);
          ctx.progress(`  ${last.t} s: ${last.rssMiB} MiB`);
        }
      }, o.memorySampleS * 1000);
      ctx.progress(`${label} [${driver}]: sampling RSS every ${o.memorySampleS} s`);
      // Not profiled with --profile: the profiler's samples would grow the size measured here.
      const before = cpuSnapshot({ servicePids, database: db.name });
      const fromMs = Date.now();
      let load: LoadResult;
      try {
        load = await paced(ctx, svc.port, {
          rate: o.memoryRate,
          durationS: o.memoryMinutes * 60,
          prefix,
        });
      } finally {
        clearInterval(timer);
      }
      sample();
      const toMs = Date.now();
      const after = cpuSnapshot({ servicePids, database: db.name });
      const backlog = await unfinishedProbe(svc, live).probe().catch(() => null);
      return {
        load,
        samples,
        idleMiB,
        backlog,
        fromMs,
        toMs,
        cpu: cpuSplit(before, after),
        ack: await serverAck(svc),
      };
    },
    analyze: async (db, run, { stop, logTail, book }) => {
      const counts = await ingestCounts(db, prefix);
      const r = emptyResult("memory", label, driver, run.load);
      r.cpu = run.cpu;
      r.serverAckMs = run.ack;
      r.counts = counts;
      r.durability = checkDurability([run.load], counts);
      r.decisionsPerSec = await decisionRate(db, run);
      r.memory = memoryFigures(run.samples, {
        minutes: o.memoryMinutes,
        rate: o.memoryRate,
        idleMiB: run.idleMiB,
        backlogAtEnd: run.backlog,
      });
      r.stop = stop;
      r.book = book;
      r.notes.push("paced, open loop");
      const problems = logProblems(logTail);
      if (problems.errors > 0) {
        r.notes.push(`${problems.errors} error log lines: ${problems.first}`);
      }
      result = r;
    },
  });
  return result!;
}
