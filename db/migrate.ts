/**
 * The built-in migrator: applies supabase/migrations/*.sql in file-name
 * order, each in its own transaction under an advisory lock, so instances
 * starting together apply each file once. Each file records itself in
 * schema_migrations (which is why `psql -f` gives the same result); the
 * migrator adds the file's checksum and refuses to run if a file that was
 * applied has since been edited.
 *
 * Each file's transaction waits at most `lockTimeoutMs` for a table lock:
 * during a deploy the old machines still serve, and an ALTER queued behind
 * one long reader makes every webhook queue behind the ALTER (Postgres grants
 * locks in order), past the ingest deadline. A file that times out is rolled
 * back and tried again after a pause, a bounded number of times.
 */
import { logger } from "../logging.ts";
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

/** One file's try that could not take its locks in time, before the pause and the next try. */
export interface MigrationRetry {
  migration: Migration;
  /** The try that timed out, from 1. */
  attempt: number;
  attempts: number;
  /** The pause before the next try. */
  waitMs: number;
  error: string;
}

export interface MigrateOptions {
  /**
   * Longest one statement of a file waits for a lock before the file's
   * transaction gives up. Webhooks queued behind the waiting ALTER wait as
   * long, so it stays well inside INGEST_DEADLINE_MS (2 s by default).
   */
  lockTimeoutMs?: number;
  /** Tries per file before the migration fails. */
  attempts?: number;
  /** Pause after the first timed-out try; doubled after each, up to 5 s. */
  backoffMs?: number;
  /** Told of each timed-out try (default: a warning in the log). */
  onRetry?: (retry: MigrationRetry) => void;
}

export const MIGRATION_LOCK_TIMEOUT_MS = 1_000;
export const MIGRATION_ATTEMPTS = 8;
const MAX_BACKOFF_MS = 5_000;

/** Every try of one file timed out waiting for a lock. */
export class MigrationLockTimeoutError extends Error {
  constructor(migration: Migration, attempts: number, lockTimeoutMs: number) {
    super(
      `Migration ${migration.version}_${migration.name} could not take its table locks: ` +
        `${attempts} tries each waited ${lockTimeoutMs} ms behind another session's lock ` +
        "(a long query or an open transaction; see pg_locks and pg_stat_activity). Nothing of " +
        "it was applied; run the migration again once that session ends",
    );
    this.name = "MigrationLockTimeoutError";
  }
}

const log = logger("migrate");

export async function migrate(
  db: Database,
  migrations: readonly Migration[],
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const lockTimeoutMs = options.lockTimeoutMs ?? MIGRATION_LOCK_TIMEOUT_MS;
  const attempts = options.attempts ?? MIGRATION_ATTEMPTS;
  const backoffMs = options.backoffMs ?? 250;
  const onRetry = options.onRetry ?? ((r: MigrationRetry) =>
    log.warn(
      "Migration {migration} waited {lock_timeout_ms} ms for a lock (try {attempt} of " +
        "{attempts}); trying again in {wait_ms} ms",
      {
        migration: `${r.migration.version}_${r.migration.name}`,
        lock_timeout_ms: lockTimeoutMs,
        attempt: r.attempt,
        attempts: r.attempts,
        wait_ms: r.waitMs,
        error: r.error,
      },
    ));
  const applied: Migration[] = [];
  let alreadyApplied = 0;
  for (const migration of migrations) {
    let ran: boolean | undefined;
    for (let attempt = 1; ran === undefined; attempt++) {
      try {
        ran = await applyOne(db, migration, lockTimeoutMs);
      } catch (error) {
        if (!isLockTimeout(error)) throw error;
        if (attempt >= attempts) {
          throw new MigrationLockTimeoutError(migration, attempts, lockTimeoutMs);
        }
        const waitMs = Math.min(backoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS);
        onRetry({ migration, attempt, attempts, waitMs, error: String(error) });
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
    if (ran) applied.push(migration);
    else alreadyApplied++;
  }
  return { applied, alreadyApplied };
}

/** SQLSTATE 55P03: lock_timeout expired (the transaction is rolled back). */
function isLockTimeout(error: unknown): boolean {
  return String((error as { code?: unknown })?.code ?? "") === "55P03";
}

/** Applies one file in its own transaction; false when it was applied before. */
function applyOne(db: Database, migration: Migration, lockTimeoutMs: number): Promise<boolean> {
  return db.transaction(async (tx) => {
    // The advisory lock first, without a timeout: an instance migrating
    // meanwhile holds it while it applies, and this one should wait for it.
    await tx.query("select pg_advisory_xact_lock($1::bigint)", [LOCK_KEY]);
    await tx.query("select set_config('lock_timeout', $1::text, true)", [`${lockTimeoutMs}ms`]);
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
