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
import type { LoadResult } from "./load_result.ts";
import { emptyResult, type ScenarioResult } from "./results.ts";
import { startCeiling } from "./server_process.ts";
import { type BenchContext, maxThroughput, paced } from "./harness.ts";

export function runCeiling(ctx: BenchContext): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `ceiling c=${o.ceilingConnections}`;
  return measureNoStore(ctx, {
    scenario: "ceiling",
    label,
    who: label,
    name: "ceiling",
    prefix: `${ctx.runId}-c`,
    send: (port, durationS, prefix, warmup) =>
      maxThroughput(ctx, port, {
        connections: o.ceilingConnections,
        durationS,
        prefix,
        rateEstimate: warmup === null || warmup.exhausted ? undefined : warmup.acceptedPerSec,
      }),
    note: (load) => `${load.driver}, no store: HMAC + zod route only`,
  });
}

/** The steady rate on the no-store route: the latency floor beside the service's. */
export function runFloor(ctx: BenchContext): Promise<ScenarioResult> {
  const o = ctx.options;
  const label = `steady ${o.steadyRate}/s`;
  return measureNoStore(ctx, {
    scenario: "steady",
    label,
    who: `${label} [no store]`,
    name: "floor",
    prefix: `${ctx.runId}-f`,
    send: (port, durationS, prefix) => paced(ctx, port, { rate: o.steadyRate, durationS, prefix }),
    note: () => "paced, open loop; no store: the latency floor of this machine and client",
  });
}

/**
 * One load on a fresh no-store server: a warm-up (`<prefix>w`), then the
 * measured run with its CPU (and, with --profile, its V8 profile); the
 * server is stopped whatever happens.
 */
async function measureNoStore(ctx: BenchContext, row: {
  scenario: "ceiling" | "steady";
  label: string;
  /** How progress lines name it. */
  who: string;
  /** The profile file's name. */
  name: string;
  prefix: string;
  send: (
    port: number,
    durationS: number,
    prefix: string,
    warmup: LoadResult | null,
  ) => Promise<LoadResult>;
  note: (load: LoadResult) => string;
}): Promise<ScenarioResult> {
  const o = ctx.options;
  ctx.progress(`${row.who}: starting the no-database server`);
  const server = await startCeiling({
    secret: ctx.secret,
    overrides: o.serviceEnv,
    inspect: o.profile,
  });
  const forget = registerCleanup(() => server.stop());
  try {
    const warmup = o.warmupS > 0
      ? await row.send(server.port, o.warmupS, `${row.prefix}w`, null)
      : null;
    ctx.progress(`${row.who}: ${o.durationS} s`);
    const watch = await watchCpu(ctx, server, { database: null, name: row.name });
    const load = await row.send(server.port, o.durationS, row.prefix, warmup);
    const { cpu, profile } = await watch.stop();
    const result = emptyResult(row.scenario, row.label, "none", load);
    result.warmup = warmup;
    result.cpu = cpu;
    result.profile = profile;
    result.notes.push(row.note(load));
    return result;
  } finally {
    const stop = await server.stop();
    forget();
    if (stop.code !== 0) ctx.progress(`  ceiling server exited with ${stop.code}`);
  }
}
