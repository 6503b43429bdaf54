/**
 * What every scenario shares: the run's context (secret, signer, symbols,
 * temp directory, which load generator) and the two ways of loading a
 * server: as fast as possible (closed loop), or at a fixed rate (open loop).
 * Running a scenario on a fresh service is service_run.ts.
 */
import { alertBody, rawRequest } from "./alerts.ts";
import { buildPgliteTemplate } from "./bench_database.ts";
import { runClosed } from "./closed_driver.ts";
import type { BenchOptions } from "./flags.ts";
import type { LoadResult } from "./load_result.ts";
import { runPaced } from "./paced_driver.ts";
import { runWrk } from "./wrk_driver.ts";

export interface BenchContext {
  options: BenchOptions;
  secret: string;
  sign: (body: string) => string;
  /** Short and unique per bench run: every alert id starts with it. */
  runId: string;
  /** Symbols the load scenarios spread alerts over. */
  symbols: string[];
  /** Every symbol any scenario uses (load and burst): each gets market data. */
  seedSymbols: string[];
  tmpDir: string;
  useWrk: boolean;
  cores: number;
  progress: (message: string) => void;
  /** Built on first use, once per run. */
  pgliteTemplate: () => Promise<string>;
}

export function lazyTemplate(tmpDir: string): () => Promise<string> {
  let built: Promise<string> | null = null;
  return () => built ??= buildPgliteTemplate(tmpDir);
}

/** When nothing is known about a server yet, assume it may do this many requests per second. */
const RATE_GUESS = 20_000;

/** Request n of a phase: a fresh alert stamped with the time it is sent, signed. */
function requestMaker(ctx: BenchContext, o: { port: number; prefix: string }) {
  const host = `127.0.0.1:${o.port}`;
  return (n: number, wallMs: number) =>
    rawRequest(alertBody(n, { symbols: ctx.symbols, prefix: o.prefix, timeMs: wallMs }), {
      sign: ctx.sign,
      host,
    });
}

/**
 * As many requests as `connections` closed-loop connections get answered
 * in `durationS`: wrk when available, else the Deno closed-loop client. For
 * wrk the requests are generated beforehand, sized from `rateEstimate`; a
 * run that ran out is redone with twice as many (new ids, so nothing repeats).
 */
export async function maxThroughput(
  ctx: BenchContext,
  port: number,
  o: { connections: number; durationS: number; prefix: string; rateEstimate?: number },
): Promise<LoadResult> {
  const now = Date.now();
  if (!ctx.useWrk) {
    const run = await runClosed({
      port,
      connections: o.connections,
      durationMs: o.durationS * 1000,
      makeRequest: requestMaker(ctx, { port, prefix: o.prefix }),
    });
    return run.result;
  }
  // A warm-up underestimates (code still cold): leave plenty of room.
  let capacity = Math.ceil((o.rateEstimate ?? RATE_GUESS) * 2.5 * o.durationS) + 2000;
  const voidAttempts: LoadResult[] = [];
  for (let attempt = 0;; attempt++) {
    const prefix = attempt === 0 ? o.prefix : `${o.prefix}r${attempt}`;
    const workDir = await Deno.makeTempDir({ dir: ctx.tmpDir, prefix: "wrk-" });
    try {
      const result = await runWrk({
        port,
        connections: o.connections,
        threads: ctx.options.wrkThreads,
        durationS: o.durationS,
        capacity,
        makeBody: (n) => alertBody(n, { symbols: ctx.symbols, prefix, timeMs: now }),
        sign: ctx.sign,
        workDir,
      });
      if (!result.exhausted || attempt >= 2) {
        return voidAttempts.length > 0 ? { ...result, voidAttempts } : result;
      }
      voidAttempts.push(result);
      ctx.progress(`  ran out of pre-generated requests (${capacity}); redoing with twice as many`);
      capacity *= 2;
    } finally {
      await Deno.remove(workDir, { recursive: true }).catch(() => {});
    }
  }
}

/** A fixed request rate (open loop; see paced_driver.ts). */
export function paced(
  ctx: BenchContext,
  port: number,
  o: { rate: number; durationS: number; prefix: string },
): Promise<LoadResult> {
  return runPaced({
    port,
    rate: o.rate,
    durationMs: o.durationS * 1000,
    initialConnections: 16,
    makeRequest: requestMaker(ctx, { port, prefix: o.prefix }),
  });
}
