/**
 * `deno task migrate [--status]`: applies supabase/migrations to the database
 * the configuration names (DATABASE_URL, else the embedded PGlite under
 * DATA_DIR) and prints one line per file applied, or that the database is up
 * to date. Fly's release_command runs it before a new version starts; exit
 * code 0 on success, 1 when the configuration is bad, the database cannot be
 * reached or a migration fails (with a message saying which), 2 for a usage
 * error. `--status` lists applied and pending files without applying any.
 *
 * `runMigrate(db, options)` returns the lines, for tests; `main()` does the I/O.
 */
import { parseArgs } from "node:util";
import { describeDatabase, openDatabase, pgliteDirectory } from "../compose.ts";
import { type Config, ConfigError, loadConfig } from "../core/config.ts";
import { loadMigrations, migrate, type Migration, type MigrationRetry } from "../db/migrate.ts";
import { type Database, isUnavailable } from "../db/port.ts";

export const HELP = `Apply the database migrations (supabase/migrations/*.sql, in order).

Usage: deno task migrate [--status]

The database is DATABASE_URL (postgres://...), or when it is unset the
embedded PGlite under DATA_DIR (default ./data). The server also migrates at
start-up; with PGlite, this is refused while a server uses the same DATA_DIR
(one process at a time per data directory).

  --status     list applied and pending migrations, apply nothing
  -h, --help   this text

Exit code: 0 on success, 1 on a configuration, connection or migration
error, 2 for a usage error.`;

export interface RunMigrateOptions {
  /** List applied and pending migrations instead of applying them. */
  status?: boolean;
  /** The migrations to consider (default: supabase/migrations). */
  migrations?: readonly Migration[];
  /** Told of each try that timed out waiting for a table lock. */
  onRetry?: (retry: MigrationRetry) => void;
}

/** Applies the pending migrations (or, with `status`, lists them) and returns what to print. */
export async function runMigrate(db: Database, options: RunMigrateOptions = {}): Promise<string[]> {
  const migrations = options.migrations ?? await loadMigrations();
  if (options.status) return await migrationStatus(db, migrations);
  const { applied, alreadyApplied } = await migrate(db, migrations, { onRetry: options.onRetry });
  if (applied.length === 0) {
    return [`database is up to date (${plural(alreadyApplied, "migration")} already applied)`];
  }
  return applied.map((m) => `applied ${label(m)}`);
}

interface AppliedRow {
  version: string;
  name: string;
  checksum: string | null;
  applied_at: Date | string;
}

async function migrationStatus(db: Database, migrations: readonly Migration[]): Promise<string[]> {
  const [{ exists }] = await db.query<{ exists: boolean }>(
    "select to_regclass('schema_migrations') is not null as exists",
  );
  const rows = exists
    ? await db.query<AppliedRow>(
      "select version, name, checksum, applied_at from schema_migrations order by version",
    )
    : [];
  return statusLines(rows, migrations);
}

/**
 * `--status` for a PGlite data directory that holds no database: every file
 * pending, and the directory left as it was. Opening it would create a
 * database there, so a mistyped DATA_DIR would leave one behind.
 */
export async function statusWithoutDatabase(
  dataDir: string,
  migrations?: readonly Migration[],
): Promise<string[] | null> {
  try {
    await Deno.stat(`${dataDir}/PG_VERSION`);
    return null;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return [
    `no database in ${dataDir} yet (nothing created): the server or \`deno task migrate\` creates it`,
    ...statusLines([], migrations ?? await loadMigrations()),
  ];
}

function statusLines(rows: readonly AppliedRow[], migrations: readonly Migration[]): string[] {
  const recorded = new Map(rows.map((row) => [row.version, row]));
  const lines: string[] = [];
  let pending = 0;
  for (const migration of migrations) {
    const row = recorded.get(migration.version);
    if (row === undefined) {
      pending++;
      lines.push(`pending ${label(migration)}`);
    } else if (row.checksum !== null && row.checksum !== migration.checksum) {
      lines.push(
        `edited  ${label(migration)} (applied ${
          iso(row.applied_at)
        }, the file has changed since: ` +
          "migrating will fail; add a new migration instead)",
      );
    } else {
      lines.push(`applied ${label(migration)} (${iso(row.applied_at)})`);
    }
  }
  const files = new Set(migrations.map((m) => m.version));
  for (const row of rows) {
    if (!files.has(row.version)) {
      lines.push(`applied ${row.version}_${row.name} (${iso(row.applied_at)}, no such file here)`);
    }
  }
  lines.push(`${rows.length} applied, ${pending} pending`);
  return lines;
}

function label(migration: Pick<Migration, "version" | "name">): string {
  return `${migration.version}_${migration.name}`;
}

function iso(value: Date | string): string {
  return new Date(value).toISOString();
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

export { describeDatabase };

/** Postgres refused us before any SQL ran: wrong password, no such database or role. */
function isConnectionRefusal(error: unknown): boolean {
  const code = String((error as { code?: unknown })?.code ?? "");
  return code.startsWith("28") || code === "3D000";
}

/** The message for a failure after the configuration was read. */
export function explainFailure(
  error: unknown,
  config: Config,
  options: { opening?: boolean } = {},
): string {
  const message = (error instanceof Error ? error.message : String(error))
    .replace(/^Database unreachable: /, "");
  if (
    isUnavailable(error) || isConnectionRefusal(error) ||
    (options.opening && config.databaseUrl !== null)
  ) {
    return `Cannot reach the database: ${message} (${describeDatabase(config)})`;
  }
  if (options.opening && config.databaseUrl === null) {
    // PGlite starts in openDatabase: a damaged or unwritable data directory fails there.
    return `Cannot open the database: ${message} (${describeDatabase(config)})`;
  }
  return `Cannot migrate: ${message} (${describeDatabase(config)})`;
}

async function main(): Promise<number> {
  let status: boolean;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: { status: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    status = values.status === true;
  } catch (error) {
    console.error(`${(error as Error).message.split(". ")[0]}\nRun with --help for usage.`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(Deno.env.toObject()).config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 1;
  }

  console.log(`database: ${describeDatabase(config)}`);
  let db: Database | null = null;
  try {
    const absent = status && config.databaseUrl === null
      ? await statusWithoutDatabase(pgliteDirectory(config))
      : null;
    if (absent !== null) {
      for (const line of absent) console.log(line);
      return 0;
    }
    db = await openDatabase(config);
    const onRetry = (r: MigrationRetry) =>
      console.error(
        `${label(r.migration)} waited for a table lock (try ${r.attempt} of ${r.attempts}); ` +
          `trying again in ${r.waitMs} ms`,
      );
    for (const line of await runMigrate(db, { status, onRetry })) console.log(line);
    return 0;
  } catch (error) {
    console.error(explainFailure(error, config, { opening: db === null }));
    return 1;
  } finally {
    await db?.close().catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
