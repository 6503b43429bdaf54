/**
 * Scenario (a), the ceiling: the same webhook route with no store
 * (ceiling_server.ts), closed-loop at `--ceiling-connections` for
 * `--duration`. Every other throughput is read as a fraction of it.
 */
import { registerCleanup } from "./cleanup.ts";
import { watchCpu } from "./cpu_watch.ts";
import { emptyResult, type ScenarioResult } from "./results.ts";
import { startCeiling } from "./server_process.ts";
import { type BenchContext, maxThroughput } from "./harness.ts";

export async function runCeiling(ctx: BenchContext): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `ceiling c=${o.ceilingConnections}`;
  ctx.progress(`${label}: starting the no-database server`);
  const server = await startCeiling({
    secret: ctx.secret,
    overrides: o.serviceEnv,
    inspect: o.profile,
  });
  const forget = registerCleanup(() => server.stop());
  try {
    const warmup = o.warmupS > 0
      ? await maxThroughput(ctx, server.port, {
        connections: o.ceilingConnections,
        durationS: o.warmupS,
        prefix: `${ctx.runId}-cw`,
      })
      : null;
    ctx.progress(`${label}: ${o.durationS} s`);
    const watch = await watchCpu(ctx, server, { database: null, name: "ceiling" });
    const load = await maxThroughput(ctx, server.port, {
      connections: o.ceilingConnections,
      durationS: o.durationS,
      prefix: `${ctx.runId}-c`,
      rateEstimate: warmup?.exhausted ? undefined : warmup?.acceptedPerSec,
    });
    const { cpu, profile } = await watch.stop();
    const result = emptyResult("ceiling", label, "none", load);
    result.warmup = warmup;
    result.cpu = cpu;
    result.profile = profile;
    result.notes.push(`${load.driver}, no store: HMAC + zod route only`);
    return result;
  } finally {
    const stop = await server.stop();
    forget();
    if (stop.code !== 0) ctx.progress(`  ceiling server exited with ${stop.code}`);
  }
}
