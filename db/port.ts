/**
 * The one small port both database drivers implement: embedded PGlite and
 * postgres.js against a real server. Everything above it speaks plain SQL to
 * this interface and never knows which driver runs.
 *
 * SQL conventions that keep the two drivers identical:
 * - every parameter is cast (`$1::text`, `$2::timestamptz`), so neither
 *   driver has to guess a type;
 * - JSON goes in as text and is cast `$n::text::jsonb` (postgres.js would
 *   otherwise JSON-encode a string a second time);
 * - `bigint` and `numeric` come back as strings from postgres.js and as
 *   numbers or strings from PGlite: convert them once, in the module that
 *   owns the query, with `Number(...)`.
 */

export type Row = Record<string, unknown>;

export interface QueryOptions {
  /**
   * Do not keep this statement's plan for long: Postgres plans it at every
   * execution, PGlite at least every second (db/pglite_statements.ts). For a
   * statement whose best plan changes as its tables grow: a plan kept from
   * when they were small (a fresh database, before autovacuum's first
   * analyze) can read a whole table on every run once they are big.
   * Both drivers keep the other statements prepared.
   */
  replan?: boolean;
}

export interface Queryable {
  query<T = Row>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<T[]>;
  /** Runs a multi-statement script (a migration file) without parameters. */
  exec(script: string): Promise<void>;
}

export type DriverName = "pglite" | "postgres";

export interface Database extends Queryable {
  readonly driver: DriverName;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Subscribes to NOTIFY on `channel`; resolves to an unsubscribe function. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
  /**
   * Why the database is known to be unreachable right now, or null. Calls
   * made meanwhile fail at once; callers that queue work of their own (the
   * ingest's group commit) ask first instead of queuing behind hung calls.
   */
  unavailable?(): string | null;
}

/** The database could not be reached or refused service; the caller may retry later. */
export class DatabaseUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DatabaseUnavailableError";
  }
}

/**
 * A query that ran past its pool's deadline (`queryTimeoutMs`, the operator
 * reads' READ_QUERY_TIMEOUT_MS): given up, and the server asked to cancel it.
 * Not transient: a client is told the query was too slow, not that the
 * database is down.
 */
export class QueryTimeoutError extends Error {
  constructor(readonly timeoutMs: number, options?: ErrorOptions) {
    super(`Query cancelled after ${timeoutMs} ms`, options);
    this.name = "QueryTimeoutError";
  }
}

// Socket-level failures, postgres.js's own connection codes, and SQLSTATE
// classes 08 (connection exception), 53 (insufficient resources) and 57P
// (operator intervention: shutdown, cannot connect now).
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "53100",
  "53200",
  // A read-only server: after a failover the address reached a standby.
  "25006",
]);

/**
 * 55000 (object not in prerequisite state) covers many things; only "database
 * ... is not currently accepting connections" (allow_connections off while an
 * operator works on it) means new sessions are refused until it is back.
 */
function refusesConnections(code: string, e: object): boolean {
  return code === "55000" &&
    /not currently accepting connections/.test(String((e as { message?: unknown }).message));
}

/** Whether `error` means "the database is not there", as opposed to a bad query. */
export function isUnavailable(error: unknown): boolean {
  return causes(error).some((e) => {
    if (e instanceof DatabaseUnavailableError) return true;
    const code = codeOf(e);
    return UNAVAILABLE_CODES.has(code) || code.startsWith("08") || refusesConnections(code, e);
  });
}

/**
 * Whether `error` means "not now", a failure a retry may not meet: the
 * database unavailable, a statement that lost a deadlock or serialization
 * conflict (class 40), could not take a lock (55P03) or was cancelled, by a
 * timeout or an operator (57014), or a new session refused its login or
 * database (classes 28 and 3D: a password rotated, or the database renamed,
 * under a running service). The statement's transaction rolled back, so
 * nothing was written: a client may be told to retry. (Not "unavailable": at
 * start-up those are a wrong DATABASE_URL, to stop on at once.)
 */
export function isTransient(error: unknown): boolean {
  if (isUnavailable(error)) return true;
  return causes(error).some((e) => {
    const code = codeOf(e);
    return code.startsWith("40") || code === "55P03" || code === "57014" ||
      code.startsWith("28") || code === "3D000";
  });
}

/** `error` and the errors it was caused by, outermost first (objects only). */
function causes(error: unknown): object[] {
  const chain: object[] = [];
  for (let e = error; typeof e === "object" && e !== null && !chain.includes(e);) {
    chain.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return chain;
}

function codeOf(e: object): string {
  return String((e as { code?: unknown }).code ?? "");
}
