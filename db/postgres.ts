/**
 * Server driver: postgres.js against DATABASE_URL. A pool of connections for
 * queries and transactions; LISTEN uses postgres.js's own dedicated
 * connection, so DATABASE_URL must be a direct or session-mode address (a
 * transaction pooler drops LISTEN).
 */
import postgres from "postgres";
import {
  type Database,
  DatabaseUnavailableError,
  isUnavailable,
  type Queryable,
  type Row,
} from "./port.ts";

export interface PostgresOptions {
  /** Pool size. */
  max?: number;
  /** Seconds to wait for a connection before the database counts as unreachable. */
  connectTimeoutSeconds?: number;
  /** application_name of every session (pg_stat_activity). */
  applicationName?: string;
}

export function openPostgres(url: string, options: PostgresOptions = {}): Promise<Database> {
  const sql = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 3,
    onnotice: () => {},
    // Keep `timestamptz` as Date and leave bigint/numeric as strings: the
    // modules that own the queries convert them, the same for both drivers.
    connection: { application_name: options.applicationName ?? "optionstrat-backend" },
  });
  const queryable = (target: postgres.Sql | postgres.TransactionSql): Queryable => ({
    async query<T = Row>(text: string, params?: readonly unknown[]) {
      try {
        // Prepared (postgres.js caches them per connection by text): the hot statements
        // are parsed and planned once, not on every webhook.
        // deno-lint-ignore no-explicit-any
        const rows = await target.unsafe(text, (params ?? []) as any[], { prepare: true });
        // A plain array, as PGlite gives (postgres.js returns its own Result subclass).
        return Array.from(rows) as unknown as T[];
      } catch (error) {
        throw translate(error);
      }
    },
    async exec(script) {
      try {
        // No parameters: the simple protocol, which runs several statements.
        await target.unsafe(script);
      } catch (error) {
        throw translate(error);
      }
    },
  });
  let closed = false;
  const db: Database = {
    driver: "postgres",
    ...queryable(sql),
    async transaction(fn) {
      try {
        return await sql.begin((tx) => fn(queryable(tx))) as Awaited<ReturnType<typeof fn>>;
      } catch (error) {
        throw translate(error);
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

function translate(error: unknown): unknown {
  if (isUnavailable(error) && !(error instanceof DatabaseUnavailableError)) {
    const message = error instanceof Error ? error.message : String(error);
    return new DatabaseUnavailableError(`Database unreachable: ${message}`, { cause: error });
  }
  return error;
}
