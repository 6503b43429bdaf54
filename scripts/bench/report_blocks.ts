/**
 * The blocks printed under the main table: the bar-close burst, memory, and
 * where the time went (CPU split, group-commit batches, decision stages).
 * Pure: from the results alone.
 */
import { formatTable, ms, rate } from "./format.ts";
import type { CpuSplit } from "./proc.ts";
import type { ScenarioResult } from "./results.ts";

/**
 * Cores busy on the machine: the three processes plus whatever else
 * /proc/stat saw. Not /proc/stat's figure alone: it samples at the timer
 * tick, and a paced load whose work starts on a timer and ends before the
 * next tick is missed (the floor row read 0.14 cores busy while its server
 * and client alone used 0.66 by their own clocks).
 */
export function busyCores(cpu: CpuSplit): number {
  return Math.round((cpu.service + cpu.client + cpu.postgres + cpu.other) * 100) / 100;
}

/**
 * CPU time per accepted webhook, service/Postgres, in µs: the cores a load
 * kept busy divided by its rate. Unlike the cores, it can be compared
 * between rates, and between machines beside the ceiling (on PGlite the
 * database is inside the service, so Postgres is 0).
 */
export function cpuPerWebhook(cpu: CpuSplit | null, acceptedPerSec: number): string {
  if (cpu === null || !(acceptedPerSec > 0)) return "-";
  const us = (cores: number) => Math.round((cores * 1e6) / acceptedPerSec);
  return `${us(cpu.service)}/${us(cpu.postgres)}`;
}

export function burstBlock(results: readonly ScenarioResult[]): string | null {
  const bursts = results.filter((r) => r.burst !== null);
  if (bursts.length === 0) return null;
  const b0 = bursts[0].burst!;
  const rows = bursts.map((r) => {
    const b = r.burst!;
    return [
      r.db,
      `${b.accepted}/${b.alerts}`,
      ms(b.maxAckMs),
      ms(b.allAcknowledgedAfterMs),
      ms(b.lastDecision.startedMs),
      ms(b.lastDecision.lastStoredMs),
      ms(b.lastDecision.lastObservedMs),
      b.allDecided ? "yes" : "NO",
      b.orderHeld ? "held" : "BROKEN",
    ];
  });
  return [
    `Bar-close burst: ${b0.alerts} distinct alerts over ${b0.symbols} symbols, fired at once over ` +
    `${b0.connections} connections (ms from the burst's start)`,
    formatTable(
      [
        "db",
        "ACCEPTED",
        "max ack",
        "all acked",
        "last decision tx start",
        "last stored e2e",
        "all decided (seen)",
        "all decided",
        "per-symbol order",
      ],
      rows,
    ),
    "  'last stored e2e' is the last commit as the worker timed it (once its write returned), 'all decided (seen)' " +
    "an upper bound (first poll that found nothing left).",
  ].join("\n");
}

export function memoryBlock(results: readonly ScenarioResult[]): string | null {
  const mem = results.filter((r) => r.memory !== null);
  if (mem.length === 0) return null;
  const rows = mem.map((r) => {
    const m = r.memory!;
    return [
      r.db,
      `${m.minutes} min`,
      rate(m.rate),
      ms(m.idleMiB),
      ms(m.startMiB),
      ms(m.endMiB),
      ms(m.maxMiB),
      m.driftPct === null ? "-" : `${m.driftPct > 0 ? "+" : ""}${m.driftPct.toFixed(1)} %`,
      m.slopeMiBPerMin === null ? "-" : `${m.slopeMiBPerMin > 0 ? "+" : ""}${m.slopeMiBPerMin}`,
      m.backlogAtEnd === null ? "-" : String(m.backlogAtEnd),
    ];
  });
  return [
    "Memory: resident size (VmRSS) of the service process, MiB",
    formatTable(
      ["db", "run", "req/s", "idle", "start (30 s)", "end", "max", "drift", "MiB/min", "jobs left"],
      rows,
    ),
  ].join("\n");
}

export function diagnosticsBlock(results: readonly ScenarioResult[]): string {
  const rows = results.map((r) => {
    const g = r.groupCommit;
    return [
      r.label,
      r.db,
      r.cpu ? `${r.cpu.service}/${r.cpu.client}/${r.cpu.postgres}/${r.cpu.other}` : "-",
      r.cpu ? String(busyCores(r.cpu)) : "-",
      cpuPerWebhook(r.cpu, r.load.acceptedPerSec),
      g ? String(g.transactions) : "-",
      g ? `${ms(g.batchSize.p50)}/${ms(g.batchSize.p99)}/${ms(g.batchSize.max)}` : "-",
      g ? `${ms(g.waitForBatchMs.p50)}/${ms(g.waitForBatchMs.p99)}` : "-",
      g ? ms(g.batchStartGapMs.p50) : "-",
      r.serverAckMs ? `${ms(r.serverAckMs.p50)}/${ms(r.serverAckMs.p99)}` : "-",
      r.load.ackFromSendMs
        ? `${ms(r.load.ackFromSendMs.p50)}/${ms(r.load.ackFromSendMs.p99)}`
        : "-",
      r.load.sendLagMs ? ms(r.load.sendLagMs.p99) : "-",
    ];
  });
  const parts = [
    "Where the time goes (cores: service/client/postgres/other, and all of them busy on the " +
    "machine; CPU µs per accepted webhook, service/postgres; group commit from the database)",
    formatTable(
      [
        "scenario",
        "db",
        "cores s/c/p/o",
        "busy",
        "µs/webhook s/p",
        "ingest tx",
        "batch p50/p99/max",
        "wait for batch p50/p99",
        "tx gap p50",
        "server ack p50/p99",
        "ack from write p50/p99",
        "send lag p99",
      ],
      rows,
    ),
  ];
  const staged = results.filter((r) => r.decisions !== null && r.decisions.decided > 0);
  if (staged.length > 0) {
    const names = ["queue", "load", "context", "gex", "book", "decide", "write"];
    parts.push(
      "",
      "Decision stages, p50/p99 ms (stored timings; book: waiting for this instance's batch before it, and reading the book when another writer changed it; write includes waiting for the book's version row). Batches lost / locked: decided again because another writer changed the positions first / then written holding their lock (the service's /metrics)",
      formatTable(
        [
          "scenario",
          "db",
          ...names,
          "e2e stored",
          "e2e to tx start",
          "e2e seen committed",
          "decided",
          "batches lost / locked",
        ],
        staged.map((r) => {
          const d = r.decisions!;
          const pair = (s?: { p50: number | null; p99: number | null } | null) =>
            s ? `${ms(s.p50)}/${ms(s.p99)}` : "-";
          return [
            r.label,
            r.db,
            ...names.map((n) => pair(d.stagesMs[n])),
            pair(d.storedEndToEndMs),
            pair(d.createdAtMs),
            pair(r.commitObservedMs),
            `${d.decided}/${d.decided + d.undecided}`,
            r.book ? `${r.book.conflicts} / ${r.book.locked}` : "-",
          ];
        }),
      ),
    );
  }
  return parts.join("\n");
}

/** With --profile: where each server's main thread spent the measured load (cpu_watch.ts). */
export function profileBlock(results: readonly ScenarioResult[]): string | null {
  const profiled = results.filter((r) => r.profile !== null);
  if (profiled.length === 0) return null;
  const share = (n: number) => `${n} %`;
  return [
    "Main thread, V8 CPU profile over the measured load (--profile; raw profiles in the JSON's " +
    "`profile.file`, for Chrome DevTools). Samples are wall time: busy includes waiting for a " +
    "core, idle includes the runtime's work outside JavaScript. Idle share of all samples; " +
    "the main thread on a core / waiting for one, of the window (kernel schedstat); of the " +
    "busy samples, garbage collection and the sources most often on the stack (a sample " +
    "counts once per source)",
    formatTable(
      ["scenario", "db", "samples", "idle", "ran / waited", "gc", "sources on the stack"],
      profiled.map((r) => {
        const p = r.profile!;
        return [
          r.label,
          r.db,
          String(p.samples),
          share(p.idlePct),
          p.mainThread ? `${p.mainThread.runPct} / ${share(p.mainThread.waitPct)}` : "-",
          share(p.gcPct),
          p.bySource.slice(0, 8).map((s) => `${s.source} ${share(s.pct)}`).join(", "),
        ];
      }),
    ),
  ].join("\n");
}
