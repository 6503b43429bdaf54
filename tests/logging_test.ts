/**
 * The logs, captured while the real app answers webhooks sent every way a
 * secret can travel (HMAC header, Standard Webhooks, body secret and
 * passphrase, URL token) and every way it can be wrong: no line ever holds
 * the secret, a signature, a URL token or a query string; every line logged
 * while handling a request carries that request's correlation_id; every line
 * is a JSON object with @timestamp, level, message and logger. The database
 * rows written for the same requests hold no secret either.
 */
import assert from "node:assert/strict";
import { reset } from "@logtape/logtape";
import { setupLogging } from "../logging.ts";
import { SECRET, signed, standardWebhooks, testServices, uniqueSignal } from "./_app.ts";
import { dbTest } from "./_db.ts";

interface Case {
  name: string;
  path: string;
  init: RequestInit;
  /** 200, or "refused" for any 4xx (which one is webhook_refusals_test.ts's business). */
  status: 200 | "refused";
  /** Strings that must appear in no log line (the secret is always checked). */
  hidden: string[];
}

const json = (body: unknown): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

async function cases(): Promise<Case[]> {
  const out: Case[] = [];
  const add = (c: Case) => out.push(c);

  const hmacBody = JSON.stringify(uniqueSignal());
  const hmac = await signed(hmacBody);
  add({
    name: "x-signature",
    path: "/webhook",
    init: hmac,
    status: 200,
    hidden: [(hmac.headers as Record<string, string>)["x-signature"]],
  });

  const stampedBody = JSON.stringify(uniqueSignal());
  const stamped = await signed(stampedBody, { timestamp: Math.floor(Date.now() / 1000) });
  add({
    name: "x-signature with timestamp",
    path: "/webhook",
    init: stamped,
    status: 200,
    hidden: [(stamped.headers as Record<string, string>)["x-signature"]],
  });

  const standard = await standardWebhooks(JSON.stringify(uniqueSignal()));
  const standardSignature = (standard.headers as Record<string, string>)["webhook-signature"];
  add({
    name: "Standard Webhooks",
    path: "/webhook",
    init: standard,
    status: 200,
    hidden: [standardSignature, standardSignature.slice(3)],
  });

  add({
    name: "secret in the body",
    path: "/webhook",
    init: json(uniqueSignal({ secret: SECRET })),
    status: 200,
    hidden: [],
  });
  add({
    name: "passphrase in the body",
    path: "/webhook",
    init: json(uniqueSignal({ passphrase: SECRET })),
    status: 200,
    hidden: [],
  });
  add({
    name: "token in the URL",
    path: `/webhook/${SECRET}`,
    init: json(uniqueSignal()),
    status: 200,
    hidden: [],
  });

  const wrongSecret = "wrong-webhook-secret-5f3a9c";
  add({
    name: "a wrong body secret",
    path: "/webhook",
    init: json(uniqueSignal({ secret: wrongSecret })),
    status: "refused",
    hidden: [wrongSecret],
  });
  const wrongToken = "wrong-url-token-8d21e0";
  add({
    name: "a wrong URL token",
    path: `/webhook/${wrongToken}`,
    init: json(uniqueSignal()),
    status: "refused",
    hidden: [wrongToken],
  });
  const forged = "ab".repeat(32);
  const forgedInit = json(uniqueSignal());
  (forgedInit.headers as Record<string, string>)["x-signature"] = `sha256=${forged}`;
  add({
    name: "a forged signature",
    path: "/webhook",
    init: forgedInit,
    status: "refused",
    hidden: [forged],
  });

  const junk = "junk-query-token-77c1b2";
  add({
    name: "?token= junk on a signed request",
    path: `/webhook?token=${junk}&secret=${junk}`,
    init: await signed(JSON.stringify(uniqueSignal())),
    status: 200,
    hidden: [junk],
  });
  add({
    name: "the secret as ?token= (not an auth method)",
    path: `/webhook?token=${SECRET}`,
    init: json(uniqueSignal()),
    status: "refused",
    hidden: [],
  });
  add({
    name: "the secret in a body that is not JSON",
    path: "/webhook",
    init: {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: `SPY buy secret=${SECRET} passphrase: "${SECRET}"`,
    },
    status: "refused",
    hidden: [],
  });
  add({
    name: "the secret in broken JSON",
    path: "/webhook",
    init: { method: "POST", body: `{"symbol":"SPY","secret":"${SECRET}",` },
    status: "refused",
    hidden: [],
  });
  add({
    name: "a GET with the secret as ?token=",
    path: `/webhook?token=${SECRET}`,
    init: { method: "GET" },
    status: 200,
    hidden: [],
  });
  return out;
}

interface Line {
  "@timestamp": string;
  level: string;
  message: string;
  logger: string;
  correlation_id?: string;
  [key: string]: unknown;
}

dbTest(
  "no log line holds a secret, signature or token; each carries its request's correlation_id",
  async ({ db }) => {
    const raw: string[] = [];
    await setupLogging({ level: "debug", write: (line) => raw.push(line) });
    try {
      const services = await testServices(db);
      const all = await cases();
      for (const c of all) {
        const requestId = crypto.randomUUID();
        const headers = new Headers(c.init.headers);
        headers.set("x-request-id", requestId);
        const from = raw.length;
        const res = await services.app.request(c.path, { ...c.init, headers });
        const expected = c.status === 200
          ? res.status === 200
          : res.status >= 400 && res.status < 500;
        assert.ok(expected, `${c.name}: ${res.status} ${await res.clone().text()}`);
        assert.equal(res.headers.get("x-request-id"), requestId, c.name);
        const answer = await res.text();
        assert.ok(!answer.includes(SECRET), `${c.name}: the response holds the secret`);

        const lines = raw.slice(from);
        assert.ok(lines.length > 0, `${c.name}: nothing logged`);
        for (const line of lines) {
          assert.ok(line.endsWith("\n"), "a line ends with a newline");
          assert.equal(line.trimEnd().split("\n").length, 1, "one JSON object per line");
          for (const hidden of [SECRET, ...c.hidden]) {
            assert.ok(!line.includes(hidden), `${c.name}: logged "${hidden}": ${line}`);
          }
          const parsed = JSON.parse(line) as Line;
          assert.equal(parsed.correlation_id, requestId, `${c.name}: ${line}`);
        }
        // The access line names the route, never the raw path.
        const access = lines.map((l) => JSON.parse(l) as Line).find((l) =>
          l.logger === "optionstrat.http" && typeof l.route === "string"
        );
        assert.ok(access, `${c.name}: no access line`);
        assert.ok(!String(access.route).includes("?"), `${c.name}: ${access.route}`);
      }

      // Every line: a JSON object with the four fields, in a known level.
      for (const line of raw) {
        const parsed = JSON.parse(line) as Line;
        assert.ok(!Number.isNaN(Date.parse(parsed["@timestamp"])), line);
        assert.equal(new Date(parsed["@timestamp"]).toISOString(), parsed["@timestamp"]);
        assert.ok(["DEBUG", "INFO", "WARNING", "ERROR", "FATAL", "TRACE"].includes(parsed.level));
        assert.equal(typeof parsed.message, "string");
        assert.match(parsed.logger, /^optionstrat(\.|$)/);
      }
      // Both outcomes were seen, so both paths were checked.
      const levels = new Set(raw.map((l) => (JSON.parse(l) as Line).level));
      assert.ok(levels.has("INFO") && levels.has("WARNING"), [...levels].join(","));

      // What was stored for the same requests holds no secret either.
      const stored = await db.query<{ text: string }>(
        `select raw_payload::text as text from signals
         union all select coalesce(payload, '') || details::text from processing_errors`,
      );
      assert.ok(stored.length >= all.length - 1);
      for (const { text } of stored) assert.ok(!text.includes(SECRET), `stored: ${text}`);
    } finally {
      await reset();
    }
  },
);

dbTest(
  "the worker's decision line carries its signal's correlation_id and signal_id",
  async ({ db }) => {
    const raw: string[] = [];
    await setupLogging({ level: "debug", write: (line) => raw.push(line) });
    try {
      const services = await testServices(db);
      const requestId = crypto.randomUUID();
      const init = await signed(JSON.stringify(uniqueSignal()));
      const headers = new Headers(init.headers);
      headers.set("x-request-id", requestId);
      const res = await services.app.request("/webhook", { ...init, headers });
      assert.equal(res.status, 200);
      const { signal_id: signalId } = await res.json();
      const from = raw.length;
      assert.equal(await services.worker.runUntilIdle(), 1);
      const decided = raw.slice(from).map((l) => JSON.parse(l) as Line);
      const decision = decided.find((l) => /^Decision for SPY/.test(l.message));
      assert.ok(decision, "no decision line");
      // The worker carries the signal's own correlation id, not a leftover one.
      assert.equal(decision.correlation_id, requestId);
      assert.equal(decision.signal_id, signalId);
      for (const line of raw) assert.ok(!line.includes(SECRET));
    } finally {
      await reset();
    }
  },
);
