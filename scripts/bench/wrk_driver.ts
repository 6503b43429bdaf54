/**
 * Closed-loop maximum-throughput load with wrk (C, epoll, LuaJIT): the
 * cheapest client there is, which matters when client and server share two
 * cores. wrk replays one request unless a script says otherwise, and a
 * replayed alert is a DUPLICATE, so the requests are signed here in Deno,
 * written one per line (`<hex signature>\t<body>`) to a file per wrk thread
 * (disjoint ranges: no request is sent twice), and the Lua script loads its
 * thread's file in init(), before the clock starts. If a thread runs out it
 * sends a harmless `GET /webhook` and counts it as `exhausted`; the caller
 * then redoes the run with more requests.
 *
 * The script's response() tells ACCEPTED from DUPLICATE by the body, and
 * done() prints one JSON line with the counts and wrk's own latency
 * histogram. Latency here is from the write (wrk is closed-loop; see
 * paced_driver.ts on coordinated omission).
 */
import type { LoadResult } from "./load_result.ts";
import { WRK_SCRIPT } from "./wrk_script.ts";

export const WRK_PATH = "/usr/bin/wrk";

export async function wrkAvailable(path = WRK_PATH): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(path, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    // wrk --version prints usage and exits 1; what matters is that it ran.
    return code === 0 || code === 1;
  } catch {
    return false;
  }
}

export interface WrkOptions {
  port: number;
  connections: number;
  threads: number;
  durationS: number;
  /** Requests generated in all; split evenly over the threads. */
  capacity: number;
  makeBody: (n: number) => string;
  sign: (body: string) => string;
  /** A fresh directory for the data files and the script. */
  workDir: string;
  timeoutS?: number;
  wrkPath?: string;
}

interface WrkJson {
  requests: number;
  duration_us: number;
  accepted: number;
  duplicate: number;
  ok_other: number;
  exhausted: number;
  statuses: Record<string, number>;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latency_ms: Record<"mean" | "max" | "p50" | "p90" | "p95" | "p99" | "p999", number>;
}

/** Writes the data files: thread t gets requests [t*per, (t+1)*per). */
async function writeRequests(o: WrkOptions): Promise<void> {
  const per = Math.ceil(o.capacity / o.threads);
  const encoder = new TextEncoder();
  for (let t = 0; t < o.threads; t++) {
    using file = await Deno.open(`${o.workDir}/data-${t}.txt`, {
      write: true,
      create: true,
      truncate: true,
    });
    let chunk: string[] = [];
    const flush = async () => {
      const bytes = encoder.encode(chunk.join(""));
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      chunk = [];
    };
    for (let n = t * per; n < Math.min(o.capacity, (t + 1) * per); n++) {
      const body = o.makeBody(n);
      chunk.push(`${o.sign(body)}\t${body}\n`);
      if (chunk.length === 5000) await flush();
    }
    await flush();
  }
}

export async function runWrk(o: WrkOptions): Promise<LoadResult> {
  await writeRequests(o);
  const script = `${o.workDir}/alerts.lua`;
  await Deno.writeTextFile(script, WRK_SCRIPT);
  const { code, stdout, stderr } = await new Deno.Command(o.wrkPath ?? WRK_PATH, {
    args: [
      `-t${o.threads}`,
      `-c${o.connections}`,
      `-d${o.durationS}s`,
      `--timeout`,
      `${o.timeoutS ?? 3}s`,
      "-s",
      script,
      `http://127.0.0.1:${o.port}/webhook`,
      "--",
      o.workDir,
      "/webhook",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (code !== 0 || line === undefined) {
    throw new Error(
      `wrk failed (exit ${code}): ${new TextDecoder().decode(stderr).slice(0, 500)} ${
        out.slice(0, 500)
      }`,
    );
  }
  const w = JSON.parse(line.slice("WRK_JSON ".length)) as WrkJson;
  const durationS = w.duration_us / 1e6;
  const otherStatuses: Record<string, number> = { ...w.statuses };
  const otherOk = w.ok_other - w.exhausted;
  if (otherOk > 0) otherStatuses["200"] = otherOk;
  return {
    driver: "wrk",
    connections: o.connections,
    targetRate: null,
    durationS: Math.round(durationS * 1000) / 1000,
    sent: w.requests,
    accepted: w.accepted,
    duplicate: w.duplicate,
    otherStatuses,
    socketErrors: w.errors.connect + w.errors.read + w.errors.write,
    timeouts: w.errors.timeout,
    cutOff: o.connections,
    acceptedPerSec: Math.round((w.accepted / durationS) * 10) / 10,
    ackMs: {
      count: w.requests,
      mean: round2(w.latency_ms.mean),
      p50: round2(w.latency_ms.p50),
      p90: round2(w.latency_ms.p90),
      p95: round2(w.latency_ms.p95),
      p99: round2(w.latency_ms.p99),
      p999: round2(w.latency_ms.p999),
      max: round2(w.latency_ms.max),
    },
    exhausted: w.exhausted,
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
