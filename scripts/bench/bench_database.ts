/**
 * A throw-away database per scenario, so every scenario starts from the
 * same empty state and its counts are its own:
 * - PGlite: a copy of a migrated template directory (built once per bench
 *   run: a cold PGlite start plus migrations costs seconds, a copy opens in
 *   well under one), given to the service as DATA_DIR;
 * - Postgres: `create database bench_<time>_<random>` on the server of
 *   DATABASE_URL (never that database itself), dropped `with (force)` after.
 * PGlite is single-process: the bench can read it only after the service
 * stopped; a Postgres database can be read while the service runs.
 */
import { cpSync } from "node:fs";
import { loadMigrations, migrate } from "../../db/migrate.ts";
import { openPglite } from "../../db/pglite.ts";
import type { Database, DriverName } from "../../db/port.ts";
import { openPostgres } from "../../db/postgres.ts";

export interface BenchDatabase {
  driver: DriverName;
  /** What the service's environment gets: DATA_DIR or DATABASE_URL. */
  serviceEnv: Record<string, string>;
  /** The Postgres database name (for CPU accounting); null for PGlite. */
  name: string | null;
  /** Opens it from the bench. PGlite: only once the service has stopped. */
  open(): Promise<Database>;
  dispose(): Promise<void>;
}

/** A migrated, empty PGlite directory under `dir`, to copy per scenario. */
export async function buildPgliteTemplate(dir: string): Promise<string> {
  const template = `${dir}/pglite-template`;
  const db = await openPglite(template);
  try {
    await migrate(db, await loadMigrations());
  } finally {
    await db.close();
  }
  return template;
}

export function freshPglite(
  template: string,
  o: { tmpRoot: string; label: string },
): BenchDatabase {
  const dataDir = `${o.tmpRoot}/${o.label}-${crypto.randomUUID().slice(0, 8)}`;
  // The service opens `${DATA_DIR}/pglite` (compose.ts openDatabase).
  cpSync(template, `${dataDir}/pglite`, { recursive: true });
  const opened: Database[] = [];
  return {
    driver: "pglite",
    serviceEnv: { DATA_DIR: dataDir },
    name: null,
    async open() {
      const db = await openPglite(`${dataDir}/pglite`);
      opened.push(db);
      return db;
    },
    async dispose() {
      for (const db of opened) await db.close().catch(() => {});
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Every database the bench creates is named with this prefix, so a leftover is recognisable. */
export const NAME_PREFIX = "bench_";

export async function freshPostgres(serverUrl: string): Promise<BenchDatabase> {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const name = `${NAME_PREFIX}${stamp}_${crypto.randomUUID().slice(0, 8).replaceAll("-", "")}`;
  const admin = await openPostgres(serverUrl, { max: 1 });
  try {
    await admin.exec(`create database ${name}`);
  } catch (error) {
    await admin.close();
    throw error;
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const opened: Database[] = [];
  return {
    driver: "postgres",
    serviceEnv: { DATABASE_URL: url.toString() },
    name,
    async open() {
      const db = await openPostgres(url.toString(), { max: 2 });
      opened.push(db);
      return db;
    },
    async dispose() {
      for (const db of opened) await db.close().catch(() => {});
      try {
        await admin.exec(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.close();
      }
    },
  };
}
