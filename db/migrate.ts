/**
 * The built-in migrator: applies supabase/migrations/*.sql in file-name
 * order, each in its own transaction under an advisory lock, so instances
 * starting together apply each file once. Each file records itself in
 * schema_migrations (which is why `psql -f` gives the same result); the
 * migrator adds the file's checksum and refuses to run if a file that was
 * applied has since been edited.
 */
import type { Database } from "./port.ts";

export interface Migration {
  /** The timestamp prefix of the file name, e.g. "20261122000000". */
  version: string;
  name: string;
  sql: string;
  /** Hex SHA-256 of the file's text. */
  checksum: string;
}

export const MIGRATIONS_DIR = new URL("../supabase/migrations/", import.meta.url);
const FILE_NAME = /^(\d{14})_([a-z0-9_]+)\.sql$/;
// Any constant works; all instances must agree on it.
const LOCK_KEY = 727_001;

export async function loadMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".sql")) continue;
    const match = FILE_NAME.exec(entry.name);
    if (!match) {
      throw new Error(
        `Cannot load migration "${entry.name}": the name must be <YYYYMMDDHHmmss>_<what>.sql`,
      );
    }
    const sql = await Deno.readTextFile(new URL(entry.name, dir));
    migrations.push({ version: match[1], name: match[2], sql, checksum: await sha256Hex(sql) });
  }
  return migrations.sort((a, b) => a.version.localeCompare(b.version));
}

export interface MigrateResult {
  applied: Migration[];
  alreadyApplied: number;
}

export async function migrate(
  db: Database,
  migrations: readonly Migration[],
): Promise<MigrateResult> {
  const applied: Migration[] = [];
  let alreadyApplied = 0;
  for (const migration of migrations) {
    const ran = await db.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock($1::bigint)", [LOCK_KEY]);
      const [{ exists }] = await tx.query<{ exists: boolean }>(
        "select to_regclass('schema_migrations') is not null as exists",
      );
      if (exists) {
        const rows = await tx.query<{ checksum: string | null }>(
          "select checksum from schema_migrations where version = $1::text",
          [migration.version],
        );
        if (rows.length > 0) {
          const recorded = rows[0].checksum;
          if (recorded !== null && recorded !== migration.checksum) {
            throw new Error(
              `Migration ${migration.version}_${migration.name} was edited after it was applied; ` +
                "add a new migration instead",
            );
          }
          if (recorded === null) await recordChecksum(tx, migration);
          return false;
        }
      }
      await tx.exec(migration.sql);
      // The file records itself; this covers a file that forgot to.
      await tx.query(
        `insert into schema_migrations (version, name) values ($1::text, $2::text)
         on conflict (version) do nothing`,
        [migration.version, migration.name],
      );
      await recordChecksum(tx, migration);
      return true;
    });
    if (ran) applied.push(migration);
    else alreadyApplied++;
  }
  return { applied, alreadyApplied };
}

function recordChecksum(tx: Pick<Database, "query">, migration: Migration) {
  return tx.query("update schema_migrations set checksum = $2::text where version = $1::text", [
    migration.version,
    migration.checksum,
  ]);
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
