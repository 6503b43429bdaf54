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

/** Busy, total and stolen ticks of all CPUs (from /proc/stat's first line). */
export function machineTicks(): { busy: number; total: number; steal: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  // idle (4th) and iowait (5th) are not busy; steal (8th) is, for this VM: the host ran another.
  return { busy: total - v[3] - v[4], total, steal: v[7] ?? 0 };
}

/** Postgres's shared helpers: they work for every database, so for the bench's too. */
const POSTGRES_HELPER =
  /postgres: (?:\S+: )?(walwriter|checkpointer|background writer|autovacuum launcher|logical replication launcher|stats collector)/;

/** Every process's own CPU ticks, by pid, with its name; Postgres's split into ours and not. */
export interface ProcessTicks {
  /** Ticks of Postgres processes working for the bench's database, and the shared helpers. */
  postgres: number;
  /** Every other process: pid -> name and ticks. */
  others: Map<number, { name: string; ticks: number }>;
}

/**
 * One pass over /proc. Postgres processes count as the bench's when they
 * work for `database` (backends show "postgres: user db ..." in their
 * command line) or are the shared helpers; backends of other databases
 * (other engineers' tests) are "other" load, named by their command line.
 */
export function processTicks(database: string | null): ProcessTicks {
  let postgres = 0;
  const others = new Map<number, { name: string; ticks: number }>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = parseStat(Deno.readTextFileSync(`/proc/${entry.name}/stat`));
      let name = stat.comm;
      if (stat.comm === "postgres") {
        const cmd = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ");
        if (database !== null && (POSTGRES_HELPER.test(cmd) || cmd.includes(` ${database} `))) {
          postgres += stat.own;
          continue;
        }
        name = cmd.trim().split(/\s+/).slice(0, 3).join(" ");
      }
      others.set(Number(entry.name), { name, ticks: stat.own });
    } catch {
      // Exited while we looked.
    }
  }
  return { postgres, others };
}

export interface CpuSnapshot {
  atMs: number;
  service: number;
  self: ProcTimes;
  postgres: number;
  /** Every other live process (the service and this one left out). */
  others: Map<number, { name: string; ticks: number }>;
  machine: { busy: number; total: number; steal: number };
}

export function cpuSnapshot(
  o: { servicePids: readonly number[]; database: string | null },
): CpuSnapshot {
  const atMs = performance.now();
  const procs = processTicks(o.database);
  procs.others.delete(Deno.pid);
  for (const pid of o.servicePids) procs.others.delete(pid);
  return {
    atMs,
    service: o.servicePids.reduce((sum, pid) => sum + (procTimes(pid)?.own ?? 0), 0),
    self: procTimes("self") ?? { own: 0, children: 0 },
    postgres: procs.postgres,
    others: procs.others,
    machine: machineTicks(),
  };
}

/** Cores used on average over a window (1.0 = one core busy all the time). */
export interface CpuSplit {
  service: number;
  /** The load generator: wrk (a reaped child) or this process's own sending. */
  client: number;
  postgres: number;
  /** Everything else busy on the machine: other processes, the kernel's share not charged, host steal. */
  other: number;
  /**
   * What "other" was, where it can be named: the busiest other processes
   * (0.02 cores or more, at most five) and the time the host stole from
   * this VM. Processes that began and ended inside the window go unnamed.
   */
  otherNamed: { name: string; cores: number }[];
  machineBusy: number;
}

/** Names with at least this many cores over the window are listed. */
const NAMED_MIN_CORES = 0.02;

export function cpuSplit(a: CpuSnapshot, b: CpuSnapshot): CpuSplit {
  const seconds = (b.atMs - a.atMs) / 1000;
  const perSecond = (ticks: number) => Math.round((ticks / CLOCK_TICKS / seconds) * 100) / 100;
  const service = perSecond(b.service - a.service);
  const client = perSecond(b.self.own - a.self.own + b.self.children - a.self.children);
  const postgres = perSecond(b.postgres - a.postgres);
  // /proc/stat counts ticks summed over cores, at the same USER_HZ.
  const machineBusy = perSecond(b.machine.busy - a.machine.busy);
  // Same-named processes (kworkers, postgres backends) add up.
  const byName = new Map<string, number>();
  for (const [pid, now] of b.others) {
    const ticks = now.ticks - (a.others.get(pid)?.ticks ?? 0);
    if (ticks > 0) byName.set(now.name, (byName.get(now.name) ?? 0) + ticks);
  }
  // A VM's vCPU the host gave to another guest: busy for this machine, run by nobody here.
  byName.set("host steal", b.machine.steal - a.machine.steal);
  const otherNamed = [...byName]
    .map(([name, ticks]) => ({ name, cores: perSecond(ticks) }))
    .filter((n) => n.cores >= NAMED_MIN_CORES)
    .sort((x, y) => y.cores - x.cores || x.name.localeCompare(y.name))
    .slice(0, 5);
  return {
    service,
    client,
    postgres,
    other: Math.max(0, Math.round((machineBusy - service - client - postgres) * 100) / 100),
    otherNamed,
    machineBusy,
  };
}
