/**
 * Closed-loop load in Deno: `connections` keep-alive connections, each
 * sending its next request as soon as the previous one is answered, until
 * `count` requests were sent or `durationMs` passed. Used for the bar-close
 * burst (a fixed list fired at once) and in place of wrk when wrk is not
 * installed. Connections are opened before t0: the burst measures the
 * service, not TCP handshakes on loopback.
 */
import { type LoadResult, Tally } from "./load_result.ts";
import { HttpConnection, outcomeOf, RequestTimeoutError } from "./raw_http.ts";
import { summarizeMs } from "./stats.ts";

export interface ClosedOptions {
  port: number;
  connections: number;
  /** Send requests 0..count-1 and stop. */
  count?: number;
  /** Or stop starting requests after this long. */
  durationMs?: number;
  makeRequest: (n: number, wallMs: number) => Uint8Array;
  timeoutMs?: number;
}

export interface ClosedRun {
  result: LoadResult;
  /** Epoch ms of t0, when every connection started sending. */
  startWallMs: number;
  /** Per request: ms from t0 until its answer (NaN when it failed). */
  answeredAfterMs: Float64Array;
}

export async function runClosed(o: ClosedOptions): Promise<ClosedRun> {
  if (o.count === undefined && o.durationMs === undefined) {
    throw new Error("runClosed needs count or durationMs");
  }
  const timeoutMs = o.timeoutMs ?? 3000;
  const count = o.count ?? Number.POSITIVE_INFINITY;
  const conns = await Promise.all(
    Array.from({ length: o.connections }, () => HttpConnection.open(o.port)),
  );
  const tally = new Tally();
  const latency: number[] = [];
  const answered: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const startWallMs = performance.timeOrigin + t0;
  const deadline = o.durationMs === undefined ? Number.POSITIVE_INFINITY : t0 + o.durationMs;

  const worker = async (first: HttpConnection) => {
    let conn: HttpConnection | null = first;
    while (true) {
      const started = performance.now();
      if (next >= count || started >= deadline) break;
      const i = next++;
      try {
        conn ??= await HttpConnection.open(o.port);
        const reply = await conn.send(
          o.makeRequest(i, performance.timeOrigin + started),
          timeoutMs,
        );
        const done = performance.now();
        const outcome = outcomeOf(reply);
        if (outcome === "accepted") tally.accepted++;
        else if (outcome === "duplicate") tally.duplicate++;
        else tally.other(reply.status);
        latency.push(done - started);
        answered[i] = done - t0;
      } catch (error) {
        if (error instanceof RequestTimeoutError) tally.timeouts++;
        else tally.socketErrors++;
        answered[i] = NaN;
        // A refused connection fails fast; do not spin on it.
        if (conn === null) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      if (conn?.closed) conn = null;
    }
    conn?.close();
  };
  await Promise.all(conns.map(worker));
  const elapsedMs = performance.now() - t0;
  const sent = next;
  // A duration-bound run is rated over its nominal window (as wrk does); a
  // count-bound one over the time it actually took.
  const durationS = (o.durationMs ?? elapsedMs) / 1000;
  return {
    startWallMs,
    answeredAfterMs: Float64Array.from({ length: sent }, (_, i) => answered[i] ?? NaN),
    result: {
      driver: "deno-closed",
      connections: o.connections,
      targetRate: null,
      durationS,
      sent,
      ...tally.counts(durationS),
      ackMs: summarizeMs(latency),
    },
  };
}
