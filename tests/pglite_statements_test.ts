/**
 * Named prepared statements on PGlite (db/pglite_statements.ts) give what
 * PGlite's own query() gives, for any parameters: the same rows and JS
 * types, the same errors; a text is parsed once and kept (visible in
 * pg_prepared_statements), `replan` texts for a second at most; a failed statement leaves
 * the connection usable; a transaction's work rolls back with it; a
 * statement whose table changed shape is parsed again instead of failing;
 * and the service's PGlite, on either thread, goes through it.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { messages, PGlite } from "@electric-sql/pglite";
import { openPglite } from "../db/pglite.ts";
import { SMALL_SHARED_BUFFERS, WITHOUT_TEMPLATE_DATABASES } from "./_db.ts";
import { MAX_NAMED_STATEMENTS, statementRunner } from "../db/pglite_statements.ts";

let emptyCluster: Promise<Blob> | undefined;

/** A fresh, empty PGlite: initdb once per file (seconds), then loaded from its dump each time. */
async function emptyPglite(): Promise<PGlite> {
  emptyCluster ??= (async () => {
    const pg = await PGlite.create();
    for (const statement of [SMALL_SHARED_BUFFERS, ...WITHOUT_TEMPLATE_DATABASES]) {
      await pg.exec(statement);
    }
    const tarball = await pg.dumpDataDir("none");
    await pg.close();
    return tarball;
  })();
  return await PGlite.create({ loadDataDir: await emptyCluster });
}

function pgliteTest(name: string, fn: (pg: PGlite) => Promise<void>): void {
  Deno.test({
    name,
    // PGlite keeps timers between tests by design; each test closes its own.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const pg = await emptyPglite();
      try {
        await fn(pg);
      } finally {
        await pg.close();
      }
    },
  });
}

const outside = { inTransaction: false };

async function namedStatements(pg: PGlite): Promise<string[]> {
  const { rows } = await pg.query<{ statement: string }>(
    "select statement from pg_prepared_statements where name like 'ostr_%' order by name",
  );
  return rows.map((r) => r.statement);
}

const ECHO = `select $1::uuid as id, $2::timestamptz as at, $3::numeric as price,
  $4::text::jsonb as meta, $5::bigint as seq, $6::boolean as flag, $7::text[] as tags,
  $8::integer as n, $9::double precision as x, $10::text as label, $11::jsonb as doc`;

pgliteTest(
  "any parameters come back as PGlite's query() returns them (property, 100 runs)",
  async (pg) => {
    const statements = statementRunner(pg);
    const text = fc.string({ unit: "grapheme", maxLength: 12 });
    const nullable = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null });
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(
          nullable(fc.uuid()),
          nullable(fc.date({
            min: new Date("1990-01-01T00:00:00Z"),
            max: new Date("2090-01-01T00:00:00Z"),
            noInvalidDate: true,
          })),
          nullable(fc.double({ min: -1e9, max: 1e9, noNaN: true }).map((x) => x.toFixed(4))),
          nullable(fc.json()),
          nullable(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
          nullable(fc.boolean()),
          nullable(fc.array(text, { maxLength: 4 })),
          nullable(fc.integer()),
          nullable(fc.double({ noNaN: true, noDefaultInfinity: true })),
          nullable(text),
          nullable(fc.dictionary(text, fc.oneof(fc.integer(), text, fc.boolean()))),
        ),
        async (params) => {
          const expected = await pg.query(ECHO, params);
          const actual = await statements.query(ECHO, params, outside);
          assert.deepEqual(actual, expected.rows);
        },
      ),
      { numRuns: 100 },
    );
    assert.deepEqual(await namedStatements(pg), [ECHO], "one text, parsed once");
  },
);

pgliteTest("a text is prepared once and kept", async (pg) => {
  const statements = statementRunner(pg);
  await pg.exec("create table t (id integer primary key, v text)");
  const insert = "insert into t (id, v) values ($1::integer, $2::text) returning id, v";
  for (let i = 1; i <= 20; i++) {
    assert.deepEqual(await statements.query(insert, [i, `v${i}`], outside), [{
      id: i,
      v: `v${i}`,
    }]);
  }
  assert.deepEqual(await namedStatements(pg), [insert]);
  assert.equal(statements.size, 1);
});

pgliteTest(
  "a replan text is kept for replanAfterMs, then prepared again on the tables as they are",
  async (pg) => {
    let now = 0;
    const statements = statementRunner(pg, { replanAfterMs: 1000, now: () => now });
    const replan = { replan: true, ...outside };
    await pg.exec("create table t (id integer primary key, v text)");
    const count = "select count(*)::integer as n from t where id > $1::integer";
    const kept = async () =>
      (await pg.query<{ name: string; statement: string }>(
        "select name, statement from pg_prepared_statements where name like 'ostr_%'",
      )).rows;
    // Planned on an empty table, and kept while younger than a second.
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(await statements.query(count, [0], replan), [{ n: 0 }]);
    }
    const [first] = await kept();
    assert.equal(first.statement, count);
    await pg.exec(
      "insert into t (id, v) select g, 'v' || g from generate_series(1, 20000) g; analyze t",
    );
    now = 999;
    assert.deepEqual(await statements.query(count, [19990], replan), [{ n: 10 }]);
    assert.deepEqual(await kept(), [first], "the same statement within the second");
    now = 1000;
    assert.deepEqual(await statements.query(count, [19990], replan), [{ n: 10 }]);
    const [second, ...more] = await kept();
    assert.deepEqual(more, [], "the old statement is gone");
    assert.equal(second.statement, count);
    assert.notEqual(second.name, first.name, "prepared again");
    const { rows: plan } = await pg.query<{ "QUERY PLAN": string }>(
      `explain execute ${second.name}(19990)`,
    );
    assert.match(plan.map((r) => r["QUERY PLAN"]).join("\n"), /t_pkey/, "planned on 20,000 rows");
    assert.equal(statements.size, 1);
  },
);

pgliteTest("past the limit, texts run unnamed and still answer", async (pg) => {
  const statements = statementRunner(pg, { maxNamed: 2 });
  for (let i = 0; i < 5; i++) {
    const rows = await statements.query(`select $1::integer + ${i} as n`, [10], outside);
    assert.deepEqual(rows, [{ n: 10 + i }]);
  }
  assert.equal(statements.size, 2);
  assert.equal((await namedStatements(pg)).length, 2);
  assert.ok(MAX_NAMED_STATEMENTS >= 100, "room for every statement the service has");
});

pgliteTest("errors are PGlite's, and the connection is usable after them", async (pg) => {
  const statements = statementRunner(pg);
  await pg.exec("create table u (k text primary key)");
  const insert = "insert into u (k) values ($1::text)";
  await statements.query(insert, ["a"], outside);
  await assert.rejects(statements.query(insert, ["a"], outside), (error: unknown) => {
    assert.ok(error instanceof messages.DatabaseError);
    assert.equal(error.code, "23505");
    assert.equal((error as unknown as { query: string }).query, insert);
    return true;
  });
  await assert.rejects(statements.query("selec $1::integer", [1], outside), (error: unknown) => {
    assert.ok(error instanceof messages.DatabaseError);
    assert.equal(error.code, "42601");
    return true;
  });
  await statements.query(insert, ["b"], outside);
  assert.deepEqual(
    await statements.query("select k from u order by k", [], outside),
    [{ k: "a" }, { k: "b" }],
  );
  assert.deepEqual(await namedStatements(pg), [insert, "select k from u order by k"]);
});

pgliteTest("inside a transaction the work rolls back with it; the statement stays", async (pg) => {
  const statements = statementRunner(pg);
  await pg.exec("create table w (v integer)");
  const insert = "insert into w (v) values ($1::integer)";
  await assert.rejects(
    pg.transaction(async () => {
      await statements.query(insert, [1], { inTransaction: true });
      throw new Error("give up");
    }),
    /give up/,
  );
  assert.deepEqual((await pg.query("select * from w")).rows, []);
  await pg.transaction(async () => {
    await statements.query(insert, [2], { inTransaction: true });
  });
  await statements.query(insert, [3], outside);
  assert.deepEqual((await pg.query("select v from w order by v")).rows, [{ v: 2 }, { v: 3 }]);
  assert.deepEqual(await namedStatements(pg), [insert]);
});

pgliteTest("a statement outside a transaction waits for the open one to end", async (pg) => {
  const statements = statementRunner(pg);
  await pg.exec("create table q (v integer)");
  const release = Promise.withResolvers<void>();
  const open = pg.transaction(async (tx) => {
    await tx.query("insert into q values (1)");
    await release.promise;
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  let seen: unknown[] | null = null;
  const read = statements.query("select count(*)::integer as n from q", [], outside)
    .then((rows) => (seen = rows));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(seen, null, "it ran inside the other's transaction");
  release.resolve();
  await open;
  await read;
  assert.deepEqual(seen, [{ n: 1 }]);
});

pgliteTest("a statement whose table changed shape is parsed again", async (pg) => {
  const statements = statementRunner(pg);
  await pg.exec("create table s (id integer)");
  await pg.exec("insert into s values (1)");
  const select = "select * from s where id = $1::integer";
  assert.deepEqual(await statements.query(select, [1], outside), [{ id: 1 }]);
  await pg.exec("alter table s add column note text default 'new'");
  assert.deepEqual(await statements.query(select, [1], outside), [{ id: 1, note: "new" }]);
  assert.deepEqual(await namedStatements(pg), [select]);
});

Deno.test({
  name: "both of openPglite's threads run queries as kept statements, replan ones too",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    for (const thread of ["main", "worker"] as const) {
      const db = await openPglite(null, { thread });
      try {
        const kept = "select $1::integer * 2 as n";
        const replanned = "select $1::integer * 3 as n";
        for (let i = 0; i < 3; i++) {
          assert.deepEqual(await db.query(kept, [i]), [{ n: i * 2 }]);
          assert.deepEqual(await db.query(replanned, [i], { replan: true }), [{ n: i * 3 }]);
        }
        await db.transaction(async (tx) => {
          assert.deepEqual(await tx.query(kept, [5]), [{ n: 10 }]);
        });
        const prepared = await db.query<{ statement: string }>(
          "select statement from pg_prepared_statements order by statement",
        );
        assert.deepEqual(
          prepared.map((r) => r.statement),
          [kept, replanned, "select statement from pg_prepared_statements order by statement"],
          thread,
        );
      } finally {
        await db.close();
      }
    }
  },
});
