/**
 * Scenario (a), the ceiling: the same webhook route with no store
 * (ceiling_server.ts), closed-loop at `--ceiling-connections` for
 * `--duration`. Every other throughput is read as a fraction of it.
 *
 * With the steady scenario, the same no-store route also gets the steady
 * rate, paced, as a row of its own (`steady <rate>/s`, database none): the
 * latency floor that the machine, the HTTP stack and the client set, which
 * the service's ack p99 at that rate is to be read against.
 */
import { registerCleanup } from "./cleanup.ts";
import { watchCpu } from "./cpu_watch.ts";
import { emptyResult, type ScenarioResult } from "./results.ts";
import { startCeiling } from "./server_process.ts";
import { type BenchContext, maxThroughput, paced } from "./harness.ts";

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

/** The steady rate on the no-store route: the latency floor beside the service's. */
export async function runFloor(ctx: BenchContext): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `steady ${o.steadyRate}/s`;
  ctx.progress(`${label} [no store]: starting the no-database server`);
  const server = await startCeiling({
    secret: ctx.secret,
    overrides: o.serviceEnv,
    inspect: o.profile,
  });
  const forget = registerCleanup(() => server.stop());
  try {
    const send = (durationS: number, prefix: string) =>
      paced(ctx, server.port, { rate: o.steadyRate, durationS, prefix });
    const warmup = o.warmupS > 0 ? await send(o.warmupS, `${ctx.runId}-fw`) : null;
    ctx.progress(`${label} [no store]: ${o.durationS} s`);
    const watch = await watchCpu(ctx, server, { database: null, name: "floor" });
    const load = await send(o.durationS, `${ctx.runId}-f`);
    const { cpu, profile } = await watch.stop();
    const result = emptyResult("steady", label, "none", load);
    result.warmup = warmup;
    result.cpu = cpu;
    result.profile = profile;
    result.notes.push("paced, open loop; no store: the latency floor of this machine and client");
    return result;
  } finally {
    const stop = await server.stop();
    forget();
    if (stop.code !== 0) ctx.progress(`  ceiling server exited with ${stop.code}`);
  }
}
