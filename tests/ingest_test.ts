/**
 * What the database guarantees about ingest: one stored signal per alert
 * however many copies race in, across instances; signals never change.
 */
import assert from "node:assert/strict";
import { JOBS_CHANNEL } from "../db/signals.ts";
import { countRows, signed, testServices, uniqueSignal } from "./_app.ts";
import { aroundQueries, dbTest } from "./_db.ts";

dbTest("50 identical alerts sent at once store exactly one signal and one job", async ({ db }) => {
  const s = await testServices(db);
  const body = JSON.stringify(uniqueSignal());
  const init = await signed(body);
  const responses = await Promise.all(
    Array.from({ length: 50 }, () => s.app.request("/webhook", { ...init })),
  );
  const bodies = await Promise.all(responses.map((r) => r.json()));
  assert.ok(responses.every((r) => r.status === 200));
  const accepted = bodies.filter((b) => b.status === "ACCEPTED");
  const duplicates = bodies.filter((b) => b.status === "DUPLICATE");
  assert.equal(accepted.length, 1);
  assert.equal(duplicates.length, 49);
  assert.ok(duplicates.every((d) => d.signal_id === accepted[0].signal_id));
  assert.equal(await countRows(db, "signals"), 1);
  assert.equal(await countRows(db, "pipeline_jobs"), 1);
  assert.equal(await countRows(db, "processing_errors"), 49);
});

dbTest(
  "a symbol's next signal is not written while its previous one's flush is in flight",
  async ({ db }) => {
    // The first ingest flush reaches the database only once a second flush has
    // committed (or after 2 s): two flushes in flight race each other to the lock.
    const { promise: secondCommitted, resolve: committed } = Promise.withResolvers<void>();
    const { promise: firstHeld, resolve: held } = Promise.withResolvers<void>();
    let flushes = 0;
    const racing = aroundQueries(db, async (text, run) => {
      if (!text.includes("insert into signal_dedup")) return await run();
      if (++flushes === 1) {
        held();
        await Promise.race([secondCommitted, new Promise((r) => setTimeout(r, 2_000))]);
        return await run();
      }
      const rows = await run();
      committed();
      return rows;
    });
    const s = await testServices(racing);
    const send = async (fields: Record<string, unknown>) => {
      const init = await signed(JSON.stringify(uniqueSignal(fields)));
      return (await s.app.request("/webhook", init)).json();
    };
    const close = send({ symbol: "SPY", action: "EXIT" });
    await firstHeld;
    const [open, other] = await Promise.all([
      send({ symbol: "SPY", action: "ENTRY" }),
      send({ symbol: "QQQ", action: "ENTRY" }),
      close,
    ]);
    assert.equal(open.status, "ACCEPTED");
    assert.equal(other.status, "ACCEPTED");
    const seq = async (id: string) =>
      Number(
        (await db.query<{ seq: string }>("select seq from signals where id = $1", [id]))[0].seq,
      );
    assert.ok(
      await seq((await close).signal_id) < await seq(open.signal_id),
      "SPY's entry took a sequence number before the exit received ahead of it",
    );
  },
);

dbTest(
  "two instances racing on the same alerts store each alert once",
  async ({ db, connectAgain }) => {
    const a = await testServices(db);
    const b = await testServices(await connectAgain());
    const alerts = Array.from({ length: 20 }, () => JSON.stringify(uniqueSignal()));
    const sends = [];
    for (const body of alerts) {
      const init = await signed(body);
      for (let copy = 0; copy < 5; copy++) {
        sends.push((copy % 2 === 0 ? a : b).app.request("/webhook", { ...init }));
      }
    }
    const bodies = await Promise.all((await Promise.all(sends)).map((r) => r.json()));
    assert.equal(bodies.filter((x) => x.status === "ACCEPTED").length, 20);
    assert.equal(bodies.filter((x) => x.status === "DUPLICATE").length, 80);
    assert.equal(await countRows(db, "signals"), 20);
    assert.equal(await countRows(db, "pipeline_jobs"), 20);
    // Every copy of one alert points at the same stored signal.
    const byBody = new Map<number, Set<string>>();
    bodies.forEach((x, i) => {
      const alert = Math.floor(i / 5);
      byBody.set(alert, (byBody.get(alert) ?? new Set()).add(x.signal_id));
    });
    assert.ok([...byBody.values()].every((ids) => ids.size === 1));
  },
  { drivers: ["postgres"] },
);

dbTest(
  "a burst of distinct alerts is stored whole, jobs in arrival order per symbol",
  async ({ db }) => {
    const s = await testServices(db);
    const sent: { symbol: string; timestamp: string }[] = [];
    const requests = [];
    for (let i = 0; i < 120; i++) {
      const signal = uniqueSignal({ symbol: ["SPY", "QQQ", "IWM"][i % 3] });
      sent.push({ symbol: signal.symbol as string, timestamp: signal.timestamp as string });
      requests.push(s.app.request("/webhook", await signed(JSON.stringify(signal))));
    }
    const bodies = await Promise.all((await Promise.all(requests)).map((r) => r.json()));
    assert.ok(bodies.every((b) => b.status === "ACCEPTED"));
    assert.equal(await countRows(db, "signals"), 120);
    // Signal seq and job id agree: a job's place in its symbol's queue is its signal's.
    const rows = await db.query<{ seq: string; job_id: string; symbol: string; ts: Date }>(
      `select s.seq::text as seq, j.id::text as job_id, s.symbol, s.signal_time as ts
     from signals s join pipeline_jobs j on j.signal_id = s.id order by s.seq`,
    );
    const jobIds = rows.map((r) => Number(r.job_id));
    assert.deepEqual(jobIds, [...jobIds].sort((x, y) => x - y));
    // Per symbol, the signals took their sequence numbers in the order they were sent
    // (several share a flush: that flush writes them in arrival order too).
    for (const symbol of ["SPY", "QQQ", "IWM"]) {
      const stored = rows.filter((r) => r.symbol === symbol).map((r) => r.ts.toISOString());
      const expected = sent.filter((x) => x.symbol === symbol).map((x) => x.timestamp);
      assert.equal(expected.length, 40);
      assert.deepEqual(stored, expected, symbol);
    }
  },
);

dbTest("signals are append-only: UPDATE, DELETE and TRUNCATE fail", async ({ db }) => {
  const s = await testServices(db);
  const { signal_id } = await (await s.app.request(
    "/webhook",
    await signed(JSON.stringify(uniqueSignal())),
  )).json();
  await assert.rejects(
    db.query("update signals set symbol = 'QQQ' where id = $1::uuid", [signal_id]),
    /append-only: UPDATE/,
  );
  await assert.rejects(
    db.query("delete from signals where id = $1::uuid", [signal_id]),
    /append-only: DELETE/,
  );
  await assert.rejects(db.query("truncate signals cascade"), /append-only: TRUNCATE/);
  const [row] = await db.query<{ symbol: string }>("select symbol from signals");
  assert.equal(row.symbol, "SPY");
});

dbTest(
  "an accepted signal wakes the workers with NOTIFY, a duplicate does not",
  async ({ db, driver, connectAgain }) => {
    const s = await testServices(db);
    // On Postgres listen on another connection, as another instance's worker would.
    const listener = driver === "postgres" ? await connectAgain() : db;
    const heard: string[] = [];
    const unlisten = await listener.listen(JOBS_CHANNEL, (payload) => heard.push(payload));
    const body = JSON.stringify(uniqueSignal());
    await s.app.request("/webhook", await signed(body));
    for (let i = 0; i < 50 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(heard.length, 1);
    await s.app.request("/webhook", await signed(body));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(heard.length, 1, "a duplicate stores nothing, so wakes no one");
    await unlisten();
  },
);
