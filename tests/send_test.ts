/**
 * `deno task send` (scripts/send.ts): the requests it builds pass the
 * service's own authenticator for every auth mode, and against the real app
 * served on a real port (PGlite and Postgres) each mode is ACCEPTED and stored
 * with its auth method; --count, a wrong secret, --dry-run and usage errors
 * give the promised output and exit codes; the CLI itself runs as a subprocess.
 */
import assert from "node:assert/strict";
import { createAuthenticator } from "../core/auth.ts";
import type { Database } from "../db/port.ts";
import {
  AUTH_MODES,
  type AuthMode,
  buildBodies,
  buildRequest,
  describeRequest,
  parseSendArgs,
  runSend,
  type SendIo,
} from "../scripts/send.ts";
import { countRows, SECRET, testServices } from "./_app.ts";
import { dbTest } from "./_db.ts";

const NOW = Date.UTC(2026, 0, 5, 15, 30);
const REPO = new URL("../", import.meta.url);

/** What each --auth mode is stored as (signals.auth_method). */
const STORED_AS: Record<Exclude<AuthMode, "none">, string> = {
  signature: "signature",
  timestamp: "signature",
  standard: "standard_webhooks",
  body: "body_secret",
  token: "url_token",
};

/** `runSend` with the output captured. */
async function send(args: string[], io: Partial<SendIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const outcome = await runSend(args, {
    env: { WEBHOOK_SECRET: SECRET },
    print: (text) => out.push(text),
    printError: (text) => err.push(text),
    ...io,
  });
  return { ...outcome, out: out.join("\n"), err: err.join("\n") };
}

/** The real app on 127.0.0.1 and a free port, shut down after `fn`. */
async function withServer(db: Database, fn: (url: string) => Promise<void>) {
  const services = await testServices(db);
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    services.app.fetch,
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/webhook`);
  } finally {
    await server.shutdown();
    await services.stopAccepting();
  }
}

Deno.test("the default body is the guide's sample signal stamped with now", () => {
  const parsed = parseSendArgs([], { WEBHOOK_SECRET: SECRET });
  assert.equal(parsed.help, false);
  if (parsed.help) return;
  assert.equal(parsed.plan.url, "http://127.0.0.1:8080/webhook");
  assert.equal(parsed.plan.auth, "signature");
  const [body] = buildBodies(parsed.plan, null, NOW);
  assert.deepEqual(JSON.parse(body), {
    source: "TradingView",
    symbol: "SPY",
    direction: "CALL",
    timeframe: "5m",
    timestamp: "2026-01-05T15:30:00.000Z",
    metadata: { score: 85, confidence: 0.85 },
  });
});

Deno.test("flags override fields, and --count spaces timestamps 1 s apart ending now", () => {
  const parsed = parseSendArgs(
    [
      "https://optionstrat-backend.fly.dev",
      ...["--symbol", "QQQ", "--direction", "PUT", "--action", "EXIT", "--price", "487.12"],
      ...["--confidence", "0.5", "--id", "alert-7", "-n", "3"],
    ],
    { WEBHOOK_SECRET: SECRET },
  );
  assert.ok(!parsed.help);
  // A bare origin gets the webhook path.
  assert.equal(parsed.plan.url, "https://optionstrat-backend.fly.dev/webhook");
  const bodies = buildBodies(parsed.plan, null, NOW).map((b) => JSON.parse(b));
  assert.deepEqual(bodies.map((b) => b.timestamp), [
    "2026-01-05T15:29:58.000Z",
    "2026-01-05T15:29:59.000Z",
    "2026-01-05T15:30:00.000Z",
  ]);
  assert.deepEqual(bodies.map((b) => b.id), ["alert-7-1", "alert-7-2", "alert-7-3"]);
  assert.deepEqual(bodies[0], {
    source: "TradingView",
    symbol: "QQQ",
    direction: "PUT",
    action: "EXIT",
    timeframe: "5m",
    timestamp: "2026-01-05T15:29:58.000Z",
    price: 487.12,
    id: "alert-7-1",
    metadata: { score: 85, confidence: 0.5 },
  });
});

Deno.test("--timestamp is the first timestamp; --body is sent verbatim unless flags override", () => {
  const plan = (args: string[]) => {
    const parsed = parseSendArgs(args, { WEBHOOK_SECRET: SECRET });
    assert.ok(!parsed.help);
    return parsed.plan;
  };
  const epoch = plan(["--timestamp", "1706529600", "--count", "2"]);
  assert.deepEqual(buildBodies(epoch, null, NOW).map((b) => JSON.parse(b).timestamp), [
    "2024-01-29T12:00:00.000Z",
    "2024-01-29T12:00:01.000Z",
  ]);
  const raw = '{ "ticker": "SPY", "action": "buy" }';
  assert.deepEqual(buildBodies(plan(["--body", raw, "-n", "2"]), raw, NOW), [raw, raw]);
  assert.deepEqual(
    JSON.parse(buildBodies(plan(["--body", raw, "--symbol", "IWM"]), raw, NOW)[0]),
    { symbol: "IWM", ticker: "SPY", action: "buy" },
  );
});

Deno.test("every auth mode's request passes the service's authenticator as that method", async () => {
  const authenticator = createAuthenticator({
    secret: SECRET,
    toleranceSeconds: 300,
    ipAllowlist: null,
    ipAllowlistRequired: false,
  });
  const body = JSON.stringify({ symbol: "SPY", direction: "CALL" });
  for (const [auth, method] of Object.entries(STORED_AS)) {
    const request = await buildRequest({
      url: "http://x/webhook",
      body,
      auth: auth as AuthMode,
      secret: SECRET,
      nowMs: NOW,
    });
    const sent = JSON.parse(request.init.body);
    const result = await authenticator.verify({
      rawBody: new TextEncoder().encode(request.init.body),
      header: (name) => request.init.headers[name],
      pathToken: request.url.startsWith("http://x/webhook/")
        ? decodeURIComponent(request.url.slice("http://x/webhook/".length))
        : null,
      bodySecret: typeof sent.secret === "string" ? sent.secret : null,
      clientIp: null,
      nowMs: NOW,
    });
    assert.equal(result.ok && result.method, method, auth);
    assert.ok(!describeRequest(request).includes(SECRET), `${auth} printed the secret`);
  }
});

Deno.test("usage errors exit 2 with a clear message and send nothing", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--auth", "magic"], { WEBHOOK_SECRET: SECRET }, /--auth must be one of signature, /],
    [[], {}, /No secret: set WEBHOOK_SECRET or pass --secret/],
    [["--count", "0"], { WEBHOOK_SECRET: SECRET }, /--count must be a whole number/],
    [["--price", "cheap"], { WEBHOOK_SECRET: SECRET }, /--price must be a number/],
    [["--price", "0x10"], { WEBHOOK_SECRET: SECRET }, /--price must be a number/],
    [["--confidence", "0b1"], { WEBHOOK_SECRET: SECRET }, /--confidence must be a number/],
    [
      ["--timestamp", "soon"],
      { WEBHOOK_SECRET: SECRET },
      /--timestamp: timestamp "soon" must be ISO 8601/,
    ],
    // Without a zone Date.parse would read it in this machine's zone.
    [["--timestamp", "2026-03-09T09:30:00"], { WEBHOOK_SECRET: SECRET }, /with a zone/],
    [["--timestamp", "Mar 9 2026 09:30"], { WEBHOOK_SECRET: SECRET }, /with a zone/],
    [["--frobnicate"], { WEBHOOK_SECRET: SECRET }, /Unknown option '--frobnicate'/],
    [["ftp://example.com"], { WEBHOOK_SECRET: SECRET }, /must be http:\/\/ or https:\/\//],
    [["--body", "SPY buy", "--auth", "body"], { WEBHOOK_SECRET: SECRET }, /JSON object/],
    [["--body", "{}", "--file", "x.json"], { WEBHOOK_SECRET: SECRET }, /--body or --file/],
  ];
  for (const [args, env, message] of cases) {
    const r = await send(args, {
      env,
      fetch: () => Promise.reject(new Error("must not send")),
    });
    assert.equal(r.exitCode, 2, args.join(" "));
    assert.match(r.err, message);
    assert.match(r.err, /--help/);
  }
  const help = await send(["--help"]);
  assert.equal(help.exitCode, 0);
  assert.match(help.out, /Usage: deno task send \[URL\] \[flags\]/);
});

dbTest(
  "each auth mode is ACCEPTED by the served app and stored with its method",
  async ({ db }) => {
    await withServer(db, async (url) => {
      for (const auth of AUTH_MODES.filter((m) => m !== "none")) {
        const r = await send([url, "--auth", auth, "--symbol", "QQQ"]);
        assert.equal(r.exitCode, 0, `${auth}: ${r.out}${r.err}`);
        assert.equal(r.results.length, 1);
        const [result] = r.results;
        assert.equal(result.status, 200);
        const json = result.body as { status: string; signal_id: string };
        assert.equal(json.status, "ACCEPTED");
        assert.match(r.out, new RegExp(`\\(${auth}\\) -> 200 ACCEPTED in \\d+ ms`));
        assert.ok(!r.out.includes(SECRET), `${auth} printed the secret`);
        const [row] = await db.query<{ auth_method: string; symbol: string; raw_payload: object }>(
          "select auth_method, symbol, raw_payload from signals where id = $1::uuid",
          [json.signal_id],
        );
        assert.equal(row.auth_method, STORED_AS[auth as keyof typeof STORED_AS], auth);
        assert.equal(row.symbol, "QQQ");
        assert.ok(!("secret" in row.raw_payload), "the body secret was stored");
      }
      assert.equal(await countRows(db, "signals"), 5);
    });
  },
);

dbTest(
  "--count 3 stores three signals 1 s apart; a repeat is DUPLICATE and still exits 0",
  async ({ db }) => {
    await withServer(db, async (url) => {
      const r = await send([url, "--count", "3"]);
      assert.equal(r.exitCode, 0, r.out + r.err);
      assert.deepEqual(r.results.map((x) => (x.body as { status: string }).status), [
        "ACCEPTED",
        "ACCEPTED",
        "ACCEPTED",
      ]);
      assert.match(r.out, /3 requests: 3 x 200 ACCEPTED/);
      const rows = await db.query<{ signal_time: Date }>(
        "select signal_time from signals order by signal_time",
      );
      assert.equal(rows.length, 3);
      assert.equal(rows[1].signal_time.getTime() - rows[0].signal_time.getTime(), 1000);
      assert.equal(rows[2].signal_time.getTime() - rows[1].signal_time.getTime(), 1000);

      const fixed = ["--timestamp", "2024-01-29T12:00:00Z"];
      assert.equal((await send([url, ...fixed])).exitCode, 0);
      const again = await send([url, ...fixed]);
      assert.equal(again.exitCode, 0);
      assert.equal((again.results[0].body as { status: string }).status, "DUPLICATE");
      assert.equal(await countRows(db, "signals"), 4);
    });
  },
);

dbTest("a wrong secret gets 401 UNAUTHORIZED and exit code 1", async ({ db }) => {
  await withServer(db, async (url) => {
    for (const auth of ["signature", "body", "token"]) {
      const r = await send([url, "--auth", auth, "--secret", "not-the-secret"]);
      assert.equal(r.exitCode, 1, auth);
      assert.equal(r.results[0].status, 401);
      assert.equal((r.results[0].body as { error: { code: string } }).error.code, "UNAUTHORIZED");
      assert.match(r.out, /-> 401 REJECTED/);
      assert.ok(!r.out.includes("not-the-secret"));
    }
    assert.equal(await countRows(db, "signals"), 0);
  });
});

dbTest("--dry-run prints the requests, masks the secret and sends nothing", async ({ db }) => {
  await withServer(db, async (url) => {
    for (const auth of AUTH_MODES) {
      let fetched = 0;
      const r = await send([url, "--auth", auth, "--dry-run", "-n", "2"], {
        fetch: () => {
          fetched++;
          return Promise.reject(new Error("dry run sent a request"));
        },
      });
      assert.equal(r.exitCode, 0, auth);
      assert.equal(fetched, 0);
      assert.deepEqual(r.results, []);
      assert.ok(!r.out.includes(SECRET), `${auth} printed the secret`);
      assert.match(r.out, /^POST http:\/\/127\.0\.0\.1:\d+\/webhook/);
      assert.match(r.out, /content-type: application\/json/);
      assert.match(r.out, /"symbol":"SPY"/);
      assert.match(r.out, /\(dry run: 2 requests not sent\)/);
    }
    const token = await send([url, "--auth", "token", "--dry-run"]);
    assert.match(token.out, /\/webhook\/\*\*\* *\n/);
    const body = await send([url, "--auth", "body", "--dry-run"]);
    assert.match(body.out, /"secret":"\*\*\*"/);
    assert.equal(await countRows(db, "signals"), 0);
  });
});

Deno.test("a server that is not there is reported without the secret, exit code 1", async () => {
  // Bind and release a port so nothing listens on it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const r = await send([`http://127.0.0.1:${port}/webhook`, "--auth", "token", "-n", "2"]);
  assert.equal(r.exitCode, 1);
  assert.match(r.err, /\/webhook\/\*\*\* \(token\): cannot reach the server: .*Connection refused/);
  assert.match(r.out, /2 requests: 1 x no response, 1 not sent/);
  assert.ok(!(r.out + r.err).includes(SECRET));
});

Deno.test("--file reads the body from a file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, '{"ticker":"NVDA","action":"sell","time":"{{timenow}}"}');
    const r = await send(["--file", path, "--dry-run"]);
    assert.equal(r.exitCode, 0);
    assert.match(r.out, /\n\{"ticker":"NVDA","action":"sell","time":"\{\{timenow\}\}"\}\n/);
    const missing = await send(["--file", `${path}.missing`]);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.err, /Cannot read --file /);
  } finally {
    await Deno.remove(path);
  }
});

dbTest("the CLI as a subprocess sends the sample and exits 0", async ({ db }) => {
  await withServer(db, async (url) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", "scripts/send.ts", url],
      cwd: REPO,
      env: { WEBHOOK_SECRET: SECRET, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, out + new TextDecoder().decode(stderr));
    assert.match(out, /^POST http:\/\/127\.0\.0\.1:\d+\/webhook \(signature\) -> 200 ACCEPTED in/);
    assert.match(out, /"message": "Signal received and queued for processing"/);
    assert.ok(!out.includes(SECRET));
    const [row] = await db.query<{ symbol: string; auth_method: string }>(
      "select symbol, auth_method from signals",
    );
    assert.deepEqual(row, { symbol: "SPY", auth_method: "signature" });
  });
});

dbTest(
  "--auth token puts the secret in the path of a URL with a query, never in the query",
  async ({ db }) => {
    await withServer(db, async (url) => {
      const r = await send([`${url}?source=tv`, "--auth", "token"]);
      // Appended to the whole URL, the token went into the query ("?source=tv/<secret>"),
      // where proxies log it, and the webhook was refused 401.
      assert.equal(r.exitCode, 0, `${r.out}\n${r.err}`);
      assert.match(
        r.out,
        /POST http:\/\/127\.0\.0\.1:\d+\/webhook\/\*\*\*\?source=tv \(token\) -> 200/,
      );
      assert.ok(!r.out.includes(SECRET) && !r.err.includes(SECRET));
      const [row] = await db.query<{ auth_method: string }>("select auth_method from signals");
      assert.equal(row.auth_method, "url_token");
    });
  },
);
