/**
 * POST /webhook through the real app and a real database: the rows of the
 * response table in DESIGN.md that store or find a signal (ACCEPTED,
 * DUPLICATE), and what each leaves in the database. The refusals are in
 * webhook_refusals_test.ts.
 */
import assert from "node:assert/strict";
import { countRows, GUIDE_SIGNAL, SECRET, signed, testServices, uniqueSignal } from "./_app.ts";
import { dbTest } from "./_db.ts";

dbTest(
  "the guide's sample signal is ACCEPTED with the guide's fields, stored with its job",
  async ({ db }) => {
    const s = await testServices(db);
    const body = JSON.stringify(GUIDE_SIGNAL);
    const res = await s.app.request("/webhook", await signed(body));
    assert.equal(res.status, 200);
    const json = await res.json();
    assert.equal(json.status, "ACCEPTED");
    assert.equal(json.message, "Signal received and queued for processing");
    assert.equal(json.system, "REFACTORED");
    assert.equal(typeof json.correlation_id, "string");
    assert.equal(typeof json.processing_time_ms, "number");
    assert.match(json.signal_id, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get("x-request-id"), json.correlation_id);

    const [row] = await db.query<Record<string, unknown>>(
      "select * from signals where id = $1::uuid",
      [json.signal_id],
    );
    assert.equal(row.symbol, "SPY");
    assert.equal(row.direction, "CALL");
    assert.equal(row.action, "ENTRY");
    assert.equal(row.timeframe, "5m");
    assert.equal((row.signal_time as Date).toISOString(), "2024-01-29T12:00:00.000Z");
    assert.deepEqual(row.metadata, { score: 85, confidence: 0.85 });
    assert.deepEqual(row.raw_payload, GUIDE_SIGNAL);
    assert.equal(row.auth_method, "signature");
    assert.equal(row.correlation_id, json.correlation_id);
    const jobs = await db.query<{ status: string; symbol: string }>(
      "select status, symbol from pipeline_jobs where signal_id = $1::uuid",
      [json.signal_id],
    );
    assert.deepEqual(jobs, [{ status: "pending", symbol: "SPY" }]);
    assert.equal(await countRows(db, "events"), 1);
  },
);

dbTest(
  "a repeat within the dedup window is DUPLICATE with the original's id, and recorded",
  async ({ db }) => {
    const s = await testServices(db);
    const body = JSON.stringify(uniqueSignal());
    const first = await (await s.app.request("/webhook", await signed(body))).json();
    // Same alert, other field order and whitespace: still the same signal.
    const reordered = JSON.stringify(JSON.parse(body), Object.keys(JSON.parse(body)).reverse(), 2);
    const second = await s.app.request("/webhook", await signed(reordered));
    assert.equal(second.status, 200);
    const json = await second.json();
    assert.equal(json.status, "DUPLICATE");
    assert.equal(json.signal_id, first.signal_id);
    assert.equal(await countRows(db, "signals"), 1);
    assert.equal(await countRows(db, "pipeline_jobs"), 1);
    const [dup] = await db.query<{ code: string; signal_id: string; http_status: number }>(
      "select code, signal_id, http_status from processing_errors",
    );
    assert.deepEqual(dup, { code: "DUPLICATE", signal_id: first.signal_id, http_status: 200 });
  },
);

dbTest("after the dedup window the same alert is a new signal", async ({ db }) => {
  const s = await testServices(db, { env: { DEDUP_TTL_SECONDS: "1" } });
  // Long past its freshness too (a fresh one's key lives while it could be decided).
  const timestamp = new Date(Date.now() - 86_400_000 - Math.floor(Math.random() * 1e9))
    .toISOString();
  const body = JSON.stringify(uniqueSignal({ timestamp }));
  const first = await (await s.app.request("/webhook", await signed(body))).json();
  await new Promise((r) => setTimeout(r, 1200));
  const again = await (await s.app.request("/webhook", await signed(body))).json();
  assert.equal(again.status, "ACCEPTED");
  assert.notEqual(again.signal_id, first.signal_id);
  assert.equal(await countRows(db, "signals"), 2);
  assert.equal(await countRows(db, "pipeline_jobs"), 2);
});

dbTest(
  "an alert id tells apart alerts that are otherwise the same, and a re-send is still one",
  async ({ db }) => {
    const s = await testServices(db);
    const alert = uniqueSignal();
    const post = async (fields: Record<string, unknown>) =>
      await (await s.app.request(
        "/webhook",
        await signed(JSON.stringify({ ...alert, ...fields })),
      )).json();
    const a = await post({ id: "strategy-a" });
    const again = await post({ id: "strategy-a", price: 480 });
    const b = await post({ id: "strategy-b" });
    assert.deepEqual([a.status, again.status, b.status], ["ACCEPTED", "DUPLICATE", "ACCEPTED"]);
    assert.equal(again.signal_id, a.signal_id);
    assert.notEqual(b.signal_id, a.signal_id);
  },
);

dbTest(
  "an idempotency_key makes a rebuilt retry a duplicate, whatever time it carries",
  async ({ db }) => {
    const s = await testServices(db);
    const post = async (fields: Record<string, unknown>) =>
      await (await s.app.request(
        "/webhook",
        await signed(JSON.stringify(uniqueSignal(fields))),
      )).json();
    const first = await post({ idempotency_key: "order-7" });
    const retry = await post({ idempotency_key: "order-7", price: 480 }); // a new timestamp
    const next = await post({ idempotency_key: "order-8" });
    assert.deepEqual([first.status, retry.status, next.status], [
      "ACCEPTED",
      "DUPLICATE",
      "ACCEPTED",
    ]);
    assert.equal(retry.signal_id, first.signal_id);
  },
);

dbTest("text/plain alert messages are parsed like JSON ones", async ({ db }) => {
  const s = await testServices(db);
  const init = await signed(JSON.stringify(uniqueSignal()));
  (init.headers as Record<string, string>)["content-type"] = "text/plain; charset=utf-8";
  const res = await s.app.request("/webhook", init);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, "ACCEPTED");
});

dbTest("GET /webhook says the endpoint is ready (the guide's rollback check)", async ({ db }) => {
  const s = await testServices(db);
  const res = await s.app.request("/webhook");
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, "READY");
});

dbTest("a trailing slash is the same webhook address, for either auth form", async ({ db }) => {
  // ".../webhook/<secret>/" pasted into TradingView was a 404 that nothing recorded, and
  // TradingView never re-sends a 4xx: every alert of that alert lost without a trace.
  const s = await testServices(db, { env: { OPERATOR_TOKEN: "operator-token-0123456789" } });
  const alerts = [uniqueSignal(), uniqueSignal(), uniqueSignal()];
  const answers = [
    await s.app.request(`/webhook/${SECRET}/`, {
      method: "POST",
      body: JSON.stringify(alerts[0]),
    }),
    await s.app.request("/webhook/", await signed(JSON.stringify(alerts[1]))),
    await s.app.request("/webhook/", {
      method: "POST",
      body: JSON.stringify({ ...alerts[2], secret: SECRET }),
    }),
  ];
  for (const res of answers) {
    assert.equal(res.status, 200);
    assert.equal((await res.json()).status, "ACCEPTED");
  }
  assert.equal(await countRows(db, "signals"), 3);
  // The token is still checked there.
  const forged = await s.app.request("/webhook/not-the-secret-0123456789/", {
    method: "POST",
    body: JSON.stringify(uniqueSignal()),
  });
  assert.equal(forged.status, 401);
  assert.equal(await countRows(db, "signals"), 3);
  const ready = await s.app.request("/webhook/");
  assert.equal((await ready.json()).status, "READY");
});

dbTest(
  "a secret with URL characters works in the URL-token form percent-encoded, as start-up says",
  async ({ db }) => {
    const secret = "a/b?c#d%e+f g-0123456789";
    const s = await testServices(db, { env: { WEBHOOK_SECRET: secret } });
    const post = (path: string) =>
      s.app.request(path, { method: "POST", body: JSON.stringify(uniqueSignal()) });
    const encoded = await post(`/webhook/${encodeURIComponent(secret)}`);
    assert.equal(encoded.status, 200, await encoded.clone().text());
    assert.equal((await encoded.json()).status, "ACCEPTED");
    // Raw, "/" makes it another path (404) and "?" "#" cut it: never accepted.
    for (const raw of [`/webhook/${secret}`, `/webhook/${secret.replace("/", "%2F")}`]) {
      assert.notEqual((await post(raw)).status, 200);
    }
    assert.equal(await countRows(db, "signals"), 1);
    // In the message it only needs JSON's own escaping.
    const inBody = await s.app.request("/webhook", {
      method: "POST",
      body: JSON.stringify({ ...uniqueSignal(), secret }),
    });
    assert.equal((await inBody.json()).status, "ACCEPTED");
  },
);

dbTest(
  "a signed timestamp's request is a duplicate for its whole replay window, not just the dedup TTL",
  async ({ db }) => {
    const s = await testServices(db, { env: { DEDUP_TTL_SECONDS: "1" } });
    const now = Math.floor(Date.now() / 1000);
    // Long past its freshness: uniqueSignal()'s time may lie years ahead, and a fresh
    // signal's key outlives the replay window on its own, so the test passed without it.
    const timestamp = new Date(Date.now() - 86_400_000 - Math.floor(Math.random() * 1e9))
      .toISOString();
    const init = await signed(JSON.stringify(uniqueSignal({ timestamp })), { timestamp: now });
    const first = await (await s.app.request("/webhook", { ...init })).json();
    await new Promise((r) => setTimeout(r, 1200));
    // Replayed after the 1 s dedup window but inside the 300 s signature tolerance.
    const replay = await (await s.app.request("/webhook", { ...init })).json();
    assert.equal(first.status, "ACCEPTED");
    assert.equal(replay.status, "DUPLICATE");
    assert.equal(replay.signal_id, first.signal_id);
  },
);

dbTest(
  "webhook-id counts as the alert's id only when Standard Webhooks signed it",
  async ({ db }) => {
    const s = await testServices(db);
    const statuses = [];
    for (const symbol of ["SPY", "QQQ"]) {
      // Same unsigned webhook-id beside an x-signature: different alerts stay different.
      const init = await signed(JSON.stringify(uniqueSignal({ symbol })), {
        headers: { "webhook-id": "msg_1" },
      });
      statuses.push((await (await s.app.request("/webhook", init)).json()).status);
    }
    assert.deepEqual(statuses, ["ACCEPTED", "ACCEPTED"]);
  },
);

dbTest("a duplicate whose stored payload is cut mid-emoji is still recorded", async ({ db }) => {
  const s = await testServices(db);
  // 8,191 ASCII characters of JSON before a 2-unit emoji: the 8 KiB cut falls inside it.
  const base = JSON.stringify(uniqueSignal({ note: "" }));
  const note = "x".repeat(8 * 1024 - base.length + 1) + "😀".repeat(10);
  const body = JSON.stringify({ ...JSON.parse(base), note });
  const first = await (await s.app.request("/webhook", await signed(body))).json();
  const again = await s.app.request("/webhook", await signed(body));
  assert.equal(again.status, 200);
  assert.equal((await again.json()).signal_id, first.signal_id);
  const [row] = await db.query<{ payload: string }>("select payload from processing_errors");
  assert.ok(row.payload.endsWith("…[truncated]"));
});

dbTest(
  "alerts that reuse an id ({{strategy.order.id}}) on other tickers or later trades are all taken; a re-send is not",
  async ({ db }) => {
    const s = await testServices(db);
    const post = async (fields: Record<string, unknown>) => {
      const body = JSON.stringify({ ...GUIDE_SIGNAL, id: "Long", ...fields });
      return await (await s.app.request("/webhook", await signed(body))).json();
    };
    const spy = await post({ symbol: "SPY" });
    const qqq = await post({ symbol: "QQQ" });
    const spyHour = await post({ symbol: "SPY", timeframe: "1h" });
    assert.deepEqual([spy.status, qqq.status, spyHour.status], [
      "ACCEPTED",
      "ACCEPTED",
      "ACCEPTED",
    ]);
    // TradingView's re-send is the same message: the same alert.
    const again = await post({ symbol: "SPY" });
    assert.equal(again.status, "DUPLICATE");
    assert.equal(again.signal_id, spy.signal_id);
    // The strategy's next "Long" entry, ten minutes later (after an exit): a new alert.
    const reentry = await post({ symbol: "SPY", timestamp: "2024-01-29T12:10:00Z" });
    assert.equal(reentry.status, "ACCEPTED");
    assert.equal(await countRows(db, "signals"), 4);
  },
);

dbTest(
  "a signal's dedup key lives while a re-delivery could still be decided, not just the 60 s TTL",
  async ({ db }) => {
    const s = await testServices(db);
    const claimed = Date.now() - 10_000;
    const expiry = async (fields: Record<string, unknown>) => {
      const body = JSON.stringify({ ...uniqueSignal(), ...fields });
      const { signal_id } = await (await s.app.request("/webhook", await signed(body))).json();
      const [row] = await db.query<{ expires_at: Date }>(
        "select expires_at from signal_dedup where signal_id = $1",
        [signal_id],
      );
      return new Date(row.expires_at).getTime();
    };
    const t = new Date(claimed).toISOString();
    // MAX_SIGNAL_AGE_SECONDS (300) plus one bar: a relay's retry minutes later is a duplicate.
    assert.equal(await expiry({ timestamp: t, timeframe: "5m" }), claimed + 600_000);
    assert.equal(await expiry({ timestamp: t, timeframe: "1h" }), claimed + 3_900_000);
    // Long stale already: the TTL from now still holds.
    const old = await expiry({ timestamp: "2024-01-29T12:00:00Z", timeframe: "5m" });
    assert.ok(Math.abs(old - (Date.now() + 60_000)) < 30_000, new Date(old).toISOString());
  },
);

dbTest(
  "a timeframe whose freshness runs past year 9999 (100000M) is ACCEPTED, its key kept to 9999",
  async ({ db }) => {
    const s = await testServices(db);
    const body = JSON.stringify(uniqueSignal({ timeframe: "100000M" }));
    const res = await s.app.request("/webhook", await signed(body));
    assert.equal(res.status, 200, await res.clone().text());
    const { status, signal_id } = await res.json();
    assert.equal(status, "ACCEPTED");
    const [row] = await db.query<{ expires_at: Date }>(
      "select expires_at from signal_dedup where signal_id = $1",
      [signal_id],
    );
    assert.equal(new Date(row.expires_at).toISOString(), "9999-12-31T23:59:59.999Z");
    const again = await s.app.request("/webhook", await signed(body));
    assert.equal((await again.json()).status, "DUPLICATE");
  },
);

dbTest(
  "a MAX_SIGNAL_AGE_SECONDS past the last time a Date holds (1e14) still takes alerts",
  async ({ db }) => {
    const s = await testServices(db, { env: { MAX_SIGNAL_AGE_SECONDS: "100000000000000" } });
    const res = await s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal())));
    assert.equal(res.status, 200, await res.clone().text());
    const { signal_id } = await res.json();
    const [row] = await db.query<{ expires_at: Date }>(
      "select expires_at from signal_dedup where signal_id = $1",
      [signal_id],
    );
    assert.equal(new Date(row.expires_at).toISOString(), "9999-12-31T23:59:59.999Z");
  },
);

dbTest(
  "an alert whose unquoted plot printed NaN is taken, the value absent",
  async ({ db }) => {
    const s = await testServices(db);
    const { timestamp } = uniqueSignal();
    // "score": {{plot_0}} and "price": {{plot_1}} on a bar where neither plot has a value.
    const body = `{"symbol": "SPY", "direction": "CALL", "timeframe": "5m",
      "timestamp": "${timestamp}", "price": NaN, "note": "NaN stays text",
      "metadata": {"confidence": 0.8, "score": NaN}}`;
    const res = await s.app.request("/webhook", await signed(body));
    const json = await res.json();
    assert.equal(json.status, "ACCEPTED", JSON.stringify(json));
    const [row] = await db.query<{ price: string | null; metadata: Record<string, unknown> }>(
      "select price, metadata from signals where id = $1",
      [json.signal_id],
    );
    assert.equal(row.price, null);
    assert.deepEqual(row.metadata, { confidence: 0.8 });
  },
);
