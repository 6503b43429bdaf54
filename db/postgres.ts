/**
 * Server driver: postgres.js against DATABASE_URL. A pool of connections for
 * queries and transactions; LISTEN uses postgres.js's own dedicated
 * connection, so DATABASE_URL must be a direct or session-mode address (a
 * transaction pooler drops LISTEN).
 *
 * Fail fast while the server is gone: postgres.js queues a query until it
 * has a connection again, so during an outage a webhook would wait past
 * TradingView's 3 s instead of getting its 503. A connection-level failure,
 * or a call unanswered for PROBE_DEADLINE_MS, starts a probe (`select 1`); if
 * that fails too, or gets no answer within PROBE_DEADLINE_MS while no other
 * call got one either (a partition: silence, no error), the database is down
 * (one killed session, or a slow query, is not an outage): until a probe
 * succeeds, every call is refused at once with DatabaseUnavailableError and
 * never reaches the driver, so nothing refused can be written later. A failed
 * probe is repeated every PROBE_INTERVAL_MS; an unanswered one is waited for.
 */
import postgres from "postgres";
import { withinMs } from "../deadline.ts";
import {
  type Database,
  DatabaseUnavailableError,
  isUnavailable,
  type Queryable,
  type QueryOptions,
  QueryTimeoutError,
  type Row,
} from "./port.ts";

const PROBE_INTERVAL_MS = 250;
const PROBE_DEADLINE_MS = 1_000;

/**
 * `url` without its own application_name, which postgres.js would send in
 * place of ours: a worker's sessions carry its name so other instances can
 * see it is alive (db/jobs.ts reclaimStaleJobs); under any other they would
 * take its claims while it decides them.
 */
function withoutApplicationName(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  const names = [...parsed.searchParams.keys()].filter((k) =>
    k.toLowerCase() === "application_name"
  );
  if (names.length === 0) return url;
  for (const name of names) parsed.searchParams.delete(name);
  return parsed.toString();
}

/**
 * An IPv6 address in `url` ("[fdaa::3]:5432", as Fly's private network
 * gives them) as postgres.js's host and port options: read from the URL, its
 * split on ":" leaves the host "[" and it would never connect.
 */
function ipv6Host(url: string): { host?: string; port?: number } {
  if (!URL.canParse(url)) return {}; // postgres.js's defaults, or its own error
  const { hostname, port } = new URL(url);
  if (!hostname.startsWith("[")) return {};
  // A list, one entry per host, as postgres.js keeps them (its types say a string, which
  // it would split on ":" again).
  return { host: [hostname.slice(1, -1)], port: [Number(port || 5432)] } as unknown as {
    host: string;
    port: number;
  };
}

export interface PostgresOptions {
  /** Pool size. */
  max?: number;
  /** Seconds to wait for a connection before the database counts as unreachable. */
  connectTimeoutSeconds?: number;
  /** application_name of every session (pg_stat_activity). */
  applicationName?: string;
  /**
   * Cancels a query not answered within this many ms, waiting for a connection
   * included, with QueryTimeoutError. Client-side (postgres.js sends the
   * server a cancel request): a statement_timeout startup parameter is refused
   * by some poolers in front of Postgres.
   */
  queryTimeoutMs?: number;
}

export function openPostgres(url: string, options: PostgresOptions = {}): Promise<Database> {
  const sql = postgres(options.applicationName === undefined ? url : withoutApplicationName(url), {
    ...ipv6Host(url),
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 3,
    // Reconnect every half second at most: postgres.js's default backoff grows
    // to 20 s, so a database back after a few seconds' outage stayed unused
    // for as long again.
    backoff: (retries: number) => Math.min(0.025 * 2 ** retries, 0.5),
    onnotice: () => {},
    // Keep `timestamptz` as Date and leave bigint/numeric as strings: the
    // modules that own the queries convert them, the same for both drivers.
    connection: { application_name: options.applicationName ?? "optionstrat-backend" },
  });
  let closed = false;
  let down: { since: number; reason: string } | null = null;
  let probing = false;
  /** When any call last got an answer from the server. */
  let lastAnswerAt = 0;

  /** Awaits a driver call; one unanswered for PROBE_DEADLINE_MS starts the probe. */
  async function watched<T>(call: Promise<T>): Promise<T> {
    const timer = setTimeout(() => {
      if (!probing && !closed) void probeUntilUp(`no answer in ${PROBE_DEADLINE_MS} ms`);
    }, PROBE_DEADLINE_MS);
    try {
      const result = await call;
      lastAnswerAt = performance.now();
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  function refuseWhileDown(): void {
    if (down === null) return;
    const seconds = Math.round((Date.now() - down.since) / 100) / 10;
    throw new DatabaseUnavailableError(
      `Database unreachable for ${seconds} s (${down.reason}); waiting for it to answer`,
    );
  }

  /** Translates a driver error; a connection-level one starts the probe. */
  function failed(error: unknown): unknown {
    const translated = translate(error);
    if (translated instanceof DatabaseUnavailableError && !probing && !closed) {
      void probeUntilUp((translated.cause as Error)?.message ?? translated.message);
    }
    return translated;
  }

  async function probeUntilUp(reason: string): Promise<void> {
    probing = true;
    try {
      for (let first = true; !closed; first = false) {
        if (!first) await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
        // Not cancelled on its deadline (cancelling a queued postgres.js query
        // mid-outage crashed the process in a test): waited for instead.
        const sent = performance.now();
        const probe = sql`select 1`.then(() => true, () => false);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), PROBE_DEADLINE_MS);
        });
        let answer = await Promise.race([probe, late]);
        clearTimeout(timer);
        if (answer === "late") {
          // A saturated pool answers other calls meanwhile; a partition answers none.
          if (lastAnswerAt < sent) {
            down ??= { since: Date.now(), reason: `${reason}; no answer to a probe` };
          }
          answer = await probe;
        }
        if (answer) {
          down = null;
          return;
        }
        down ??= { since: Date.now(), reason };
      }
    } finally {
      probing = false;
    }
  }

  /**
   * `pending`, or QueryTimeoutError once `queryTimeoutMs` has passed. The answer does
   * not wait for the cancel: a server that cannot be reached never confirms it.
   */
  function withinDeadline<T>(pending: postgres.PendingQuery<T & postgres.Row[]>) {
    const ms = options.queryTimeoutMs;
    if (ms === undefined) return pending;
    // Cancelled once the timeout is the answer, so the query's own rejection (57014) is not.
    // Queued for a connection: dropped from the queue. Running: the server is asked to stop
    // it; if that request cannot reach it, the query runs on and its connection stays busy
    // until it ends (main.ts's guard keeps the failed connect from ending the process).
    return withinMs(pending, ms, () => new QueryTimeoutError(ms), () => pending.cancel());
  }

  const queryable = (target: postgres.Sql | postgres.TransactionSql): Queryable => ({
    async query<T = Row>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      refuseWhileDown();
      try {
        // Prepared (postgres.js caches them per connection by text): the hot statements
        // are parsed and planned once, not on every webhook; `replan` uses the unnamed
        // statement, planned at each execution.
        const prepare = options?.replan !== true;
        // deno-lint-ignore no-explicit-any
        const pending = target.unsafe(text, (params ?? []) as any[], { prepare });
        const rows = await watched(withinDeadline(pending));
        // A plain array, as PGlite gives (postgres.js returns its own Result subclass).
        return Array.from(rows) as unknown as T[];
      } catch (error) {
        throw failed(error);
      }
    },
    async exec(script) {
      refuseWhileDown();
      try {
        // No parameters: the simple protocol, which runs several statements.
        await watched(target.unsafe(script));
      } catch (error) {
        throw failed(error);
      }
    },
  });
  const db: Database = {
    driver: "postgres",
    ...queryable(sql),
    unavailable: () => down === null ? null : down.reason,
    async transaction(fn) {
      refuseWhileDown();
      try {
        return await sql.begin((tx) => fn(queryable(tx))) as Awaited<ReturnType<typeof fn>>;
      } catch (error) {
        throw failed(error);
      }
    },
    async listen(channel, onPayload) {
      try {
        const { unlisten } = await sql.listen(channel, onPayload);
        return async () => {
          if (!closed) await unlisten();
        };
      } catch (error) {
        throw translate(error);
      }
    },
    async close() {
      closed = true;
      await sql.end({ timeout: 5 });
    },
  };
  return Promise.resolve(db);
}

/**
 * postgres.js 3.4 under Deno: when a connection closes while a write of it
 * is scheduled (setImmediate), that write can still run after the socket is
 * gone and throws "Cannot read properties of null (reading 'write')" from
 * connection.js, uncaught, which would end the process mid-outage (seen in
 * the outage fault test). The connection is closed already and reconnects;
 * main.ts swallows exactly this error and logs it.
 */
export function isClosedSocketWriteRace(error: unknown): boolean {
  return error instanceof TypeError && /\(reading 'write'\)/.test(error.message) &&
    /postgres\/src\/connection\.js/.test(error.stack ?? "");
}

/**
 * postgres.js 3.4 under Deno, mid-outage: a connection can be left
 * connecting on a socket whose listeners the driver has already removed (it
 * closed that socket's connection and went on to reconnect), and when that
 * connect is refused, Deno's node:net reports the error with no one
 * listening, uncaught, which would end the process (seen in the outage fault
 * test: "Uncaught (in promise) Error: connect ECONNREFUSED", from
 * `_afterConnectImpl`). Nothing waits on that socket: the driver has failed
 * its queries already and reconnects on its own. main.ts swallows exactly
 * this error and logs it.
 */
export function isOrphanedConnectFailure(error: unknown): boolean {
  // A refused, reset or unreachable connect is one of db/port.ts's socket-level failures;
  // the syscall and node:net's frame say it came from a connect attempt.
  return error instanceof Error && (error as { syscall?: unknown }).syscall === "connect" &&
    isUnavailable(error) && /_afterConnect\w* \(ext:deno_node\/net\.ts/.test(error.stack ?? "");
}

function translate(error: unknown): unknown {
  if (isUnavailable(error) && !(error instanceof DatabaseUnavailableError)) {
    const message = error instanceof Error ? error.message : String(error);
    return new DatabaseUnavailableError(`Database unreachable: ${message}`, { cause: error });
  }
  return error;
}
