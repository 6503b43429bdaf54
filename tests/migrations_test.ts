/**
 * Migrations: the built-in migrator is idempotent, refuses edited files, and
 * gives the same schema as `psql -f` over the files in order.
 */
import assert from "node:assert/strict";
import { loadMigrations, migrate } from "../db/migrate.ts";
import type { Queryable } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { dbTest, POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";

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
