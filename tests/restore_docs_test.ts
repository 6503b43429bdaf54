/**
 * docs/operations.md's dump restore, run as written: a dump taken before a
 * deploy that added a migration (Backups), the deploy, then the Rollback
 * section's restore commands, and the next deploy's release command, which
 * must bring the restored database forward again.
 */
import assert from "node:assert/strict";
import { loadMigrations, migrate } from "../db/migrate.ts";
import { openPostgres } from "../db/postgres.ts";
import { POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";

const ROOT = new URL("../", import.meta.url);

/** The guide's restore commands, in order: each backquoted psql or pg_restore command on <url>. */
function restoreCommands(): string[] {
  const guide = Deno.readTextFileSync(new URL("docs/operations.md", ROOT));
  const rollback = guide.slice(guide.indexOf("## Backups"), guide.indexOf("## Scaling"));
  return [...rollback.matchAll(/`((?:psql|pg_restore) [^`]*<url>[^`]*)`/g)].map((m) => m[1]);
}

async function run(command: string, args: string[]) {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "[postgres] a dump from before a migration, restored as the operations guide says, " +
    "is migrated forward again by the next deploy",
  ignore: !POSTGRES_REACHABLE && Deno.env.get("CI") !== "true",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const commands = restoreCommands();
    assert.ok(commands.some((c) => c.startsWith("pg_restore")), "the guide names its restore");
    const name = `ostest_restore_${crypto.randomUUID().slice(0, 8)}`;
    const admin = await openPostgres(TEST_DATABASE_URL, { max: 1 });
    await admin.exec(`create database ${name}`);
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${name}`;
    const file = await Deno.makeTempFile({ suffix: ".dump" });
    let db = await openPostgres(url.toString(), { max: 1 });
    try {
      // The release before book_writer, with a row of its own; its dump.
      const all = await loadMigrations();
      await migrate(db, all.filter((m) => m.version < "20261130020000"));
      await db.exec(
        "insert into processing_errors (stage, code, message) values ('ingest', 'X', 'kept')",
      );
      const dumped = await run("pg_dump", ["-Fc", "-f", file, url.toString()]);
      assert.equal(dumped.code, 0, dumped.stderr);
      // The deploy, then the restore as the guide words it.
      await migrate(db, all);
      await db.close();
      for (const command of commands) {
        const line = command.replaceAll("<url>", url.toString()).replaceAll("<file>", file);
        const done = await run("bash", ["-c", line]);
        assert.equal(done.code, 0, `${line}: ${done.stderr}`);
      }
      // The next deploy's release command.
      db = await openPostgres(url.toString(), { max: 1 });
      await migrate(db, all);
      const kept = await db.query<{ message: string }>("select message from processing_errors");
      assert.deepEqual(kept.map((r) => r.message), ["kept"]);
      const [{ n }] = await db.query<{ n: number }>(
        "select count(*)::integer as n from book_version",
      );
      assert.equal(n, 1);
    } finally {
      await db.close().catch(() => {});
      await admin.exec(`drop database if exists ${name} with (force)`);
      await admin.close();
      await Deno.remove(file).catch(() => {});
    }
  },
});
