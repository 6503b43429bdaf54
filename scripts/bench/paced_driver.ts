/**
 * Constant-rate (open-loop) load, wrk2-style, in Deno. Request i is due at
 * t0 + i/rate whatever happened to the ones before it; it goes out on an idle
 * keep-alive connection, or a new one (up to `maxConnections`), or waits in a
 * queue for one.
 *
 * Coordinated omission: a closed-loop tool (wrk, autocannon without a rate)
 * only sends the next request after the previous answer, so when the server
 * stalls it also stops sending, and the requests that would have arrived
 * during the stall are never timed: the tail looks better than what
 * TradingView, which fires on the bar close whatever the server is doing,
 * would see. Here the latency is measured from when the request was DUE, so
 * a stall counts for every request scheduled during it. Requests go out when
 * a ticker thread says they are due (ticker_worker.ts: Deno's own timers wake
 * 2 ms late, which the latency would count). The time from the
 * actual write is reported too (`ackFromSendMs`), and `sendLagMs` says how
 * far behind schedule the writes were: when it is large the client itself
 * (or the shared CPU) was the limit, not the server.
 */
import { type LoadResult, Tally } from "./load_result.ts";
import { HttpConnection, outcomeOf, RequestTimeoutError } from "./raw_http.ts";
import { summarizeMs } from "./stats.ts";
import type { TickerStart } from "./ticker_worker.ts";

export interface PacedOptions {
  port: number;
  /** Requests per second. */
  rate: number;
  durationMs: number;
  /** Request n, built when it is due; `wallMs` is the epoch time it is sent. */
  makeRequest: (n: number, wallMs: number) => Uint8Array;
  /** Connections opened before t0. Default 16. */
  initialConnections?: number;
  /** Most connections at once. Default 256. */
  maxConnections?: number;
  /** Default 3000 ms, TradingView's limit. */
  timeoutMs?: number;
}

export async function runPaced(o: PacedOptions): Promise<LoadResult> {
  const timeoutMs = o.timeoutMs ?? 3000;
  const max = o.maxConnections ?? 256;
  const total = Math.max(1, Math.floor((o.rate * o.durationMs) / 1000));
  const idle: HttpConnection[] = [];
  const all = new Set<HttpConnection>();
  for (let i = 0; i < Math.min(max, o.initialConnections ?? 16); i++) {
    const c = await HttpConnection.open(o.port);
    idle.push(c);
    all.add(c);
  }
  let opening = 0;
  const tally = new Tally();
  const fromDue = new Float64Array(total).fill(NaN);
  const fromSend = new Float64Array(total).fill(NaN);
  const lag = new Float64Array(total).fill(NaN);
  const queue: number[] = [];
  let head = 0;
  let finished = 0;
  let peak = all.size;
  /** Set once the run is over: nothing more is sent or opened. */
  let over = false;
  const allDone = Promise.withResolvers<void>();
  const ticker = await startTicker();
  const t0 = performance.now();
  const wall0 = performance.timeOrigin + t0;
  const due = (i: number) => t0 + (i * 1000) / o.rate;

  const settle = (i: number, started: number) => {
    const now = performance.now();
    fromDue[i] = now - due(i);
    fromSend[i] = now - started;
    finished++;
    if (finished === total) allDone.resolve();
  };

  const runOne = async (conn: HttpConnection, i: number) => {
    const started = performance.now();
    lag[i] = started - due(i);
    try {
      const reply = await conn.send(o.makeRequest(i, wall0 + (started - t0)), timeoutMs);
      const outcome = outcomeOf(reply);
      if (outcome === "accepted") tally.accepted++;
      else if (outcome === "duplicate") tally.duplicate++;
      else tally.other(reply.status);
      settle(i, started);
    } catch (error) {
      if (error instanceof RequestTimeoutError) tally.timeouts++;
      else tally.socketErrors++;
      // A failed request is not a latency sample; it is counted as an error.
      finished++;
      if (finished === total) allDone.resolve();
    } finally {
      if (conn.closed) all.delete(conn);
      else idle.push(conn);
      dispatch();
    }
  };

  function dispatch() {
    if (over) return;
    while (head < queue.length) {
      const conn = idle.pop();
      if (conn !== undefined) {
        void runOne(conn, queue[head++]);
        continue;
      }
      // Open one connection per waiting request not already covered by one being opened.
      if (all.size + opening < max && queue.length - head > opening) {
        opening++;
        HttpConnection.open(o.port).then((c) => {
          if (over) return c.close();
          all.add(c);
          peak = Math.max(peak, all.size);
          idle.push(c);
        }, () => {
          // The server refused: the oldest waiting request fails (retrying would spin).
          tally.socketErrors++;
          if (head < queue.length) {
            head++;
            finished++;
            if (finished === total) allDone.resolve();
          }
        }).finally(() => {
          opening--;
          dispatch();
        });
        continue;
      }
      break;
    }
    if (head > 4096 && head === queue.length) {
      queue.length = 0;
      head = 0;
    }
  }

  // Woken when the next request is due (ticker_worker.ts); what is due is read off this clock.
  ticker.start({ startMs: wall0, rate: o.rate, total });
  let next = 0;
  let ticked = 0;
  try {
    while (next < total) {
      const now = performance.now();
      // Due by this clock, or by the ticker's (the same clock, read on another thread).
      const reached = Math.max(
        ticked,
        Math.min(total, Math.floor(((now - t0) * o.rate) / 1000) + 1),
      );
      while (next < reached) queue.push(next++);
      dispatch();
      if (next < total) ticked = await ticker.tick();
    }
  } finally {
    ticker.stop();
  }
  // Everything is sent or queued; give the stragglers the timeout to answer.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    allDone.promise,
    new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs + 2000)),
  ]);
  clearTimeout(timer);
  over = true;
  const unanswered = total - finished;
  tally.timeouts += unanswered;
  for (const c of all) c.close();

  const durationS = o.durationMs / 1000;
  return {
    driver: "deno-paced",
    connections: peak,
    targetRate: o.rate,
    durationS,
    sent: total,
    ...tally.counts(durationS),
    ackMs: summarizeMs(fromDue),
    ackFromSendMs: summarizeMs(fromSend),
    sendLagMs: summarizeMs(lag),
  };
}

/**
 * The ticker thread, loaded. `tick()` resolves with how many requests are
 * due by its clock at its next post, or at once if one arrived since the last.
 */
async function startTicker() {
  const worker = new Worker(new URL("./ticker_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const ready = Promise.withResolvers<void>();
  let due = 0;
  let fresh = false;
  let waiting: ((due: number) => void) | null = null;
  worker.onmessage = (event: MessageEvent<number | "ready">) => {
    if (event.data === "ready") return ready.resolve();
    due = event.data;
    fresh = true;
    if (waiting !== null) {
      const wake = waiting;
      waiting = null;
      fresh = false;
      wake(due);
    }
  };
  await ready.promise;
  return {
    start: (start: TickerStart) => worker.postMessage(start),
    tick(): Promise<number> {
      if (fresh) {
        fresh = false;
        return Promise.resolve(due);
      }
      return new Promise<number>((resolve) => (waiting = resolve));
    },
    stop: () => worker.terminate(),
  };
}
