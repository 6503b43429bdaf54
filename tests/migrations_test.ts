/**
 * Migrations: the built-in migrator is idempotent, refuses edited files, and
 * gives the same schema as `psql -f` over the files in order.
 */
import assert from "node:assert/strict";
import { loadMigrations, migrate, type Migration, type MigrationRetry } from "../db/migrate.ts";
import type { Queryable } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { dbTest, freshPostgres, holdLock, POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";

const GUIDE_TABLES = [
  "context_snapshots",
  "decisions",
  "gex_signals",
  "positions",
  "processing_errors",
  "signals",
];

dbTest("the guide's six tables, the job queue and the guide's indexes exist", async ({ db }) => {
  const tables = (await db.query<{ table_name: string }>(
    `select table_name from information_schema.tables where table_schema = current_schema()`,
  )).map((r) => r.table_name);
  for (const t of [...GUIDE_TABLES, "pipeline_jobs", "schema_migrations"]) {
    assert.ok(tables.includes(t), `missing table ${t}`);
  }
  const indexes = (await db.query<{ indexname: string }>(
    "select indexname from pg_indexes where schemaname = current_schema()",
  )).map((r) => r.indexname);
  assert.ok(indexes.includes("idx_signals_created_at"));
  assert.ok(indexes.includes("idx_positions_is_closed"));
  const comments = await db.query<{ relname: string }>(
    `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = current_schema() and c.relkind = 'r' and obj_description(c.oid) is null`,
  );
  assert.deepEqual(comments, [], "every table has a comment");
});

dbTest("running the migrator again applies nothing", async ({ db }) => {
  const migrations = await loadMigrations();
  const again = await migrate(db, migrations);
  assert.deepEqual(again.applied, []);
  assert.equal(again.alreadyApplied, migrations.length);
  const rows = await db.query<{ version: string; checksum: string }>(
    "select version, checksum from schema_migrations order by version",
  );
  assert.deepEqual(rows, migrations.map((m) => ({ version: m.version, checksum: m.checksum })));
});

dbTest("an applied migration that was edited afterwards stops the migrator", async ({ db }) => {
  const migrations = await loadMigrations();
  const edited = migrations.map((m, i) =>
    i === 0 ? { ...m, sql: `${m.sql}\n-- edited`, checksum: "0".repeat(64) } : m
  );
  await assert.rejects(migrate(db, edited), /was edited after it was applied/);
});

/** 20261207000000_events_order.sql as the releases from ae62c6b to 2d9c93a shipped it (360c743 withdrew it). */
const WITHDRAWN_EVENTS_ORDER = `
alter table events add column txn bigint generated always as ((txid::text)::bigint) stored;
create index events_txn_id on events (txn, id);
drop index events_txid_id;
insert into schema_migrations (version, name) values ('20261207000000', 'events_order')
  on conflict (version) do nothing;`;

dbTest(
  "a database that applied the withdrawn events_order migration gets /events' index back",
  async ({ db }) => {
    // Applied before this release's files after it (a rollback to one of those releases).
    await db.exec(WITHDRAWN_EVENTS_ORDER);
    await db.query("delete from schema_migrations where version > '20261207000000'");
    await migrate(db, await loadMigrations());
    const indexes = await db.query<{ indexdef: string }>(
      "select indexdef from pg_indexes where tablename = 'events' and indexname = 'events_txid_id'",
    );
    assert.match(indexes[0]?.indexdef ?? "no events_txid_id", /\(txid, id\)$/);
  },
);

dbTest(
  "the job queue is autovacuumed after 1 % of it is dead, not autovacuum's default 20 %",
  async ({ db }) => {
    const [{ reloptions }] = await db.query<{ reloptions: string[] | null }>(
      "select reloptions from pg_class where oid = 'pipeline_jobs'::regclass",
    );
    assert.deepEqual([...(reloptions ?? [])].sort(), [
      "autovacuum_vacuum_scale_factor=0.01",
      "autovacuum_vacuum_threshold=1000",
    ]);
    // The other tables keep the server's defaults (decisions only its fillfactor).
    const others = await db.query<{ relname: string; reloptions: string[] }>(
      `select relname, reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = current_schema() and c.relkind = 'r' and reloptions is not null
       and relname <> 'pipeline_jobs' order by relname`,
    );
    assert.deepEqual(others.map((r) => [r.relname, [...r.reloptions]]), [
      ["decisions", ["fillfactor=50"]],
    ]);
  },
);

/** The repair docs/operations.md gives for a database first migrated before cc27778. */
function guideRepairSql(): string {
  const guide = Deno.readTextFileSync(new URL("../docs/operations.md", import.meta.url));
  const at = guide.indexOf(
    "`Migration 20261122000000_initial_schema was edited after it was applied`",
  );
  const block = /```sql\n([\s\S]*?)```/.exec(guide.slice(Math.max(at, 0)));
  return at >= 0 && block ? block[1] : "select 'operations.md gives no repair'";
}

dbTest(
  "a database first migrated before cc27778 is brought forward by the repair operations.md gives",
  async ({ db }) => {
    const all = await loadMigrations();
    // The initial schema as the releases from aff9e29 to 8804a34 shipped it.
    const shipped = all[0].sql
      .replace("'position', 'failure')", "'position')")
      .replace("position changes, jobs given up)", "position changes)");
    assert.notEqual(shipped, all[0].sql);
    await db.exec("drop schema public cascade; create schema public");
    await migrate(db, [{ ...all[0], sql: shipped, checksum: "a".repeat(64) }]);
    await assert.rejects(migrate(db, all), /initial_schema was edited after it was applied/);
    await db.exec(guideRepairSql());
    const result = await migrate(db, all);
    assert.deepEqual(result.applied.map((m) => m.version), all.slice(1).map((m) => m.version));
    await db.exec("insert into events (kind, payload) values ('failure', '{}')");
  },
);

/** Everything that makes up the schema, as comparable text. */
async function describeSchema(db: Queryable): Promise<Record<string, string[]>> {
  const rows = async (sql: string) => (await db.query<{ d: string }>(sql)).map((r) => r.d).sort();
  return {
    columns: await rows(
      `select table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' ||
         coalesce(column_default, '') || ' ' || is_identity as d
       from information_schema.columns where table_schema = 'public'`,
    ),
    indexes: await rows(`select indexdef as d from pg_indexes where schemaname = 'public'`),
    constraints: await rows(
      `select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) as d
       from pg_constraint where connamespace = 'public'::regnamespace`,
    ),
    triggers: await rows(
      `select tgrelid::regclass::text || ' ' || pg_get_triggerdef(oid) as d
       from pg_trigger where not tgisinternal`,
    ),
    functions: await rows(
      `select p.proname || ' ' || pg_get_functiondef(p.oid) as d
       from pg_proc p where p.pronamespace = 'public'::regnamespace`,
    ),
    comments: await rows(
      `select c.relname || ': ' || obj_description(c.oid) as d from pg_class c
       where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'`,
    ),
    migrations: await rows(`select version || ' ' || name as d from schema_migrations`),
  };
}

Deno.test({
  name: "[postgres] psql -f over the files in order gives the same schema as the migrator",
  ignore: !POSTGRES_REACHABLE && Deno.env.get("CI") !== "true",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const admin = await openPostgres(TEST_DATABASE_URL, { max: 1 });
    const suffix = crypto.randomUUID().slice(0, 8);
    const [viaMigrator, viaPsql] = [`ostest_mig_${suffix}`, `ostest_psql_${suffix}`];
    await admin.exec(`create database ${viaMigrator}`);
    await admin.exec(`create database ${viaPsql}`);
    const urlFor = (name: string) => {
      const u = new URL(TEST_DATABASE_URL);
      u.pathname = `/${name}`;
      return u.toString();
    };
    const a = await openPostgres(urlFor(viaMigrator));
    const b = await openPostgres(urlFor(viaPsql));
    try {
      const migrations = await loadMigrations();
      await migrate(a, migrations);
      for (const m of migrations) {
        const file = new URL(`../supabase/migrations/${m.version}_${m.name}.sql`, import.meta.url);
        const out = await new Deno.Command("psql", {
          args: [urlFor(viaPsql), "-v", "ON_ERROR_STOP=1", "-q", "-f", file.pathname],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      }
      assert.deepEqual(await describeSchema(b), await describeSchema(a));
      // And the migrator sees the psql-applied files as applied.
      const after = await migrate(b, migrations);
      assert.deepEqual(after.applied, []);
    } finally {
      await a.close();
      await b.close();
      await admin.exec(`drop database if exists ${viaMigrator} with (force)`);
      await admin.exec(`drop database if exists ${viaPsql} with (force)`);
      await admin.close();
    }
  },
});

/** A migration after the real ones that changes processing_errors (ALTER: an exclusive lock). */
function alteringMigration(): Migration {
  return {
    version: "29990101000000",
    name: "lock_test",
    sql: `alter table processing_errors add column lock_test text;
      create table lock_test_setting as select current_setting('lock_timeout') as lock_timeout;`,
    checksum: "f".repeat(64),
  };
}

dbTest("each migration runs with a lock_timeout (PGlite too)", async ({ db }) => {
  const migrations = [...await loadMigrations(), alteringMigration()];
  const result = await migrate(db, migrations, { lockTimeoutMs: 1234 });
  assert.deepEqual(result.applied.map((m) => m.name), ["lock_test"]);
  const [row] = await db.query<{ lock_timeout: string }>("select * from lock_test_setting");
  assert.equal(row.lock_timeout, "1234ms");
});

Deno.test({
  name: "[postgres] a migration behind a reader's lock gives up after lock_timeout, " +
    "never holds webhooks' inserts longer, retries, and applies once the lock is gone",
  ignore: !POSTGRES_REACHABLE && Deno.env.get("CI") !== "true",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const t = await freshPostgres();
    try {
      const reader = await t.connectAgain({ max: 1 });
      const writer = await t.connectAgain({ max: 1 });
      const migrator = await t.connectAgain({ max: 1 });
      const migrations = [...await loadMigrations(), alteringMigration()];
      const lockTimeoutMs = 300;

      // A long reader (the read API, a report) holds processing_errors' share lock.
      const unlock = await holdLock(reader, "lock table processing_errors in access share mode");

      // Webhook-like inserts all along; each one's wait is measured.
      let inserting = true;
      const insertMs: number[] = [];
      const inserts = (async () => {
        while (inserting) {
          const started = performance.now();
          await writer.query(
            "insert into processing_errors (stage, code, message) values ('ingest', 'X', 'x')",
          );
          insertMs.push(performance.now() - started);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();

      const retries: MigrationRetry[] = [];
      const failed = await Promise.race([
        migrate(migrator, migrations, {
          lockTimeoutMs,
          attempts: 3,
          backoffMs: 100,
          onRetry: (r) => retries.push(r),
        }).then(() => "applied", (error) => error),
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5_000)),
      ]);
      if (!(failed instanceof Error)) {
        // Without a lock_timeout the ALTER waits as long as the reader does.
        inserting = false;
        await Promise.allSettled([unlock(), inserts]);
        assert.fail(
          `migrate: ${failed}; inserts waited up to ${Math.round(Math.max(...insertMs))} ms`,
        );
      }
      assert.equal(failed.name, "MigrationLockTimeoutError");
      assert.match(
        failed.message,
        /29990101000000_lock_test could not take its table locks: 3 tries/,
      );
      assert.deepEqual(retries.map((r) => [r.attempt, r.waitMs]), [[1, 100], [2, 200]]);
      assert.ok(insertMs.length > 5, "the inserts kept going");
      // Behind a migration without lock_timeout an insert waits as long as the reader holds
      // its lock (5 s here); with it, one try at most. The margin is for a loaded machine.
      const worst = Math.max(...insertMs);
      assert.ok(worst < lockTimeoutMs + 1_000, `an insert waited ${Math.round(worst)} ms`);
      const [{ n }] = await migrator.query<{ n: number }>(
        `select count(*)::integer as n from information_schema.columns
         where table_name = 'processing_errors' and column_name = 'lock_test'`,
      );
      assert.equal(Number(n), 0, "nothing of the failed migration stayed");

      // Released during the retries: a later try applies it.
      retries.length = 0;
      const applying = migrate(migrator, migrations, {
        lockTimeoutMs,
        attempts: 10,
        backoffMs: 100,
        onRetry: (r) => retries.push(r),
      });
      const unlocked = new Promise((resolve) => setTimeout(resolve, 500)).then(unlock);
      const { applied } = await applying;
      assert.deepEqual(applied.map((m) => m.name), ["lock_test"]);
      assert.ok(retries.length >= 1, "it waited for the reader at least once");
      await unlocked;
      inserting = false;
      await inserts;
    } finally {
      await t.dispose();
    }
  },
});
