/**
 * Graceful shutdown, on the real process: `deno run main.ts` is started as a
 * child, fed a stream of signed signals from concurrent clients (plus one
 * request whose body is still arriving and one open /events stream), and
 * sent SIGTERM mid-stream. Then: it exits 0 well within the deadline; every
 * request got 200 ACCEPTED/DUPLICATE, 503 SHUTTING_DOWN with Retry-After, or
 * no connection at all (the listener was closed; TradingView re-sends those
 * too); the database holds exactly the acknowledged signals, each with its
 * job and none left claimed. Once on PGlite (DATA_DIR), once on Postgres
 * (DATABASE_URL). `shutDown()`'s deadline and failure paths and the 503 are
 * also tested in-process.
 */
import assert from "node:assert/strict";
import { compose } from "../compose.ts";
import { loadConfig } from "../core/config.ts";
import { PROVIDER_TIMEOUT_MAX_MS } from "../core/pipeline_config.ts";
import { openPglite } from "../db/pglite.ts";
import type { Database } from "../db/port.ts";
import { setupLogging } from "../logging.ts";
import { shutDown, SHUTDOWN_DEADLINE_MS } from "../main.ts";
import { countRows, SECRET, signed, testServices, uniqueSignal } from "./_app.ts";
import { dbTest, POSTGRES_REACHABLE } from "./_db.ts";
import { delay, IN_CI, scratchPostgres, seedPglite, startService, unlessHung } from "./_service.ts";
/** How long the child may take from SIGTERM to exit before the test calls it a hang. */
const EXIT_LIMIT_MS = 10_000;

// --- the traffic ---------------------------------------------------------------

interface Sent {
  requestId: string;
  alertId: string;
  /** HTTP status, or "no connection" when the request failed before an answer. */
  outcome: number | "no connection" | "pending";
  status?: string;
  code?: string;
  signalId?: string;
  retryAfter?: string | null;
  error?: string;
}

let sequence = 0;

async function signal(): Promise<{ init: RequestInit; sent: Sent }> {
  const requestId = crypto.randomUUID();
  const alertId = `shutdown-test-${++sequence}-${requestId.slice(0, 8)}`;
  const body = JSON.stringify(uniqueSignal({ id: alertId }));
  const init = await signed(body, { headers: { "x-request-id": requestId } });
  return { init, sent: { requestId, alertId, outcome: "pending" } };
}

async function record(sent: Sent, response: Promise<Response>): Promise<void> {
  try {
    const res = await response;
    sent.outcome = res.status;
    sent.retryAfter = res.headers.get("retry-after");
    const json = await res.json();
    sent.status = json.status;
    sent.code = json.error?.code;
    sent.signalId = json.signal_id;
  } catch (error) {
    sent.outcome = "no connection";
    sent.error = String(error);
  }
}

/** One client: sends signals one after another until the service stops answering. */
async function client(base: string, sent: Sent[], stopAt: number): Promise<void> {
  while (Date.now() < stopAt) {
    const { init, sent: s } = await signal();
    sent.push(s);
    await record(s, fetch(`${base}/webhook`, { ...init, signal: AbortSignal.timeout(5_000) }));
    if (s.outcome === "no connection") return;
  }
}

const port = (base: string) => Number(new URL(base).port);

/**
 * POST /webhook over a raw connection, with a Content-Length: the headers and
 * the first bytes of the body at once, the rest when `rest` resolves.
 */
async function rawPost(
  port: number,
  headers: Record<string, string>,
  body: Uint8Array,
  rest: Promise<void>,
): Promise<Response> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = [
      "POST /webhook HTTP/1.1",
      `host: 127.0.0.1:${port}`,
      `content-length: ${body.length}`,
      "connection: close",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ].join("\r\n") + "\r\n\r\n";
    await conn.write(new TextEncoder().encode(head));
    await conn.write(body.subarray(0, 10));
    await rest;
    await conn.write(body.subarray(10));
    const answer = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    const [top, ...content] = answer.split("\r\n\r\n");
    const [statusLine, ...headerLines] = top.split("\r\n");
    const responseHeaders = new Headers(
      headerLines.map((l) => l.split(/:\s*/, 2) as [string, string]),
    );
    let text = content.join("\r\n\r\n");
    if (responseHeaders.get("transfer-encoding") === "chunked") {
      let decoded = "";
      for (let at = 0;;) {
        const eol = text.indexOf("\r\n", at);
        const size = parseInt(text.slice(at, eol), 16);
        if (!(size > 0)) break;
        decoded += text.slice(eol + 2, eol + 2 + size);
        at = eol + 2 + size + 2;
      }
      text = decoded;
      responseHeaders.delete("transfer-encoding");
    }
    return new Response(text, {
      status: Number(statusLine.split(" ")[1]),
      headers: responseHeaders,
    });
  } finally {
    try {
      conn.close();
    } catch { /* closed with its readable */ }
  }
}

// --- the scenario -----------------------------------------------------------------

interface Stored {
  id: string;
  correlation_id: string;
  alert_id: string | null;
  job_status: string | null;
}

async function shutdownMidStream(
  env: Record<string, string>,
  openAfterwards: () => Promise<Database>,
): Promise<void> {
  const service = await startService(env);
  const { base, child } = service;
  const sent: Sent[] = [];
  try {
    // A dashboard watching /events: its stream must not hold the shutdown up.
    const events = await fetch(`${base}/events`);
    assert.equal(events.status, 200);
    const eventReader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await eventReader.read()).value ?? "", /event: ready/);

    // Two webhooks whose bodies are still arriving when SIGTERM comes. With a
    // Content-Length (as TradingView sends) the handler has already begun and
    // must finish: ACCEPTED and stored. Chunked, the body-size guard reads the
    // whole body before the handler runs, so that one may get the 503 instead;
    // either way it is answered (Deno's own shutdown would break the body read
    // and make it a 500).
    let sendRest!: () => void;
    const rest = new Promise<void>((resolve) => (sendRest = resolve));
    const slowPost = async (contentLength: boolean) => {
      const { init, sent: s } = await signal();
      const bytes = new TextEncoder().encode(init.body as string);
      sent.push(s);
      const headers = init.headers as Record<string, string>;
      if (contentLength) {
        // Deno's fetch sends a stream chunked whatever the headers say: write HTTP by hand.
        return { sent: s, done: record(s, rawPost(port(base), headers, bytes, rest)) };
      }
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(bytes.subarray(0, 10));
          await rest;
          controller.enqueue(bytes.subarray(10));
          controller.close();
        },
      });
      const request = fetch(`${base}/webhook`, {
        ...init,
        body,
        signal: AbortSignal.timeout(8_000),
      });
      return { sent: s, done: record(s, request) };
    };
    const slow = await slowPost(true);
    const chunked = await slowPost(false);

    // The stream: 8 clients, each posting one signal after another.
    const clients = Array.from({ length: 8 }, () => client(base, sent, Date.now() + 8_000));
    const streamStarted = Date.now();
    while (
      sent.filter((s) => s.status === "ACCEPTED").length < 40 && Date.now() - streamStarted < 3_000
    ) {
      await delay(10);
    }

    child.kill("SIGTERM");
    await service.waitForLine(/SIGTERM received/, 5_000);
    await delay(100);
    sendRest();

    const exit = await Promise.race([
      child.status,
      delay(EXIT_LIMIT_MS).then(() => null),
    ]);
    // Checked before waiting for the requests: on a hang, `finally` kills the child, which ends them.
    assert.ok(
      exit !== null,
      `no exit ${EXIT_LIMIT_MS} ms after SIGTERM:\n${service.lines.slice(-15).join("\n")}`,
    );
    await Promise.all([...clients, slow.done, chunked.done]);
    await eventReader.cancel().catch(() => {});
    // 0 is shutDown()'s answer when every step finished within SHUTDOWN_DEADLINE_MS (past it,
    // or on a failed step, it is 1): the deadline is the service's own, not timed here.
    assert.equal(exit.code, 0, service.lines.slice(-15).join("\n"));

    // The process said what it did, in JSON lines, and logged no error.
    const logged = service.lines.map((l) => JSON.parse(l) as { level: string; message: string });
    assert.deepEqual(logged.filter((l) => l.level === "ERROR"), []);
    assert.ok(logged.some((l) => /^SIGTERM received: draining/.test(l.message)));
    assert.ok(logged.some((l) => /^Stopped cleanly/.test(l.message)));

    // Every request got an answer TradingView handles, and nothing else.
    for (const s of sent) {
      if (s.outcome === 200) {
        assert.ok(s.status === "ACCEPTED" || s.status === "DUPLICATE", JSON.stringify(s));
      } else if (s.outcome === 503) {
        assert.equal(s.code, "SHUTTING_DOWN", JSON.stringify(s));
        assert.ok(Number(s.retryAfter) > 0, "503 without Retry-After");
      } else {
        assert.equal(s.outcome, "no connection", JSON.stringify(s));
      }
    }
    assert.equal(slow.sent.status, "ACCEPTED", `in-flight request: ${JSON.stringify(slow.sent)}`);
    assert.ok(
      chunked.sent.status === "ACCEPTED" || chunked.sent.code === "SHUTTING_DOWN",
      `in-flight chunked request: ${JSON.stringify(chunked.sent)}`,
    );
    const accepted = sent.filter((s) => s.status === "ACCEPTED");
    assert.ok(accepted.length >= 10, `only ${accepted.length} accepted before SIGTERM`);
    assert.ok(
      sent.some((s) => s.outcome === "no connection" || s.outcome === 503),
      "the stream never saw the service stop",
    );

    // The database holds exactly the acknowledged signals, each with its job, none left claimed.
    const db = await openAfterwards();
    try {
      const stored = await db.query<Stored>(
        `select s.id::text, s.correlation_id, s.alert_id, j.status as job_status
           from signals s left join pipeline_jobs j on j.signal_id = s.id`,
      );
      const byAlert = new Map(stored.map((row) => [row.alert_id, row]));
      for (const s of accepted) {
        const row = byAlert.get(s.alertId);
        assert.ok(row, `ACCEPTED signal ${s.signalId} (${s.alertId}) is not stored`);
        assert.equal(row.id, s.signalId);
        assert.equal(row.correlation_id, s.requestId);
        assert.ok(
          row.job_status === "pending" || row.job_status === "done" ||
            row.job_status === "failed",
          `signal ${row.id} has job status ${row.job_status}`,
        );
      }
      const acknowledged = new Set(accepted.map((s) => s.alertId));
      const unacknowledged = stored.filter((row) => !acknowledged.has(row.alert_id ?? ""));
      assert.deepEqual(unacknowledged, [], "stored but never acknowledged");
      assert.equal(stored.length, accepted.length);
      const running = await db.query("select id from pipeline_jobs where status = 'running'");
      assert.deepEqual(running, [], "jobs left claimed after shutdown");
    } finally {
      await db.close();
    }
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await child.status;
  }
}

/** Runs `fn` on a seeded PGlite data directory of its own, removed afterwards. */
async function withSeededPglite(fn: (dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-shutdown-" });
  try {
    await seedPglite(dataDir);
    await fn(dataDir);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "[pglite] SIGTERM mid-stream: exit 0, every answer 200 or 503, exactly the ACCEPTED stored",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withSeededPglite((dataDir) =>
      shutdownMidStream({ DATA_DIR: dataDir }, () => openPglite(`${dataDir}/pglite`))
    );
  },
});

Deno.test({
  name:
    "[postgres] SIGTERM mid-stream: exit 0, every answer 200 or 503, exactly the ACCEPTED stored",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // An empty database: the service migrates it at start-up, as a new deploy does.
    const scratch = await scratchPostgres("shutdown");
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-shutdown-" });
    try {
      await shutdownMidStream(
        { DATABASE_URL: scratch.url, DATA_DIR: dataDir },
        () => scratch.open(),
      );
    } finally {
      await scratch.drop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "[pglite] SIGTERM delivered twice at once (a process group's and its forward) still drains",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withSeededPglite(async (dataDir) => {
      const service = await startService({ DATA_DIR: dataDir });
      service.child.kill("SIGTERM");
      await delay(5);
      service.child.kill("SIGTERM");
      const { code } = await service.child.status;
      const logs = service.lines.join("\n");
      assert.equal(code, 0, logs);
      assert.match(logs, /Stopped cleanly/);
      assert.doesNotMatch(logs, /received again/);
    });
  },
});

// --- in-process ----------------------------------------------------------------

dbTest(
  "once stopAccepting() is called a webhook gets 503 SHUTTING_DOWN with Retry-After and nothing is stored",
  async ({ db }) => {
    const services = await testServices(db);
    await services.stopAccepting();
    const res = await services.app.request(
      "/webhook",
      await signed(JSON.stringify(uniqueSignal())),
    );
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get("retry-after")) > 0);
    const json = await res.json();
    assert.equal(json.status, "REJECTED");
    assert.equal(json.error.code, "SHUTTING_DOWN");
    assert.equal(await countRows(db, "signals"), 0);
    assert.equal(await countRows(db, "pipeline_jobs"), 0);
  },
);

async function captureLogs(): Promise<string[]> {
  const lines: string[] = [];
  await setupLogging({ level: "debug", write: (line) => lines.push(line) });
  return lines;
}

Deno.test("shutDown() runs its steps in order and resolves 0", async () => {
  const lines = await captureLogs();
  const steps: string[] = [];
  const code = await shutDown({
    stopAccepting: () => Promise.resolve(void steps.push("stopAccepting")),
    shutdownServer: () => Promise.resolve(void steps.push("shutdownServer")),
    close: () => Promise.resolve(void steps.push("close")),
    activeJobs: () => 0,
  }, { deadlineMs: 1_000 });
  assert.equal(code, 0);
  assert.deepEqual(steps, ["stopAccepting", "shutdownServer", "close"]);
  assert.ok(lines.some((l) => JSON.parse(l).message.startsWith("Stopped cleanly")));
});

Deno.test("shutDown() past its deadline resolves 1 and logs what it abandoned", async () => {
  const lines = await captureLogs();
  const hang = Promise.withResolvers<void>();
  const code = await unlessHung(
    shutDown({
      stopAccepting: () => Promise.resolve(),
      shutdownServer: () => Promise.resolve(),
      close: () => hang.promise,
      activeJobs: () => 3,
    }, { deadlineMs: 100 }),
    "shutDown() with close() hanging",
  );
  // Answered while close() still hangs: only the deadline could have ended it.
  hang.resolve();
  assert.equal(code, 1);
  const error = lines.map((l) => JSON.parse(l)).find((l) => l.level === "ERROR");
  assert.ok(error, "no ERROR line");
  assert.match(error.message, /deadline of 100 ms passed/);
  assert.match(error.message, /finish the jobs being decided and close the database/);
  assert.match(error.message, /abandoning 3 jobs/);
  assert.ok(!lines.some((l) => JSON.parse(l).message.startsWith("Stopped cleanly")));
});

Deno.test("shutDown() resolves 1 when a step fails, names it, and still runs the rest", async () => {
  const lines = await captureLogs();
  let closed = false;
  const code = await shutDown({
    stopAccepting: () => Promise.resolve(),
    shutdownServer: () => Promise.reject(new Error("listener already closed")),
    close: () => Promise.resolve(void (closed = true)),
    activeJobs: () => 0,
  }, { deadlineMs: 1_000 });
  assert.equal(code, 1);
  assert.equal(closed, true, "the worker and database were not stopped after the failed step");
  const error = lines.map((l) => JSON.parse(l)).find((l) => l.level === "ERROR");
  assert.match(error.message, /failed: finish in-flight requests: Error: listener already closed/);
  assert.ok(!lines.some((l) => JSON.parse(l).message.startsWith("Stopped cleanly")));
});

dbTest(
  "close() ends a context fetch that never answers instead of waiting out its timeout",
  async ({ db }) => {
    const { config } = loadConfig({
      NODE_ENV: "test",
      WEBHOOK_SECRET: SECRET,
      ENFORCE_MARKET_HOURS: "false",
      CONTEXT_URL: "http://context.invalid/{symbol}",
      PROVIDER_TIMEOUT_MS: String(PROVIDER_TIMEOUT_MAX_MS),
    });
    // Like fetch to a provider that accepted the connection and never answers.
    // Each fetch ends only by its signal: the reasons say whether close() ended it or its
    // PROVIDER_TIMEOUT_MS did (a TimeoutError), without timing anything.
    let asked = 0;
    const reasons: string[] = [];
    const fetchStarted = Promise.withResolvers<void>();
    const neverAnswers = ((_: unknown, init?: RequestInit) => {
      asked++;
      fetchStarted.resolve();
      return new Promise<Response>((_, reject) => {
        const signal = init?.signal;
        const end = () => {
          reasons.push(String(signal?.reason));
          reject(signal?.reason);
        };
        if (signal?.aborted) end();
        signal?.addEventListener("abort", end, { once: true });
      });
    }) as typeof fetch;
    // The services' close() leaves this database open, to be read afterwards.
    const kept = new Proxy(db, {
      get(target, prop) {
        if (prop === "close") return () => Promise.resolve();
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const services = await compose(config, { db: kept, fetch: neverAnswers });
    // More symbols than one round of lookups, so several rounds would wait.
    for (const symbol of ["SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT", "NVDA", "TSLA", "AMD"]) {
      const res = await services.app.request(
        "/webhook",
        await signed(JSON.stringify(uniqueSignal({ symbol }))),
      );
      assert.equal(res.status, 200);
    }
    await services.worker.start();
    await fetchStarted.promise;
    await services.close();
    assert.ok(asked >= 1);
    assert.deepEqual(reasons, Array(asked).fill("Error: the service is stopping"));
    // Cut short, the lookups decide nothing: the jobs wait, uncounted, for a worker that can
    // get their market data (no decision made without it, to stand for good).
    assert.equal(await countRows(db, "decisions"), 0);
    const jobs = await db.query<{ status: string; attempts: number }>(
      "select status, attempts from pipeline_jobs",
    );
    assert.deepEqual(
      jobs.map((j) => `${j.status}/${j.attempts}`),
      Array(9).fill("pending/0"),
    );
  },
);

Deno.test("PROVIDER_TIMEOUT_MS's ceiling leaves a stop time to finish within its deadline", () => {
  assert.ok(PROVIDER_TIMEOUT_MAX_MS <= SHUTDOWN_DEADLINE_MS / 2);
  assert.throws(
    () => loadConfig({ PROVIDER_TIMEOUT_MS: String(PROVIDER_TIMEOUT_MAX_MS + 1) }),
    /PROVIDER_TIMEOUT_MS must be a whole number from 100 to 10000/,
  );
});
