/**
 * POST /webhook through the real app and a real database: the refusal rows
 * of the response table in DESIGN.md (400, 413, 422, 429, 503), that no
 * input makes a 5xx, and that the secret is stored nowhere; what each
 * leaves in the database. ACCEPTED and DUPLICATE are in webhook_test.ts.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { countRows, SECRET, signed, testServices, uniqueSignal } from "./_app.ts";
import { dbTest } from "./_db.ts";
import { unlessHung } from "./_service.ts";
import type { Services } from "../compose.ts";
import type { Database } from "../db/port.ts";

const FORGED_SECRET = "not-the-webhook-secret-0123456789";

/** processing_errors rows counted by code and client address. */
async function refusalsByAddress(db: Database) {
  return await db.query<{ code: string; client_ip: string; n: number }>(
    `select code, client_ip, count(*)::integer as n from processing_errors
     group by code, client_ip order by client_ip, code`,
  );
}

/** A signed alert from `ip` (as Fly-Client-IP), with the webhook secret or another. */
async function alertFrom(s: Services, ip: string, secret?: string): Promise<Response> {
  const init = await signed(JSON.stringify(uniqueSignal()), { secret });
  (init.headers as Record<string, string>)["fly-client-ip"] = ip;
  return await s.app.request("/webhook", init);
}

dbTest(
  "malformed JSON from an authenticated sender is 400 INVALID_JSON and recorded",
  async ({ db }) => {
    const s = await testServices(db);
    const res = await s.app.request("/webhook", await signed('{"symbol": "SPY", '));
    assert.equal(res.status, 400);
    const json = await res.json();
    assert.equal(json.status, "REJECTED");
    assert.equal(json.error.code, "INVALID_JSON");
    assert.equal(typeof json.correlation_id, "string");
    const [row] = await db.query<{ code: string; http_status: number; correlation_id: string }>(
      "select code, http_status, correlation_id from processing_errors",
    );
    assert.deepEqual(row, {
      code: "INVALID_JSON",
      http_status: 400,
      correlation_id: json.correlation_id,
    });
    assert.equal(await countRows(db, "signals"), 0);
  },
);

dbTest(
  "a schema violation is 422 VALIDATION_FAILED with every issue's path and message",
  async ({ db }) => {
    const s = await testServices(db);
    const body = JSON.stringify({
      symbol: "SPY",
      direction: "SIDEWAYS",
      timeframe: "5m",
      price: -3,
    });
    const res = await s.app.request("/webhook", await signed(body));
    assert.equal(res.status, 422);
    const json = await res.json();
    assert.equal(json.status, "REJECTED");
    assert.equal(json.error.code, "VALIDATION_FAILED");
    const paths = json.error.issues.map((i: { path: string }) => i.path).sort();
    assert.deepEqual(paths, ["direction", "price", "timestamp"]);
    for (const issue of json.error.issues) assert.equal(typeof issue.message, "string");
    const [row] = await db.query<{ code: string; details: { issues: unknown[] } }>(
      "select code, details from processing_errors",
    );
    assert.equal(row.code, "VALIDATION_FAILED");
    assert.equal(row.details.issues.length, 3);
    assert.equal(await countRows(db, "signals"), 0);
  },
);

dbTest("a body over the limit is 413 REJECTED, recorded without its body", async ({ db }) => {
  const s = await testServices(db, { env: { WEBHOOK_MAX_BODY_BYTES: "1024" } });
  const body = JSON.stringify(uniqueSignal({ comment: "x".repeat(2000) }));
  const res = await s.app.request("/webhook", await signed(body));
  assert.equal(res.status, 413);
  const json = await res.json();
  assert.equal(json.status, "REJECTED");
  assert.equal(json.error.code, "PAYLOAD_TOO_LARGE");
  const [row] = await db.query<{ code: string; payload: string | null }>(
    "select code, payload from processing_errors",
  );
  assert.deepEqual(row, { code: "PAYLOAD_TOO_LARGE", payload: null });
});

dbTest(
  "oversized bodies count as refusals: past the limit an address gets 429 and is recorded once",
  async ({ db }) => {
    const s = await testServices(db, {
      env: {
        WEBHOOK_MAX_BODY_BYTES: "1024",
        RATE_LIMIT_PER_MINUTE: "3",
        CLIENT_IP_HEADER: "fly-client-ip",
      },
    });
    // Only the Content-Length is read: each costs the sender nothing but a header.
    const oversized = (ip: string) =>
      s.app.request("/webhook", {
        method: "POST",
        body: "x".repeat(2000),
        headers: { "content-type": "application/json", "fly-client-ip": ip },
      });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await oversized("203.0.113.7");
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.deepEqual(statuses, [413, 413, 413, 429, 429, 429, 429, 429, 429, 429]);
    const limited = await oversized("203.0.113.7");
    assert.ok(Number(limited.headers.get("retry-after")) > 0);
    assert.equal((await limited.json()).error.code, "RATE_LIMITED");
    assert.equal((await oversized("203.0.113.8")).status, 413, "another address was limited");
    const genuine = await alertFrom(s, "203.0.113.7");
    assert.equal(genuine.status, 200, "a genuine alert was limited");
    await genuine.body?.cancel();
    assert.deepEqual(await refusalsByAddress(db), [
      { code: "PAYLOAD_TOO_LARGE", client_ip: "203.0.113.7", n: 3 },
      { code: "RATE_LIMITED", client_ip: "203.0.113.7", n: 1 },
      { code: "PAYLOAD_TOO_LARGE", client_ip: "203.0.113.8", n: 1 },
    ]);
  },
);

dbTest(
  "a body that stalls is 408 REQUEST_TIMEOUT within WEBHOOK_BODY_TIMEOUT_MS, recorded; its late rest stores nothing",
  async ({ db }) => {
    const s = await testServices(db, { env: { WEBHOOK_BODY_TIMEOUT_MS: "300" } });
    const body = new TextEncoder().encode(JSON.stringify({ ...uniqueSignal(), secret: SECRET }));
    const { promise: resume, resolve: sendTheRest } = Promise.withResolvers<void>();
    // Half the alert, then nothing until the test lets the rest go.
    const stalled = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(body.slice(0, 40));
        await resume;
        controller.enqueue(body.slice(40));
        controller.close();
      },
    });
    const started = performance.now();
    const res = await s.app.request("/webhook", {
      method: "POST",
      body: stalled,
      headers: { "content-type": "application/json" },
      duplex: "half",
    } as RequestInit);
    const waitedMs = performance.now() - started;
    assert.equal(res.status, 408);
    assert.equal(res.headers.get("connection"), "close");
    const json = await res.json();
    assert.equal(json.error.code, "REQUEST_TIMEOUT");
    assert.equal(json.error.message, "The body did not arrive within 300 ms");
    assert.ok(waitedMs >= 300 && waitedMs < 5_000, `answered after ${waitedMs} ms`);
    const [row] = await db.query<{ code: string; payload: string | null }>(
      "select code, payload from processing_errors",
    );
    assert.deepEqual(row, { code: "REQUEST_TIMEOUT", payload: null });
    // The rest arrives after the answer: it is not read, and no signal comes of it.
    sendTheRest();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await countRows(db, "signals"), 0);
    // A body that comes at once is unaffected by the deadline.
    const prompt = await s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal())));
    assert.equal(prompt.status, 200);
    assert.equal(await countRows(db, "signals"), 1);
  },
);

dbTest("the 64 KiB default limit lets a 60 KiB alert through", async ({ db }) => {
  const s = await testServices(db);
  const body = JSON.stringify(uniqueSignal({ comment: "x".repeat(60 * 1024) }));
  const res = await s.app.request("/webhook", await signed(body));
  assert.equal(res.status, 200);
});

dbTest(
  "past the limit of refusals an address gets 429 with Retry-After; genuine alerts are never limited",
  async ({ db }) => {
    const s = await testServices(db, {
      env: { RATE_LIMIT_PER_MINUTE: "3", CLIENT_IP_HEADER: "fly-client-ip" },
    });
    const from = (ip: string, secret?: string) => alertFrom(s, ip, secret);
    const forged = FORGED_SECRET;
    // TradingView's senders are shared: a genuine alert goes through whatever else they carry.
    for (let i = 0; i < 5; i++) assert.equal((await from("203.0.113.7")).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await from("203.0.113.7", forged)).status, 401);
    const limited = await from("203.0.113.7", forged);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) > 0);
    const json = await limited.json();
    assert.equal(json.status, "REJECTED");
    assert.equal(json.error.code, "RATE_LIMITED");
    assert.equal((await from("203.0.113.7", forged)).status, 429);
    assert.equal((await from("203.0.113.7")).status, 200, "a genuine alert was limited");
    assert.equal((await from("203.0.113.8", forged)).status, 401, "another address was limited");
    assert.deepEqual(await refusalsByAddress(db), [
      { code: "RATE_LIMITED", client_ip: "203.0.113.7", n: 1 },
      { code: "UNAUTHORIZED", client_ip: "203.0.113.7", n: 3 },
      { code: "UNAUTHORIZED", client_ip: "203.0.113.8", n: 1 },
    ]);
    assert.equal(await countRows(db, "signals"), 6);
  },
);

dbTest(
  "an IPv6 sender is limited by its /64: rotating addresses inside it does not escape the limit",
  async ({ db }) => {
    const s = await testServices(db, {
      env: { RATE_LIMIT_PER_MINUTE: "3", CLIENT_IP_HEADER: "fly-client-ip" },
    });
    const forged = async (ip: string) => {
      const res = await alertFrom(s, ip, FORGED_SECRET);
      await res.body?.cancel();
      return res.status;
    };
    // One subscriber's /64 holds 2^64 addresses: one each would never reach the limit.
    const statuses = [];
    for (let i = 1; i <= 6; i++) statuses.push(await forged(`2001:db8:0:7::${i.toString(16)}`));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429]);
    // The same /64 written another way is the same sender.
    assert.equal(await forged("2001:0db8:0000:0007:abcd::1"), 429);
    assert.equal(await forged("2001:db8:0:8::1"), 401, "the next /64 was limited");
    assert.equal(await forged("203.0.113.7"), 401, "an IPv4 address was limited");
  },
);

dbTest(
  "a long malformed field is refused 422 (its patterns are linear: core/signal.ts)",
  async ({ db }) => {
    const s = await testServices(db);
    // Each in the 64 KiB limit; each held the event loop for seconds, every alert waiting.
    const fields: Record<string, unknown>[] = [
      { price: `${"1".repeat(60_000)}x` },
      { metadata: { score: `${"1".repeat(60_000)}x` } },
      { metadata: { confidence: `${"1".repeat(60_000)}x` } },
      { symbol: "{".repeat(60_000) },
      { source: "{{".repeat(30_000) },
    ];
    // Their cost is not timed here (no timed assertions in the suite); the answer is checked.
    for (const f of fields) {
      const res = await s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal(f))));
      assert.equal(res.status, 422, Object.keys(f)[0]);
      await res.body?.cancel();
    }
  },
);

dbTest("with the database unreachable the webhook answers 503 with Retry-After", async ({ db }) => {
  const s = await testServices(db);
  const init = await signed(JSON.stringify(uniqueSignal()));
  await db.close();
  const res = await s.app.request("/webhook", init);
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers.get("retry-after")) > 0);
  const json = await res.json();
  assert.equal(json.status, "REJECTED");
  assert.equal(json.error.code, "DATABASE_UNAVAILABLE");
});

dbTest(
  "a connection lost while the ingest is in the database gives 503 and leaves nothing written",
  async ({ db, connectAgain }) => {
    const s = await testServices(db);
    // Another session holds the ingest order lock, so the ingest statement waits inside the
    // database; then its backend is killed, as when the server restarts mid-request.
    const other = await connectAgain();
    const pending = other.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock(727003)");
      const request = s.app.request("/webhook", await signed(JSON.stringify(uniqueSignal())));
      for (let i = 0; i < 100; i++) {
        const waiting = await tx.query<{ pid: number }>(
          `select pid from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
        );
        if (waiting.length > 0) {
          await tx.query("select pg_terminate_backend($1::integer)", [waiting[0].pid]);
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return request;
    });
    const res = await pending;
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, "DATABASE_UNAVAILABLE");
    for (const table of ["signals", "signal_dedup", "pipeline_jobs", "events"]) {
      assert.equal(await countRows(db, table), 0, table);
    }
  },
  { drivers: ["postgres"] },
);

dbTest(
  "a commit that does not come within the ingest deadline is 503; if it lands late the re-send is DUPLICATE",
  async ({ db, connectAgain }) => {
    const s = await testServices(db, { env: { INGEST_DEADLINE_MS: "300" } });
    const init = await signed(JSON.stringify(uniqueSignal()));
    // Another session holds the ingest order lock: the commit waits inside the database.
    const other = await connectAgain();
    // Answered while the lock is still held: only the deadline can have answered it.
    let answered!: Response;
    await other.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock(727003)");
      answered = await unlessHung(s.app.request("/webhook", init), "the webhook's answer");
    });
    assert.equal(answered.status, 503);
    assert.equal((await answered.json()).error.code, "DATABASE_UNAVAILABLE");
    assert.ok(Number(answered.headers.get("retry-after")) > 0);
    // The lock is gone: the late commit lands, and TradingView's re-send finds it.
    await s.ingest.drain();
    const resent = await s.app.request("/webhook", init);
    assert.equal((await resent.json()).status, "DUPLICATE");
    assert.equal(await countRows(db, "signals"), 1);
    assert.equal(await countRows(db, "pipeline_jobs"), 1);
  },
  { drivers: ["postgres"] },
);

dbTest("no input, however broken, makes the webhook answer 5xx", async ({ db }) => {
  const s = await testServices(db);
  const bodies = fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string({ unit: "binary", maxLength: 200 }),
    fc.record({
      symbol: fc.oneof(fc.string(), fc.constantFrom("SPY", "NASDAQ:AAPL", "{{ticker}}")),
      direction: fc.oneof(fc.string(), fc.constantFrom("buy", "SELL", "flat", "\u0000")),
      timeframe: fc.oneof(fc.string(), fc.constantFrom("5", "D", "240")),
      timestamp: fc.oneof(fc.string(), fc.integer(), fc.constant("2024-01-29T12:00:00Z")),
      metadata: fc.jsonValue(),
      price: fc.oneof(fc.double(), fc.string()),
      note: fc.string({ unit: "binary" }),
    }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  );
  await fc.assert(
    fc.asyncProperty(bodies, async (body) => {
      const res = await s.app.request("/webhook", await signed(body));
      await res.body?.cancel();
      return [200, 400, 422].includes(res.status);
    }),
    { numRuns: 150 },
  );
});

dbTest("the secret never reaches signals, processing_errors or the response", async ({ db }) => {
  const s = await testServices(db);
  const accepted = await s.app.request(
    "/webhook",
    { method: "POST", body: JSON.stringify(uniqueSignal({ secret: SECRET })) },
  );
  assert.equal(accepted.status, 200);
  await s.app.request("/webhook", {
    method: "POST",
    body: JSON.stringify(uniqueSignal({ secret: SECRET, direction: "nonsense" })),
  });
  await s.app.request("/webhook", {
    method: "POST",
    body: `{"passphrase": "${SECRET}", "symbol": `,
  });
  await s.app.request("/webhook", {
    method: "POST",
    body: JSON.stringify(uniqueSignal({ secret: "a-wrong-guess-of-the-secret" })),
  });
  const dump = JSON.stringify([
    await db.query("select * from signals"),
    await db.query("select * from processing_errors"),
  ]);
  assert.equal(await countRows(db, "processing_errors"), 3);
  assert.ok(!dump.includes(SECRET), "secret stored");
  assert.ok(!dump.includes("a-wrong-guess-of-the-secret"), "wrong secret stored");
});

dbTest("the secret pasted anywhere else in an alert is scrubbed before storing", async ({ db }) => {
  const s = await testServices(db);
  const body = JSON.stringify(uniqueSignal({
    metadata: { note: `key=${SECRET}`, [SECRET]: 1 },
    comment: [`${SECRET}${SECRET}`],
  }));
  const res = await s.app.request("/webhook", await signed(body));
  assert.equal((await res.json()).status, "ACCEPTED");
  const [row] = await db.query<{ raw_payload: Record<string, unknown> }>(
    "select raw_payload from signals",
  );
  assert.deepEqual(row.raw_payload.metadata, { note: "key=[redacted]", "[redacted]": 1 });
  assert.deepEqual(row.raw_payload.comment, ["[redacted][redacted]"]);
  const dump = JSON.stringify(await db.query("select * from signals"));
  assert.ok(!dump.includes(SECRET), "secret stored");
});

dbTest(
  "refusals anyone can send are recorded at most 50 a second over all addresses, the rest counted",
  async ({ db }) => {
    let now = Date.now();
    const s = await testServices(db, {
      now: () => now,
      env: { RATE_LIMIT_PER_MINUTE: "1000", CLIENT_IP_HEADER: "fly-client-ip" },
    });
    // Each from an address of its own: the per-address limit never bites.
    let address = 0;
    const forged = async (n: number) => {
      for (let i = 0; i < n; i++) {
        address++;
        const res = await alertFrom(s, `198.18.${address >> 8}.${address & 255}`, FORGED_SECRET);
        assert.equal(res.status, 401);
        await res.body?.cancel();
      }
    };
    const unrecorded = async () =>
      (await (await s.app.request("/metrics")).json()).webhook.refusalsUnrecorded;

    await forged(130); // a burst of 100, then none until the clock moves
    assert.equal(await countRows(db, "processing_errors"), 100);
    assert.equal(await unrecorded(), 30);
    // A secret holder's own refusal is always recorded: it is how a trader finds a broken template.
    const broken = await s.app.request("/webhook", await signed('{"symbol": "SPY", '));
    assert.equal(broken.status, 400);
    await broken.body?.cancel();
    assert.equal(await countRows(db, "processing_errors"), 101);

    now += 1000; // 50 more
    await forged(60);
    assert.equal(await countRows(db, "processing_errors"), 151);
    assert.equal(await unrecorded(), 40);
    const prometheus = await (await s.app.request("/metrics/prometheus")).text();
    assert.match(
      prometheus,
      /^optionstrat_webhook_refusals_unrecorded_total\{scope="instance"\} 40$/m,
    );
  },
);
