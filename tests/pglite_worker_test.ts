/**
 * PGlite on its own thread (db/pglite_worker.ts) behaves as PGlite on the
 * calling thread: the same rows and JS types, the same errors (message,
 * SQLSTATE, class), transactions that exclude other statements and roll back
 * on a throw, NOTIFY after commit, a close that refuses later calls as
 * unavailable and leaves no thread running; and the service starts with it
 * under exactly `deno task start`'s permissions.
 */
import assert from "node:assert/strict";
import { cpSync } from "node:fs";
import { messages, TransactionAbortedError } from "@electric-sql/pglite";
import { loadMigrations } from "../db/migrate.ts";
import { openPglite } from "../db/pglite.ts";
import { type Database, DatabaseUnavailableError, isUnavailable } from "../db/port.ts";
import { freshPglite, SMALL_SHARED_BUFFERS, WITHOUT_TEMPLATE_DATABASES } from "./_db.ts";
import { SECRET } from "./_app.ts";

const ROOT = new URL("../", import.meta.url);

function pgliteTest(name: string, fn: () => Promise<void>): void {
  // PGlite keeps timers between tests by design; the worker is closed by each test.
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

let emptyCluster: Promise<string> | undefined;

/**
 * A throw-away database of the given kind: a copy of an empty cluster made
 * once per run (an in-memory PGlite runs initdb every time, ~1.5 s), slimmed
 * as tests/_db.ts's databases are (each of the 26 opens here took about twice
 * as long without).
 */
async function openEmpty(
  thread: "main" | "worker",
): Promise<{ db: Database; dispose(): Promise<void> }> {
  emptyCluster ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "pglite-worker-empty-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const cluster = await openPglite(dir, { thread: "main" });
    for (const statement of [SMALL_SHARED_BUFFERS, ...WITHOUT_TEMPLATE_DATABASES]) {
      await cluster.exec(statement);
    }
    await cluster.close();
    return dir;
  })();
  const dir = await Deno.makeTempDir({ prefix: "pglite-worker-test-" });
  cpSync(await emptyCluster, dir, { recursive: true });
  const db = await openPglite(dir, { thread });
  return {
    db,
    async dispose() {
      await db.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `fn` on a fresh PGlite of each kind, in-thread first. */
async function onBoth(fn: (db: Database, thread: "main" | "worker") => Promise<void>) {
  for (const thread of ["main", "worker"] as const) {
    const { db, dispose } = await openEmpty(thread);
    try {
      await fn(db, thread);
    } finally {
      await dispose();
    }
  }
}

/** The value `fn` resolves to or the error it throws, in each kind of PGlite. */
async function bothGive<T>(fn: (db: Database) => Promise<T>): Promise<(T | unknown)[]> {
  const outcomes: (T | unknown)[] = [];
  await onBoth(async (db) => {
    outcomes.push(await fn(db).catch((error) => error));
  });
  return outcomes;
}

const TYPED_ROW = `select
  '2026-03-10T14:30:00.123Z'::timestamptz as at, 'infinity'::timestamptz as forever,
  '2026-03-10'::date as day, 12.50::numeric as price, 5::int8 as small,
  9007199254740993::int8 as big, 7::integer as int, 0.25::float8 as ratio, true as yes,
  '{"a": [1, {"b": null}], "n": 1.5}'::jsonb as doc, '{"x": 1}'::json as plain_json,
  'c0a80121-7ac0-4e1c-9f6b-2f0f9e6d3a11'::uuid as id, array['a', 'b', null]::text[] as tags,
  array[1, 2]::integer[] as ints, '\\x0102ff'::bytea as bytes, '1 day'::interval as span,
  null::text as nothing, null::jsonb as no_doc`;

pgliteTest(
  "the worker returns the same rows with the same JS types as PGlite in-thread",
  async () => {
    const [inThread, worker] = await bothGive((db) => db.query(TYPED_ROW));
    assert.deepStrictEqual(worker, inThread);
    const [row] = worker as Record<string, unknown>[];
    assert.ok(row.at instanceof Date && row.day instanceof Date);
    assert.equal((row.at as Date).toISOString(), "2026-03-10T14:30:00.123Z");
    assert.equal(row.forever, Infinity);
    assert.equal(row.price, "12.50");
    assert.equal(row.small, 5);
    assert.equal(row.big, 9007199254740993n);
    assert.deepStrictEqual(row.doc, { a: [1, { b: null }], n: 1.5 });
    assert.equal(row.id, "c0a80121-7ac0-4e1c-9f6b-2f0f9e6d3a11");
    assert.deepStrictEqual(row.tags, ["a", "b", null]);
    assert.deepStrictEqual(row.bytes, new Uint8Array([1, 2, 255]));
    assert.equal(row.nothing, null);
    assert.deepStrictEqual(
      Object.keys(row),
      Object.keys((inThread as Record<string, unknown>[])[0]),
    );
  },
);

pgliteTest(
  "parameters of every kind the callers pass reach the worker's PGlite unchanged",
  async () => {
    const params = [
      new Date("2026-03-10T14:30:00Z"),
      "12.5",
      9007199254740993n,
      JSON.stringify({ k: "v" }),
      ["x", "y"],
      false,
      null,
      new Uint8Array([7, 8]),
      3.25,
    ];
    const [inThread, worker] = await bothGive((db) =>
      db.query(
        `select $1::timestamptz as at, $2::numeric as price, $3::int8 as big,
        $4::text::jsonb as doc, $5::text[] as tags, $6::boolean as flag, $7::text as nothing,
        $8::bytea as bytes, $9::float8 as ratio`,
        params,
      )
    );
    assert.deepStrictEqual(worker, inThread);
    assert.deepStrictEqual(worker, [{
      at: new Date("2026-03-10T14:30:00Z"),
      price: "12.5",
      big: 9007199254740993n,
      doc: { k: "v" },
      tags: ["x", "y"],
      flag: false,
      nothing: null,
      bytes: new Uint8Array([7, 8]),
      ratio: 3.25,
    }]);
  },
);

pgliteTest(
  "SQL errors keep their message, SQLSTATE, fields and class across the thread",
  async () => {
    const missing = await bothGive((db) =>
      db.query("select * from no_such_table where id = $1::int", [1])
    );
    const duplicate = await bothGive(async (db) => {
      await db.exec("create table t (id integer primary key)");
      await db.query("insert into t values (1)");
      return await db.query("insert into t values ($1::integer)", [1]);
    });
    for (const [inThread, worker] of [missing, duplicate]) {
      assert.ok(inThread instanceof messages.DatabaseError);
      assert.ok(worker instanceof messages.DatabaseError);
      for (const key of ["message", "code", "severity", "detail", "constraint", "table", "query"]) {
        assert.deepStrictEqual(
          (worker as unknown as Record<string, unknown>)[key],
          (inThread as unknown as Record<string, unknown>)[key],
          key,
        );
      }
      assert.deepStrictEqual(
        (worker as { params?: unknown }).params,
        (inThread as { params?: unknown }).params,
      );
      assert.equal(isUnavailable(worker), false);
    }
    assert.equal((missing[1] as messages.DatabaseError).code, "42P01");
    assert.equal((duplicate[1] as messages.DatabaseError).code, "23505");
    assert.equal((duplicate[1] as messages.DatabaseError).constraint, "t_pkey");
    const badScript = await bothGive((db) => db.exec("select 1; select nope"));
    assert.equal((badScript[1] as messages.DatabaseError).code, "42703");
    assert.equal((badScript[1] as Error).message, (badScript[0] as Error).message);
  },
);

pgliteTest(
  "a transaction commits, and a throw inside rolls it back and rethrows the same error",
  async () => {
    await onBoth(async (db, thread) => {
      await db.exec("create table t (id integer primary key)");
      const value = await db.transaction(async (tx) => {
        await tx.query("insert into t values (1)");
        await tx.exec("insert into t values (2)");
        return { done: true };
      });
      assert.deepEqual(value, { done: true }, thread);
      const thrown = new Error("the decision failed");
      const caught = await db.transaction(async (tx) => {
        await tx.query("insert into t values (3)");
        throw thrown;
      }).catch((error) => error);
      assert.equal(caught, thrown, `${thread}: the very same error object`);
      assert.deepEqual(await db.query("select id from t order by id"), [{ id: 1 }, { id: 2 }]);
    });
  },
);

pgliteTest(
  "a transaction whose statement failed raises TransactionAbortedError on commit",
  async () => {
    const [inThread, worker] = await bothGive(async (db) => {
      await db.exec("create table t (id integer primary key)");
      await db.query("insert into t values (1)");
      await db.transaction(async (tx) => {
        await tx.query("insert into t values (1)").catch(() => {}); // swallowed: tx now aborted
      });
    });
    assert.ok(inThread instanceof TransactionAbortedError);
    assert.ok(worker instanceof TransactionAbortedError);
    assert.equal((worker as TransactionAbortedError).code, "25P02");
    assert.equal((worker as Error).message, (inThread as Error).message);
  },
);

pgliteTest("statements from other callers wait until an open transaction ends", async () => {
  await onBoth(async (db, thread) => {
    await db.exec("create table t (id integer primary key)");
    const order: string[] = [];
    let outside: Promise<unknown> | undefined;
    await db.transaction(async (tx) => {
      await tx.query("insert into t values (1)");
      outside = db.query<{ n: number }>("select count(*)::integer as n from t").then((rows) => {
        order.push(`outside saw ${rows[0].n}`);
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      await tx.query("insert into t values (2)");
      order.push("transaction done");
    });
    await outside;
    assert.deepEqual(order, ["transaction done", "outside saw 2"], thread);
  });
});

pgliteTest("a transaction's queryable refuses use after the transaction ended", async () => {
  const [inThread, worker] = await bothGive(async (db) => {
    let leaked: { query(text: string): Promise<unknown> } | undefined;
    await db.transaction(async (tx) => {
      leaked = tx;
      await tx.query("select 1");
    });
    return await leaked!.query("select 1");
  });
  assert.equal((inThread as Error).message, "Transaction is closed");
  assert.equal((worker as Error).message, "Transaction is closed");
});

pgliteTest("NOTIFY reaches listeners, only after commit, and not after unsubscribing", async () => {
  await onBoth(async (db, thread) => {
    const got: string[] = [];
    const unsubscribe = await db.listen("jobs_ready", (payload) => got.push(payload));
    await db.query("select pg_notify('jobs_ready', 'plain')");
    await db.transaction(async (tx) => {
      await tx.query("select pg_notify('jobs_ready', 'in tx')");
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(!got.includes("in tx"), `${thread}: not before commit`);
    });
    await db.transaction(async (tx) => {
      await tx.query("select pg_notify('jobs_ready', 'rolled back')");
      throw new Error("roll back");
    }).catch(() => {});
    await waitFor(() => got.length >= 2);
    assert.deepEqual(got, ["plain", "in tx"], thread);
    await unsubscribe();
    await db.query("select pg_notify('jobs_ready', 'after unsubscribe')");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(got, ["plain", "in tx"], thread);
  });
});

pgliteTest(
  "after close every call is refused as unavailable, and close is idempotent",
  async () => {
    await onBoth(async (db, thread) => {
      const unsubscribe = await db.listen("c", () => {});
      await db.close();
      await db.close();
      for (const call of [() => db.query("select 1"), () => db.exec("select 1")]) {
        const error = await call().catch((e) => e);
        assert.ok(error instanceof DatabaseUnavailableError, thread);
        assert.ok(isUnavailable(error));
        assert.equal(error.message, "Embedded database is closed");
      }
      assert.ok(
        isUnavailable(await db.transaction(() => Promise.resolve()).catch((e) => e)),
        thread,
      );
      await unsubscribe(); // a no-op once closed
    });
  },
);

pgliteTest("statements already sent when close() is called still complete", async () => {
  const { db, dispose } = await openEmpty("worker");
  const pending = db.query<{ n: number }>(
    "select count(*)::integer as n from generate_series(1, 1000)",
  );
  const closing = db.close();
  assert.deepEqual(await pending, [{ n: 1000 }]);
  await closing;
  assert.ok(isUnavailable(await db.query("select 1").catch((e) => e)));
  await dispose();
});

pgliteTest("a file-backed database written through the worker is there when reopened", async () => {
  const t = await freshPglite({ thread: "worker" }); // the migrated template the other tests use
  try {
    assert.equal(t.db.driver, "pglite");
    const [row] = await t.db.query<{ n: number }>("select count(*)::integer as n from signals");
    assert.equal(row.n, 0);
  } finally {
    await t.dispose();
  }
  const dir = await Deno.makeTempDir({ prefix: "pglite-worker-" });
  try {
    const first = await openPglite(dir);
    await first.exec("create table kept (v text)");
    await first.query("insert into kept values ($1::text)", ["still here"]);
    await first.close();
    const again = await openPglite(dir);
    assert.deepEqual(await again.query("select v from kept"), [{ v: "still here" }]);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

pgliteTest(
  "a database loaded from the template's tarball is migrated; loadDataDir takes no directory or worker",
  async () => {
    const t = await freshPglite({ thread: "main" }); // loaded from the template's tarball
    try {
      const [row] = await t.db.query<{ n: number }>(
        "select count(*)::integer as n from schema_migrations",
      );
      assert.equal(row.n, (await loadMigrations()).length);
    } finally {
      await t.dispose();
    }
    const tarball = new Blob([]);
    await assert.rejects(
      openPglite("/nonexistent/never-made", { thread: "main", loadDataDir: tarball }),
      /dataDir null/,
    );
    await assert.rejects(
      openPglite(null, { thread: "worker", loadDataDir: tarball }),
      /thread main/,
    );
  },
);

pgliteTest("a long statement in the worker leaves the calling thread free", async () => {
  const { db, dispose } = await openEmpty("worker");
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    await db.query("select count(*) from generate_series(1, 3000000)");
    const elapsed = performance.now() - started;
    clearInterval(timer);
    // In-thread, PGlite runs the statement synchronously and no timer fires meanwhile.
    assert.ok(ticks >= Math.min(5, elapsed / 40), `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
  } finally {
    await dispose();
  }
});

pgliteTest("a process that opens and closes the worker database exits by itself", async () => {
  const script = `
    import { openPglite } from "./db/pglite.ts";
    const db = await openPglite(null);
    console.log(JSON.stringify(await db.query("select 1 as one")));
    await db.close();
  `;
  const { code, stdout, stderr } = await run(["eval", script], 60_000);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.equal(new TextDecoder().decode(stdout).trim(), '[{"one":1}]');
});

pgliteTest(
  "the service starts under exactly `deno task start`'s permissions and accepts a webhook",
  async () => {
    const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
    const [deno, ...startArgs] = (tasks.start as string).split(/\s+/);
    assert.equal(deno, "deno");
    assert.ok(!startArgs.includes("--allow-all") && !startArgs.includes("-A"));
    const dataDir = await Deno.makeTempDir({ prefix: "pglite-worker-service-" });
    const port = freePort();
    const child = new Deno.Command(Deno.execPath(), {
      args: startArgs,
      cwd: ROOT,
      clearEnv: true,
      env: {
        ...inheritedEnv(),
        NO_COLOR: "1",
        PORT: String(port),
        DATA_DIR: dataDir,
        WEBHOOK_SECRET: SECRET,
        LOG_LEVEL: "warning",
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const base = `http://127.0.0.1:${port}`;
    try {
      const health = await waitForHealth(`${base}/health`, 90_000);
      assert.equal(health.status, 200);
      const body = await health.json();
      assert.equal(body.components.database.healthy, true, JSON.stringify(body));
      const sent = await run(
        ["run", "--allow-net", "--allow-env", "--allow-read", "scripts/send.ts", `${base}/webhook`],
        30_000,
        { WEBHOOK_SECRET: SECRET },
      );
      const out = new TextDecoder().decode(sent.stdout);
      assert.equal(sent.code, 0, out + new TextDecoder().decode(sent.stderr));
      assert.match(out, /-> 200 ACCEPTED/);
    } finally {
      child.kill("SIGTERM");
      const status = await child.status;
      const log = await stderr;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      assert.equal(status.code, 0, log);
      assert.doesNotMatch(log, /PermissionDenied|NotCapable|Requires .* access/, log);
    }
  },
);

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error("Condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function waitForHealth(url: string, timeoutMs: number): Promise<Response> {
  const until = Date.now() + timeoutMs;
  while (true) {
    try {
      return await fetch(url);
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs deno with `args` in the repository; fails when it is still running after `timeoutMs`. */
async function run(
  args: string[],
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const output = await child.output();
    assert.ok(output.signal === null, `deno ${args[0]} did not exit within ${timeoutMs} ms`);
    return output;
  } finally {
    clearTimeout(timer);
  }
}
