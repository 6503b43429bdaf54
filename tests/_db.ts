/**
 * Throw-away databases for tests, on both drivers:
 * - PGlite: a copy of a migrated template (a cold PGlite start costs seconds),
 *   loaded from its tarball into memory on the test's thread (see
 *   freshPglite): copying the 40 MB directory on disk instead cost 0.4-1.4 s
 *   a test on a slow VM and slowed every test beside it; loading, ~0.35 s;
 * - Postgres: a fresh database on the server at TEST_DATABASE_URL (default
 *   postgres://postgres@127.0.0.1:5432/postgres), migrated, dropped afterwards.
 * `dbTest(name, fn)` registers the test once per driver. Under CI=true an
 * unreachable Postgres fails the run; elsewhere its tests are skipped and
 * announced.
 */
import { PGlite } from "@electric-sql/pglite";
import { cpSync } from "node:fs";
import { loadMigrations, migrate } from "../db/migrate.ts";
import { openPglite } from "../db/pglite.ts";
import type { Database, DriverName, Queryable, QueryOptions } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";

export const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ??
  "postgres://postgres@127.0.0.1:5432/postgres";
const IN_CI = Deno.env.get("CI") === "true";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url).pathname;

async function postgresReachable(): Promise<boolean> {
  const admin = await openPostgres(TEST_DATABASE_URL, { max: 1, connectTimeoutSeconds: 2 });
  try {
    await admin.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await admin.close().catch(() => {});
  }
}

export const POSTGRES_REACHABLE = await postgresReachable();
if (!POSTGRES_REACHABLE && !IN_CI) {
  console.warn(
    `%cPostgres not reachable at ${redact(TEST_DATABASE_URL)}: the [postgres] variants of ` +
      "database tests are SKIPPED (PGlite variants still run). Set TEST_DATABASE_URL or start Postgres.",
    "color: yellow",
  );
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}

/**
 * Nothing in the tests creates databases, and template0 and template1 are 15 of a cluster's 40
 * MB: every fresh copy loads the whole directory, and on a 2-core VM a third less took each open
 * from about 0.9 s to 0.6 s. One statement each: DROP DATABASE runs outside a transaction.
 */
export const WITHOUT_TEMPLATE_DATABASES = [
  "update pg_database set datistemplate = false where datname in ('template0', 'template1')",
  "drop database template0",
  "drop database template1",
  "checkpoint",
];

/**
 * A test's database is a few pages: with 16 MB of shared buffers instead of 128 each open took
 * half as long here (0.6 s to 0.3 s, most of it the kernel's page faults). Set on the store
 * tests' own databases only; a service a test starts runs as configured in production.
 */
export const SMALL_SHARED_BUFFERS = "alter system set shared_buffers = '16MB'";

/** A migrated PGlite data directory to copy, built once per migration set. */
export async function pgliteTemplate(): Promise<string> {
  const migrations = await loadMigrations();
  const tag = ["lean", ...migrations.map((m) => m.checksum.slice(0, 8))].join("-");
  const dir = `${ARTIFACTS}pglite-template-${tag}`;
  try {
    await Deno.stat(`${dir}/PG_VERSION`);
    return dir;
  } catch {
    // Build it below.
  }
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const building = `${dir}.building-${crypto.randomUUID()}`;
  const db = await openPglite(building);
  await migrate(db, migrations);
  for (const statement of WITHOUT_TEMPLATE_DATABASES) await db.exec(statement);
  await db.close();
  try {
    await Deno.rename(building, dir);
  } catch {
    // Another test module finished first; use its copy.
    await Deno.remove(building, { recursive: true });
  }
  return dir;
}

let templateTarball: Promise<Blob> | undefined;

/**
 * The template as a tarball (PGlite's `dumpDataDir`), built once, read once per test process,
 * with SMALL_SHARED_BUFFERS (a service a test starts runs on the directory above instead).
 */
function pgliteTemplateTarball(): Promise<Blob> {
  return templateTarball ??= (async () => {
    const dir = await pgliteTemplate();
    const file = `${dir}.small-buffers.tar`;
    try {
      return new Blob([await Deno.readFile(file)]);
    } catch {
      // Build it below.
    }
    // Dumped from a private copy: opening a data directory writes to it.
    const copy = `${dir}.dumping-${crypto.randomUUID()}`;
    cpSync(dir, copy, { recursive: true });
    const pg = await PGlite.create(copy);
    await pg.exec(SMALL_SHARED_BUFFERS);
    const tarball = await pg.dumpDataDir("none");
    await pg.close();
    await Deno.remove(copy, { recursive: true });
    const building = `${file}.building-${crypto.randomUUID()}`;
    await Deno.writeFile(building, new Uint8Array(await tarball.arrayBuffer()));
    await Deno.rename(building, file); // atomic: a concurrent build of the same bytes may win
    return tarball;
  })();
}

export interface TestDatabase {
  db: Database;
  /** The database's URL (Postgres only). */
  url?: string;
  /** Another pool on the same database (a second "instance"; `max` connections, default 10). */
  connectAgain(options?: { max?: number }): Promise<Database>;
  dispose(): Promise<void>;
}

/**
 * Store tests open PGlite on the test's own thread: a worker-backed open
 * starts a thread and a WebAssembly instance each time, which was most of the
 * suite's time (four store test files: 68 s against 51 s on a 2-core VM). The
 * worker adapter the service runs by default is covered by
 * tests/pglite_worker_test.ts (the same rows, types, errors and transactions
 * on both) and by every test that starts the real service;
 * `TEST_PGLITE_THREAD=worker` runs the store tests through it as well.
 */
export async function freshPglite(
  options: { thread?: "main" | "worker" } = {},
): Promise<TestDatabase> {
  const thread = options.thread ??
    (Deno.env.get("TEST_PGLITE_THREAD") === "worker" ? "worker" : "main");
  const noSecondConnection = () => {
    throw new Error("PGlite is a single in-process database: it has no second connection");
  };
  if (thread === "main") {
    const db = await openPglite(null, { thread, loadDataDir: await pgliteTemplateTarball() });
    return { db, connectAgain: noSecondConnection, dispose: () => db.close() };
  }
  // The worker opens a directory: a copy of the template on disk.
  const dir = `${ARTIFACTS}pglite-${crypto.randomUUID()}`;
  cpSync(await pgliteTemplate(), dir, { recursive: true });
  const db = await openPglite(dir, { thread });
  return {
    db,
    connectAgain: noSecondConnection,
    async dispose() {
      await db.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

export async function freshPostgres(): Promise<TestDatabase> {
  const name = `ostest_${Date.now()}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = await openPostgres(TEST_DATABASE_URL, { max: 1 });
  await admin.exec(`create database ${name}`);
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  const opened: Database[] = [];
  const connect = async (options: { max?: number } = {}) => {
    const db = await openPostgres(url.toString(), { max: options.max ?? 10 });
    opened.push(db);
    return db;
  };
  const dispose = async () => {
    for (const d of opened) await d.close().catch(() => {});
    await admin.exec(`drop database if exists ${name} with (force)`);
    await admin.close();
  };
  try {
    const db = await connect();
    await migrate(db, await loadMigrations());
    return { db, url: url.toString(), connectAgain: connect, dispose };
  } catch (error) {
    // A setup that fails (a connection not opened in time on a loaded machine) leaves nothing.
    await dispose().catch(() => {});
    throw error;
  }
}

export interface DbTestContext extends TestDatabase {
  driver: DriverName;
}

export interface DbTestOptions {
  /** Only on these drivers (e.g. a test that needs two connections). */
  drivers?: DriverName[];
}

/**
 * The body of a CTE that inserts `count` signals in the webhook's shape
 * (symbols S0, S1, .. up to `symbols`; dedup keys `<prefix>-1`, ..), returning
 * their id, symbol and seq: `with s as (${insertSignalsSql(500)}) ...`.
 */
export function insertSignalsSql(
  count: number,
  { prefix = "key", symbols = 20 }: { prefix?: string; symbols?: number } = {},
): string {
  return `insert into signals (id, received_at, source, symbol, direction, action, timeframe,
      signal_time, dedup_key, raw_payload, auth_method, correlation_id)
    select gen_random_uuid(), now(), 'test', 'S' || (g % ${symbols}), 'CALL', 'ENTRY', '5m',
      now(), '${prefix}-' || g, '{}', 'hmac', 'c-${prefix}-' || g
    from generate_series(1, ${count}) g
    returning id, symbol, seq`;
}

/** Registers `fn` once per driver, each run on its own fresh, migrated database. */
export function dbTest(
  name: string,
  fn: (t: DbTestContext) => Promise<void>,
  options: DbTestOptions = {},
): void {
  const drivers = options.drivers ?? ["pglite", "postgres"];
  for (const driver of drivers) {
    Deno.test({
      name: `[${driver}] ${name}`,
      ignore: driver === "postgres" && !POSTGRES_REACHABLE && !IN_CI,
      // postgres.js and PGlite keep timers and sockets between tests by design.
      sanitizeOps: false,
      sanitizeResources: false,
      async fn() {
        if (driver === "postgres" && !POSTGRES_REACHABLE) {
          throw new Error(`CI=true and Postgres is not reachable at ${redact(TEST_DATABASE_URL)}`);
        }
        const t = driver === "pglite" ? await freshPglite() : await freshPostgres();
        try {
          await fn({ ...t, driver });
        } finally {
          await t.dispose();
        }
      },
    });
  }
}

/**
 * Takes `lock` (a `lock table ...` statement) in a transaction of its own on `db`
 * and holds it; the function returned releases it and resolves once that
 * transaction has ended.
 */
export async function holdLock(db: Database, lock: string): Promise<() => Promise<void>> {
  const locked = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const held = db.transaction(async (tx) => {
    await tx.query(lock);
    locked.resolve();
    await release.promise;
  });
  await Promise.race([locked.promise, held]); // a lock statement that fails rejects here
  return async () => {
    release.resolve();
    await held;
  };
}

/**
 * `db` with each query made outside a transaction passed to `around`, which
 * runs it with `run()` and may act before or after: commit another writer's
 * change, hold back a statement or its answer. With `inTransactions`, the
 * queries inside a transaction too (its BEGIN and COMMIT are the driver's).
 */
export function aroundQueries(
  db: Database,
  around: (text: string, run: () => Promise<unknown[]>) => Promise<unknown[]>,
  options: { inTransactions?: boolean } = {},
): Database {
  const wrap = (q: Queryable): Queryable => ({
    query: <T>(text: string, params?: readonly unknown[], options?: QueryOptions) =>
      around(text, () => q.query(text, params, options)) as Promise<T[]>,
    exec: (script) => q.exec(script),
  });
  return {
    driver: db.driver,
    query: <T>(text: string, params?: readonly unknown[], options?: QueryOptions) =>
      around(text, () => db.query(text, params, options)) as Promise<T[]>,
    exec: (script) => db.exec(script),
    transaction: (fn) =>
      options.inTransactions ? db.transaction((tx) => fn(wrap(tx))) : db.transaction(fn),
    listen: (channel, onPayload) => db.listen(channel, onPayload),
    close: () => db.close(),
    unavailable: () => db.unavailable?.() ?? null,
  };
}
