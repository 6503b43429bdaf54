/**
 * CPU over a scenario's measured load: the cores each process used (/proc,
 * always) and, with `--profile`, the server's V8 CPU profile of its main
 * thread, taken through its inspector (`deno run --inspect`, Chrome DevTools
 * Protocol over a WebSocket). The raw profile is written next to the results
 * (open it in Chrome DevTools, Performance panel); the report prints, per
 * row, how often each source file was on the stack.
 *
 * V8 samples on wall time: a sample is "busy" whenever the main thread is
 * inside JavaScript or a native call, including while the kernel has it
 * waiting for a core, and "idle" whenever no JavaScript runs, including the
 * runtime's own work outside it (Deno's HTTP server, its event loop). So a
 * share is time, not CPU; the kernel's run and wait figures beside it say
 * how much of the window the thread was on a core.
 */
import type { BenchContext } from "./harness.ts";
import { cpuSnapshot, type CpuSplit, cpuSplit, mainThreadSched } from "./proc.ts";

/** The parts of a V8 `Profiler.Profile` this reads. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  /** The node each sample landed in. */
  samples: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  /** Where the raw profile was written. */
  file: string | null;
  samples: number;
  /** Share of all samples with no JavaScript running (V8's idle; see the module comment). */
  idlePct: number;
  /** Share of the busy samples spent collecting garbage. */
  gcPct: number;
  /**
   * Of the window's wall time, the main thread on a core and waiting in the
   * run queue for one (the kernel's schedstat; null where it has none).
   */
  mainThread: { runPct: number; waitPct: number } | null;
  /**
   * Share of the busy samples with a frame of this source on the stack (a
   * sample counts once per source, so the shares add up to more than 100).
   */
  bySource: { source: string; pct: number }[];
}

/** V8's pseudo-frames: not code of any source. */
const PSEUDO = new Set(["(root)", "(program)", "(idle)", "(garbage collector)"]);

/**
 * A frame's source, short: repo-relative for the project's files,
 * `npm:name@version` for a package, `ext:...` for Deno's own JavaScript,
 * `native <function>` for a frame with no script (a Deno op, a V8 builtin).
 */
export function sourceOf(url: string, functionName: string, repoRoot: string): string {
  if (url === "") return `native ${functionName || "(anonymous)"}`;
  const pkg = /\/node_modules\/\.deno\/([^/]+)\//.exec(url);
  if (pkg) return `npm:${pkg[1].replace(/^@([^+]+)\+/, "@$1/")}`;
  if (url.startsWith(repoRoot)) return url.slice(repoRoot.length);
  return url;
}

/** `part` of `whole` in percent, to 0.1 (0 of nothing is 0). */
function percentOf(part: number, whole: number): number {
  return whole === 0 ? 0 : Math.round((part / whole) * 1000) / 10;
}

/** Pure: the shares of a profile, the `top` sources most often on the stack first. */
export function summarizeProfile(
  profile: CpuProfile,
  o: { repoRoot: string; top?: number; file?: string | null },
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const hits = new Map<number, number>();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);

  let idle = 0;
  let gc = 0;
  const bySource = new Map<string, number>();
  for (const [id, count] of hits) {
    const name = byId.get(id)?.callFrame.functionName;
    if (name === "(idle)") {
      idle += count;
      continue;
    }
    if (name === "(garbage collector)") gc += count;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (PSEUDO.has(frame.functionName) && frame.url === "") continue;
      seen.add(sourceOf(frame.url, frame.functionName, o.repoRoot));
    }
    for (const source of seen) bySource.set(source, (bySource.get(source) ?? 0) + count);
  }
  const samples = profile.samples.length;
  const busy = samples - idle;
  return {
    file: o.file ?? null,
    samples,
    idlePct: percentOf(idle, samples),
    gcPct: percentOf(gc, busy),
    mainThread: null,
    bySource: [...bySource]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .slice(0, o.top ?? 12)
      .map(([source, n]) => ({ source, pct: percentOf(n, busy) })),
  };
}

const CALL_TIMEOUT_MS = 60_000;

/**
 * Starts V8's CPU profiler in the process whose inspector listens on `port`;
 * `stop()` ends it and returns the profile.
 */
export async function startProfiling(
  port: number,
  intervalUs = 500,
): Promise<{ stop(): Promise<CpuProfile> }> {
  const res = await fetch(`http://127.0.0.1:${port}/json/list`);
  const targets = await res.json() as { webSocketDebuggerUrl?: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`No inspector target on port ${port}`);
  const ws = new WebSocket(url);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const failAll = (why: string) => {
    for (const p of pending.values()) p.reject(new Error(why));
    pending.clear();
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number;
      result?: unknown;
      error?: { message: string };
    };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (waiter === undefined) return; // an event, not an answer
    pending.delete(message.id!);
    if (message.error) waiter.reject(new Error(`Inspector: ${message.error.message}`));
    else waiter.resolve(message.result);
  };
  ws.onclose = () => failAll("Inspector connection closed");
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`Could not connect to the inspector at ${url}`));
  });
  ws.onerror = () => failAll("Inspector connection failed");

  let nextId = 0;
  const call = <T>(method: string, params: Record<string, unknown> = {}): Promise<T> => {
    const id = ++nextId;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answered = new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      ws.send(JSON.stringify({ id, method, params }));
      timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`Inspector: no answer to ${method} in ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
    });
    return answered.finally(() => clearTimeout(timer));
  };

  try {
    await call("Profiler.enable");
    await call("Profiler.setSamplingInterval", { interval: intervalUs });
    await call("Profiler.start");
  } catch (error) {
    ws.close();
    throw error;
  }
  return {
    async stop() {
      try {
        const { profile } = await call<{ profile: CpuProfile }>("Profiler.stop");
        return profile;
      } finally {
        ws.onclose = null;
        ws.close();
      }
    },
  };
}

export interface CpuWatch {
  stop(): Promise<{ cpu: CpuSplit; profile: ProfileSummary | null }>;
}

const REPO_ROOT = new URL("../../", import.meta.url).href;

/**
 * Watches a load window on `server`: call it just before the load, `stop()`
 * just after. With `--profile` (the server then has an inspector port) the
 * raw profile goes to `<out>/<time>-<run>-<name>.cpuprofile`.
 */
export async function watchCpu(
  ctx: BenchContext,
  server: { pid: number; companionPids?: number[]; inspectPort: number | null },
  o: { database: string | null; name: string },
): Promise<CpuWatch> {
  const profiling = server.inspectPort === null ? null : await startProfiling(server.inspectPort);
  const servicePids = [server.pid, ...(server.companionPids ?? [])];
  const before = cpuSnapshot({ servicePids, database: o.database });
  const schedBefore = mainThreadSched(server.pid);
  return {
    async stop() {
      // Taken first: serializing the profile costs the server CPU that is not the load's.
      const after = cpuSnapshot({ servicePids, database: o.database });
      const schedAfter = mainThreadSched(server.pid);
      const cpu = cpuSplit(before, after);
      if (profiling === null) return { cpu, profile: null };
      const profile = await profiling.stop();
      const file = `${ctx.options.outDir}/${
        new Date().toISOString().replace(/[:.]/g, "-")
      }-${ctx.runId}-${o.name.replace(/[^\w.-]+/g, "_")}.cpuprofile`;
      await Deno.mkdir(ctx.options.outDir, { recursive: true });
      await Deno.writeTextFile(file, JSON.stringify(profile));
      const summary = summarizeProfile(profile, { repoRoot: REPO_ROOT, file });
      if (schedBefore !== null && schedAfter !== null) {
        const wallNs = (after.atMs - before.atMs) * 1e6;
        summary.mainThread = {
          runPct: percentOf(schedAfter.runNs - schedBefore.runNs, wallNs),
          waitPct: percentOf(schedAfter.waitNs - schedBefore.waitNs, wallNs),
        };
      }
      return { cpu, profile: summary };
    },
  };
}
