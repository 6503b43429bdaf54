/**
 * Linux /proc readings: resident size of a process, and CPU time spent by
 * the service, the load client, Postgres and the whole machine over a
 * window, so the table can say who used the two cores (client and server
 * share them, and other engineers' test runs may too). Read-only; every
 * reader returns null or 0 rather than throwing when a process is gone.
 */

/** Clock ticks per second of the times in /proc/<pid>/stat (USER_HZ; 100 on Linux). */
export const CLOCK_TICKS = 100;

/** Resident set size of `pid` in KiB (VmRSS), or null when it is gone. */
export function rssKib(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface ProcTimes {
  /** utime + stime of the process itself, in ticks. */
  own: number;
  /** cutime + cstime: children it has waited for (wrk, once it exited). */
  children: number;
}

/** Parses /proc/<pid>/stat text; the command name may hold spaces and parentheses. */
export function parseStat(text: string): ProcTimes & { comm: string } {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const rest = text.slice(close + 2).split(" ");
  // rest[0] is field 3 (state); utime is field 14.
  const f = (field: number) => Number(rest[field - 3]);
  return { comm: text.slice(open + 1, close), own: f(14) + f(15), children: f(16) + f(17) };
}

export function procTimes(pid: number | "self"): ProcTimes | null {
  try {
    return parseStat(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return null;
  }
}

/** A thread's time on a core and waiting in the run queue for one, in ns. */
export interface ThreadSched {
  runNs: number;
  waitNs: number;
}

/** Parses /proc/<pid>/task/<tid>/schedstat: "<run ns> <wait ns> <timeslices>". */
export function parseSchedstat(text: string): ThreadSched {
  const [run, wait] = text.trim().split(/\s+/).map(Number);
  return { runNs: run, waitNs: wait };
}

/** The main thread's (its id is the process's) schedstat, or null when it is gone. */
export function mainThreadSched(pid: number): ThreadSched | null {
  try {
    return parseSchedstat(Deno.readTextFileSync(`/proc/${pid}/task/${pid}/schedstat`));
  } catch {
    return null;
  }
}

/** Busy and total ticks of all CPUs (from /proc/stat's first line). */
export function machineTicks(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  // idle (4th) and iowait (5th) are not busy.
  return { busy: total - v[3] - v[4], total };
}

/**
 * CPU ticks of Postgres processes working for `database` (backends show
 * "postgres: user db ..." in their command line) plus the server's shared
 * helpers (WAL writer, checkpointer, background writer, autovacuum
 * launcher), which work for every database. Backends of other databases
 * (other engineers' tests) are left out: they are "other" load.
 */
export function postgresTicks(database: string): number {
  let sum = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = parseStat(Deno.readTextFileSync(`/proc/${entry.name}/stat`));
      if (stat.comm !== "postgres") continue;
      const cmd = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ");
      const helper =
        /postgres: (?:\S+: )?(walwriter|checkpointer|background writer|autovacuum launcher|logical replication launcher|stats collector)/
          .test(cmd);
      if (helper || cmd.includes(` ${database} `)) sum += stat.own;
    } catch {
      // Exited while we looked.
    }
  }
  return sum;
}

export interface CpuSnapshot {
  atMs: number;
  service: number;
  self: ProcTimes;
  postgres: number;
  machine: { busy: number; total: number };
}

export function cpuSnapshot(
  o: { servicePid: number | null; database: string | null },
): CpuSnapshot {
  return {
    atMs: performance.now(),
    service: o.servicePid === null ? 0 : procTimes(o.servicePid)?.own ?? 0,
    self: procTimes("self") ?? { own: 0, children: 0 },
    postgres: o.database === null ? 0 : postgresTicks(o.database),
    machine: machineTicks(),
  };
}

/** Cores used on average over a window (1.0 = one core busy all the time). */
export interface CpuSplit {
  service: number;
  /** The load generator: wrk (a reaped child) or this process's own sending. */
  client: number;
  postgres: number;
  /** Everything else busy on the machine (other test runs, the kernel's share not charged). */
  other: number;
  machineBusy: number;
}

export function cpuSplit(a: CpuSnapshot, b: CpuSnapshot): CpuSplit {
  const seconds = (b.atMs - a.atMs) / 1000;
  const perSecond = (ticks: number) => Math.round((ticks / CLOCK_TICKS / seconds) * 100) / 100;
  const service = perSecond(b.service - a.service);
  const client = perSecond(b.self.own - a.self.own + b.self.children - a.self.children);
  const postgres = perSecond(b.postgres - a.postgres);
  // /proc/stat counts ticks summed over cores, at the same USER_HZ.
  const machineBusy = perSecond(b.machine.busy - a.machine.busy);
  return {
    service,
    client,
    postgres,
    other: Math.max(0, Math.round((machineBusy - service - client - postgres) * 100) / 100),
    machineBusy,
  };
}
