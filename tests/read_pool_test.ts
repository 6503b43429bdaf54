/**
 * The operator's reads on a pool of their own (Postgres): reads held up by a
 * lock, as many as both pools have connections, leave a webhook ACCEPTED in
 * time; each read is cancelled on the server at READ_QUERY_TIMEOUT_MS and
 * answered 503 QUERY_TIMEOUT. The control shares one pool, as before, and the
 * same webhook is refused.
 */
import assert from "node:assert/strict";
import { compose, openReadDatabase, READS_APPLICATION_NAME, type Services } from "../compose.ts";
import { loadConfig } from "../core/config.ts";
import { QueryTimeoutError } from "../db/port.ts";
import { openPostgres } from "../db/postgres.ts";
import { guardDriverRace } from "../main.ts";
import { SECRET, signed, uniqueSignal } from "./_app.ts";
import { dbTest, holdLock } from "./_db.ts";
import { unlessHung } from "./_service.ts";

const READ_TIMEOUT_MS = 1500;

function configFor(url: string) {
  return loadConfig({
    NODE_ENV: "test",
    WEBHOOK_SECRET: SECRET,
    DATABASE_URL: url,
    DATABASE_POOL_SIZE: "2",
    DATABASE_READ_POOL_SIZE: "2",
    READ_QUERY_TIMEOUT_MS: String(READ_TIMEOUT_MS),
    INGEST_DEADLINE_MS: "2000",
  }).config;
}

/**
 * Holds an ACCESS EXCLUSIVE lock on positions (every read of it waits) while
 * `during` runs, from a session of its own.
 */
async function withPositionsLocked<T>(url: string, during: () => Promise<T>): Promise<T> {
  const locker = await openPostgres(url, { max: 1 });
  try {
    const unlock = await holdLock(locker, "lock table positions in access exclusive mode");
    try {
      return await during();
    } finally {
      await unlock();
    }
  } finally {
    await locker.close();
  }
}

/** `count` reads of /positions, started at once, each with its answer and how long it took. */
function stuckReads(s: Services, count: number) {
  return Array.from({ length: count }, async () => {
    const started = performance.now();
    const res = await s.app.request("/positions");
    return { res, ms: performance.now() - started };
  });
}

async function sendAlert(s: Services) {
  const started = performance.now();
  const res = await s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal())));
  return { status: res.status, body: await res.json(), ms: performance.now() - started };
}

dbTest(
  "reads held up by a lock, one for every connection of both pools, leave a webhook ACCEPTED; each is cancelled at READ_QUERY_TIMEOUT_MS with 503 QUERY_TIMEOUT",
  async ({ url }) => {
    const config = configFor(url!);
    // Opened from the config, as main.ts does: the reads' pool beside the main one.
    const s = await compose(config);
    try {
      await withPositionsLocked(url!, async () => {
        // Four: the main pool's two connections would all be taken by them if they shared it.
        const reads = stuckReads(s, 4);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const alert = await unlessHung(sendAlert(s), "the webhook");
        assert.equal(alert.status, 200, JSON.stringify(alert.body));
        assert.equal(alert.body.status, "ACCEPTED");

        for (const { res, ms } of await unlessHung(Promise.all(reads), "the reads")) {
          assert.equal(res.status, 503);
          assert.equal(res.headers.get("retry-after"), "5");
          const body = await res.json();
          assert.equal(body.error.code, "QUERY_TIMEOUT");
          assert.match(body.error.message, /READ_QUERY_TIMEOUT_MS \(1500 ms\)/);
          // Two waited for a connection and were cancelled in the queue, at the same deadline.
          assert.ok(ms >= READ_TIMEOUT_MS - 50 && ms < READ_TIMEOUT_MS + 1500, `read took ${ms}`);
        }
        // Cancelled on the server, not only abandoned: no read still waits on the lock.
        const admin = await openPostgres(url!, { max: 1 });
        try {
          const [row] = await admin.query<{ n: number }>(
            `select count(*)::integer as n from pg_stat_activity
             where application_name = $1::text and state = 'active'`,
            [READS_APPLICATION_NAME],
          );
          assert.equal(row.n, 0);
        } finally {
          await admin.close();
        }
      });
      // The lock gone, the same pool reads again.
      const res = await s.app.request("/positions");
      assert.equal(res.status, 200);
      assert.ok(Array.isArray((await res.json()).items));
      // Counted for the operator, on this instance.
      const metrics = await (await s.app.request("/metrics")).json();
      assert.equal(metrics.reads.timedOut, 4);
      const prometheus = await (await s.app.request("/metrics/prometheus")).text();
      assert.match(prometheus, /^optionstrat_read_queries_timed_out_total\{scope="instance"\} 4$/m);
    } finally {
      await s.close();
    }
  },
  { drivers: ["postgres"] },
);

dbTest(
  "control: with the reads on the webhooks' pool, the same stuck reads get the webhook refused",
  async ({ url }) => {
    const config = configFor(url!);
    const shared = await openPostgres(url!, { max: config.databasePoolSize });
    const s = await compose(config, { db: shared }); // no readDb: the reads share `db`
    try {
      const reads = await withPositionsLocked(url!, async () => {
        const reads = stuckReads(s, 4);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const alert = await unlessHung(sendAlert(s), "the webhook");
        assert.equal(alert.status, 503, JSON.stringify(alert.body));
        assert.equal(alert.body.error.code, "DATABASE_UNAVAILABLE");
        return reads;
      });
      // Without a deadline the reads waited for the lock; once it is gone they are answered.
      for (const { res } of await unlessHung(Promise.all(reads), "the reads")) {
        assert.equal(res.status, 200);
        await res.body?.cancel();
      }
    } finally {
      await s.close();
    }
  },
  { drivers: ["postgres"] },
);

Deno.test("the embedded database has no pool of reads: they share its one thread", async () => {
  const { config } = loadConfig({ NODE_ENV: "test", WEBHOOK_SECRET: SECRET });
  assert.equal(await openReadDatabase(config), null);
});

dbTest(
  "a read past its deadline is answered then even when the cancel cannot reach the server",
  async ({ url }) => {
    // Without main.ts's guard the refused connect of the cancel would end the test process.
    guardDriverRace();
    const target = new URL(url!);
    // A relay in front of the database that stops taking new connections on cue: the query's
    // own connection stays up, the cancel request's is refused.
    const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const relayed: Deno.Conn[] = [];
    (async () => {
      for await (const conn of relay) {
        const up = await Deno.connect({
          hostname: target.hostname,
          port: Number(target.port || 5432),
        });
        relayed.push(conn, up);
        conn.readable.pipeTo(up.writable).catch(() => {});
        up.readable.pipeTo(conn.writable).catch(() => {});
      }
    })().catch(() => {});
    const through = new URL(url!);
    through.hostname = "127.0.0.1";
    through.port = String((relay.addr as Deno.NetAddr).port);
    const reads = await openPostgres(through.toString(), { max: 1, queryTimeoutMs: 500 });
    try {
      await reads.query("select 1");
      const started = performance.now();
      const slow = reads.query("select pg_sleep(2)");
      await new Promise((resolve) => setTimeout(resolve, 100));
      relay.close();
      await assert.rejects(slow, QueryTimeoutError);
      const ms = performance.now() - started;
      assert.ok(ms >= 450 && ms < 1500, `answered after ${ms} ms`);
      // The query ran on; once it ends, its connection serves the next read.
      await new Promise((resolve) => setTimeout(resolve, 2300 - (performance.now() - started)));
      assert.deepEqual(await unlessHung(reads.query("select 2 as n"), "the next read"), [{ n: 2 }]);
    } finally {
      await reads.close();
      for (const conn of relayed) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    }
  },
  { drivers: ["postgres"] },
);
