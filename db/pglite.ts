/**
 * Embedded driver: PGlite, real Postgres compiled to WASM, file-backed under
 * `dataDir` (or in memory when `dataDir` is null, for throw-away uses).
 * PGlite never calls fsync: a commit survives a killed process, not a power
 * loss. Production sets DATABASE_URL and uses the postgres.js driver.
 */
import { PGlite } from "@electric-sql/pglite";
import { type Database, DatabaseUnavailableError, type Queryable, type Row } from "./port.ts";

export async function openPglite(dataDir: string | null): Promise<Database> {
  if (dataDir !== null) await Deno.mkdir(dataDir, { recursive: true });
  const pg = dataDir === null ? await PGlite.create() : await PGlite.create(dataDir);
  const queryable = (target: Pick<PGlite, "query" | "exec">): Queryable => ({
    async query<T = Row>(text: string, params?: readonly unknown[]) {
      try {
        const result = await target.query<T>(text, params as unknown[] | undefined);
        return result.rows;
      } catch (error) {
        throw translate(error);
      }
    },
    async exec(script) {
      try {
        await target.exec(script);
      } catch (error) {
        throw translate(error);
      }
    },
  });
  return {
    driver: "pglite",
    ...queryable(pg),
    async transaction(fn) {
      try {
        return await pg.transaction((tx) => fn(queryable(tx)));
      } catch (error) {
        throw translate(error);
      }
    },
    async listen(channel, onPayload) {
      const unsubscribe = await pg.listen(channel, onPayload);
      return async () => {
        if (!pg.closed) await unsubscribe();
      };
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
  };
}

function translate(error: unknown): unknown {
  if (error instanceof Error && /PGlite is closed/.test(error.message)) {
    return new DatabaseUnavailableError("Embedded database is closed", { cause: error });
  }
  return error;
}
