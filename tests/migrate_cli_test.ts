/**
 * `deno task migrate` (scripts/migrate.ts) on empty databases of both kinds:
 * the first run lists each file it applied, the second says the database is
 * up to date, `--status` lists applied and pending files, and the CLI as a
 * subprocess exits 0 on success and 1 with a clear message when the database
 * cannot be reached or the configuration is wrong.
 */
import assert from "node:assert/strict";
import { openDatabase } from "../compose.ts";
import { loadConfig } from "../core/config.ts";
import { loadMigrations } from "../db/migrate.ts";
import type { Database } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { describeDatabase, explainFailure, runMigrate } from "../scripts/migrate.ts";
import { openPglite } from "../db/pglite.ts";
import { GUIDE_SIGNAL, signed } from "./_app.ts";
import { POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";
import { seedPglite, type Service, startService } from "./_service.ts";

const REPO = new URL("../", import.meta.url);
const MIGRATIONS = await loadMigrations();
const LABELS = MIGRATIONS.map((m) => `${m.version}_${m.name}`);
const N = MIGRATIONS.length;
const UP_TO_DATE = `database is up to date (${N} migration${N === 1 ? "" : "s"} already applied)`;
// postgres.js and PGlite keep timers and sockets between tests by design.
const SANITIZE = { sanitizeOps: false, sanitizeResources: false };
const IGNORE_POSTGRES = !POSTGRES_REACHABLE && Deno.env.get("CI") !== "true";

/** An empty database (no migrations) on the test server; `drop()` removes it. */
async function emptyPostgres(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `ostest_migrate_${Date.now()}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = await openPostgres(TEST_DATABASE_URL, { max: 1 });
  await admin.exec(`create database ${name}`);
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      await admin.exec(`drop database if exists ${name} with (force)`);
      await admin.close();
    },
  };
}

/** The migrate CLI with the task's permissions; `env` on top of a neutral base. */
async function migrateCli(args: string[], env: Record<string, string>) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-sys"],
      "scripts/migrate.ts",
      ...args,
    ],
    cwd: REPO,
    env: { NODE_ENV: "test", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/** Status, apply, apply again, status: what a fresh database goes through. */
async function checkFirstAndSecondRun(db: Database) {
  assert.deepEqual(await runMigrate(db, { status: true }), [
    ...LABELS.map((l) => `pending ${l}`),
    `0 applied, ${N} pending`,
  ]);
  assert.deepEqual(await runMigrate(db), LABELS.map((l) => `applied ${l}`));
  assert.deepEqual(await runMigrate(db), [UP_TO_DATE]);
  const status = await runMigrate(db, { status: true });
  assert.equal(status.length, N + 1);
  LABELS.forEach((l, i) => assert.match(status[i], new RegExp(`^applied ${l} \\(\\d{4}-.+Z\\)$`)));
  assert.equal(status[N], `${N} applied, 0 pending`);
  const [{ n }] = await db.query<{ n: number }>(
    "select count(*)::integer as n from schema_migrations where checksum is not null",
  );
  assert.equal(Number(n), N);
}

Deno.test({
  name: "[pglite] runMigrate on an empty DATA_DIR applies each file once, then is up to date",
  ...SANITIZE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "migrate_cli_test_" });
    const { config } = loadConfig({ DATA_DIR: dir });
    assert.equal(describeDatabase(config), `embedded PGlite at ${dir}/pglite`);
    const db = await openDatabase(config);
    try {
      assert.equal(db.driver, "pglite");
      await checkFirstAndSecondRun(db);

      // A file edited after it was applied: --status flags it, migrating refuses.
      const edited = MIGRATIONS.map((m, i) => i === 0 ? { ...m, checksum: "0".repeat(64) } : m);
      const status = await runMigrate(db, { status: true, migrations: edited });
      assert.match(status[0], new RegExp(`^edited  ${LABELS[0]} \\(applied .+ has changed since`));
      const error = await runMigrate(db, { migrations: edited }).catch((e) => e);
      assert.match(error.message, /was edited after it was applied; add a new migration instead/);
      assert.match(
        explainFailure(error, config),
        /^Cannot migrate: Migration \d{14}_\w+ was edited/,
      );

      // Applied here, but no such file in this checkout (an older release).
      const orphan = await runMigrate(db, { status: true, migrations: [] });
      assert.match(orphan[0], new RegExp(`^applied ${LABELS[0]} \\(.+, no such file here\\)$`));
      assert.equal(orphan.at(-1), `${N} applied, 0 pending`);
    } finally {
      await db.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "[postgres] runMigrate on an empty database applies each file once, then is up to date",
  ignore: IGNORE_POSTGRES,
  ...SANITIZE,
  async fn() {
    const fresh = await emptyPostgres();
    const { config } = loadConfig({ DATABASE_URL: fresh.url });
    assert.equal(
      describeDatabase(config),
      `postgres at ${new URL(TEST_DATABASE_URL).host}/${fresh.name}`,
    );
    const db = await openDatabase(config);
    try {
      assert.equal(db.driver, "postgres");
      await checkFirstAndSecondRun(db);
    } finally {
      await db.close();
      await fresh.drop();
    }
  },
});

Deno.test({
  name: "[postgres] the CLI migrates an empty DATABASE_URL and exits 0, then reports up to date",
  ignore: IGNORE_POSTGRES,
  ...SANITIZE,
  async fn() {
    const fresh = await emptyPostgres();
    try {
      const first = await migrateCli([], { DATABASE_URL: fresh.url });
      assert.equal(first.code, 0, first.out + first.err);
      assert.equal(
        first.out,
        [
          `database: postgres at ${new URL(TEST_DATABASE_URL).host}/${fresh.name}`,
          ...LABELS.map((l) => `applied ${l}`),
        ]
          .join("\n") + "\n",
      );
      assert.equal(first.err, "");

      const second = await migrateCli([], { DATABASE_URL: fresh.url });
      assert.equal(second.code, 0, second.out + second.err);
      assert.match(second.out, new RegExp(`\\n${UP_TO_DATE.replace(/[()]/g, "\\$&")}\\n$`));

      const status = await migrateCli(["--status"], { DATABASE_URL: fresh.url });
      assert.equal(status.code, 0, status.out + status.err);
      assert.match(status.out, new RegExp(`\\n${N} applied, 0 pending\\n$`));

      const db = await openPostgres(fresh.url, { max: 1 });
      const tables = await db.query<{ name: string }>(
        "select to_regclass('signals')::text as name",
      );
      await db.close();
      assert.deepEqual(tables, [{ name: "signals" }]);
    } finally {
      await fresh.drop();
    }
  },
});

Deno.test({
  name:
    "[pglite] the CLI's --status on a DATA_DIR with no database lists all pending, creates nothing",
  ...SANITIZE,
  async fn() {
    const parent = await Deno.makeTempDir({ prefix: "migrate_cli_test_" });
    try {
      // A mistyped DATA_DIR, and an existing but empty one.
      for (const dataDir of [`${parent}/typo`, parent]) {
        const r = await migrateCli(["--status"], { DATA_DIR: dataDir });
        assert.equal(r.code, 0, r.err);
        assert.equal(
          r.out,
          [
            `database: embedded PGlite at ${dataDir}/pglite`,
            `no database in ${dataDir}/pglite yet (nothing created): the server or ` +
            "`deno task migrate` creates it",
            ...LABELS.map((l) => `pending ${l}`),
            `0 applied, ${N} pending`,
            "",
          ].join("\n"),
        );
      }
      assert.deepEqual([...Deno.readDirSync(parent)], []);
      // Once migrated, --status reads the database as before.
      assert.equal((await migrateCli([], { DATA_DIR: parent })).code, 0);
      const after = await migrateCli(["--status"], { DATA_DIR: parent });
      assert.match(after.out, new RegExp(`\\n${N} applied, 0 pending\\n$`));
    } finally {
      await Deno.remove(parent, { recursive: true });
    }
  },
});

Deno.test("the CLI exits 1 with a clear message when the database cannot be reached", async () => {
  const r = await migrateCli([], { DATABASE_URL: "postgres://postgres@127.0.0.1:1/postgres" });
  assert.equal(r.code, 1);
  assert.equal(
    r.err,
    "Cannot reach the database: connect ECONNREFUSED 127.0.0.1:1 (postgres at 127.0.0.1:1/postgres)\n",
  );
});

Deno.test("the CLI exits 1 with the configuration error as is, 2 for a usage error", async () => {
  const config = await migrateCli([], { DATABASE_URL: "mysql://root:hunter2@db/app" });
  assert.equal(config.code, 1);
  assert.equal(
    config.err,
    "Invalid configuration:\n  DATABASE_URL must be a postgres:// or postgresql:// URL\n",
  );
  assert.equal(config.out, "");

  const usage = await migrateCli(["--apply-everything"], {});
  assert.equal(usage.code, 2);
  assert.match(usage.err, /^Unknown option '--apply-everything'\nRun with --help for usage\.\n$/);
});

Deno.test({
  name: "[pglite] a second process on a served data directory is refused, and nothing is lost",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-two-" });
    await seedPglite(dataDir);
    const first = await startService({ DATA_DIR: dataDir });
    try {
      const accepted = async (s: Service, symbol: string) => {
        const body = JSON.stringify({
          ...GUIDE_SIGNAL,
          symbol,
          timestamp: new Date().toISOString(),
        });
        const res = await fetch(`${s.base}/webhook`, { method: "POST", ...await signed(body) });
        assert.equal((await res.json()).status, "ACCEPTED");
      };
      await accepted(first, "SPY");
      // The next version started beside it (another port), and its release step.
      let second: Service | null = null;
      try {
        second = await startService({ DATA_DIR: dataDir });
      } catch (error) {
        assert.match(String(error), /another process has this embedded database open/);
      }
      const migrating = await migrateCli([], { DATA_DIR: dataDir });
      await accepted(first, "QQQ");
      if (second !== null) {
        await accepted(second, "IWM");
        second.child.kill("SIGTERM");
        await second.child.status;
      }
      first.child.kill("SIGTERM");
      assert.equal((await first.child.status).code, 0);
      // Every acknowledged signal is kept ...
      const db = await openPglite(`${dataDir}/pglite`, { thread: "main" });
      const rows = await db.query<{ symbol: string }>("select symbol from signals");
      await db.close();
      const acknowledged = second === null ? ["QQQ", "SPY"] : ["IWM", "QQQ", "SPY"];
      assert.deepEqual(rows.map((r) => r.symbol).sort(), acknowledged);
      // ... because the others never opened the files.
      assert.equal(second, null, "the second service started on the same files");
      assert.equal(migrating.code, 1, migrating.out);
      assert.match(migrating.err, /another process has this embedded database open/);
    } finally {
      await first.kill9();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
