/**
 * The operator dashboard: its files as the app serves them (types, cache,
 * CSP, no path traversal, public while the data stays behind the token), its
 * pure helpers (formatting, the SSE parser), and the page itself in a real
 * headless Chromium against the real app on a real database: it asks for
 * the token, shows health and history, then a webhook's signal appears live,
 * "pending" until the worker decides it, then its decision and the position.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Browser, chromium, type Page, type Route } from "playwright-core";
import type { Services } from "../compose.ts";
import { CONTENT_SECURITY_POLICY } from "../handlers/dashboard.ts";
import { signed, testServices } from "./_app.ts";
import { dbTest } from "./_db.ts";
import { chainBody, contextBody, MARKET_OPEN_INSTANT } from "./_pipeline.ts";
import { duration, money, ms, nyTime, price, relativeTime } from "../dashboard/format.js";
import { backoffMs, EventStream, SseParser } from "../dashboard/sse.js";
import { authRefused, normalizeToken } from "../dashboard/api.js";
import { niceTicks } from "../dashboard/chart.js";
import { componentDetail } from "../dashboard/views.js";

const TOKEN = "operator-token-for-dashboard-tests";
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url);

// ---- the files as served ------------------------------------------------------------------------

dbTest(
  "the dashboard page and its files are public, typed, uncached and under a strict CSP",
  async ({ db }) => {
    const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
    const page = await s.app.request("/");
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.headers.get("cache-control"), "no-cache");
    assert.equal(page.headers.get("content-security-policy"), CONTENT_SECURITY_POLICY);
    const csp = CONTENT_SECURITY_POLICY;
    for (const directive of ["default-src 'self'", "connect-src 'self'", "img-src 'self' data:"]) {
      assert.ok(csp.includes(directive), directive);
    }
    assert.ok(
      !csp.includes("unsafe-inline") && !csp.includes("unsafe-eval") && !csp.includes("http"),
    );
    const html = await page.text();
    assert.match(html, /<script type="module" src="\/dashboard\/app\.js"><\/script>/);
    assert.doesNotMatch(
      html,
      /<script>|<style|style="|https?:\/\//,
      "no inline code, nothing remote",
    );

    const types: Record<string, string> = {
      "app.js": "text/javascript; charset=utf-8",
      "style.css": "text/css; charset=utf-8",
      "favicon.svg": "image/svg+xml",
    };
    for (const [file, type] of Object.entries(types)) {
      const res = await s.app.request(`/dashboard/${file}`);
      assert.equal(res.status, 200, file);
      assert.equal(res.headers.get("content-type"), type, file);
      assert.equal(res.headers.get("cache-control"), "no-cache", file);
      const tag = res.headers.get("etag");
      assert.ok(tag, `${file} has an ETag`);
      await res.body?.cancel();
      const again = await s.app.request(`/dashboard/${file}`, {
        headers: { "if-none-match": tag },
      });
      assert.equal(again.status, 304, `${file} revalidates`);
    }

    // Nothing outside dashboard/, however it is spelled. "../" and "%2e%2e/" are resolved by the
    // URL parser before routing (to /app.ts: no route, behind the token); the rest reach the handler.
    for (const path of ["/dashboard/../app.ts", "/dashboard/%2e%2e/deno.json"]) {
      const res = await s.app.request(path);
      assert.equal(res.status, 401, path);
      assert.doesNotMatch(await res.text(), /import|createApp|nodeModulesDir/, path);
    }
    for (
      const path of [
        "/dashboard/..%2fapp.ts",
        "/dashboard/..%2f..%2fetc%2fpasswd",
        "/dashboard/.hidden.js",
        "/dashboard/nope.js",
        "/dashboard/app.ts",
        "/dashboard/",
        "/dashboard/sub/app.js",
      ]
    ) {
      const res = await s.app.request(path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(await res.text(), /import|createApp|root:/, path);
    }

    // The data stays behind the token.
    for (const path of ["/signals", "/metrics", "/events", "/positions"]) {
      const res = await s.app.request(path);
      assert.equal(res.status, 401, path);
      await res.body?.cancel();
    }
  },
  { drivers: ["pglite"] },
);

// ---- pure helpers -------------------------------------------------------------------------------

Deno.test("dashboard formatting shows New York time, relative times, money and latencies", () => {
  const now = Date.parse("2026-03-10T14:30:00Z"); // 10:30 EDT
  assert.equal(nyTime("2026-03-10T14:29:55Z", now), "10:29:55");
  assert.equal(nyTime("2026-03-09T19:59:00Z", now), "Mar 9 15:59:00");
  assert.equal(nyTime("2026-01-15T14:30:00Z", Date.parse("2026-01-15T15:00:00Z")), "09:30:00"); // EST
  assert.equal(nyTime(null, now), "—");
  // Another year says which: a New Year's Eve close seen in January.
  assert.equal(nyTime("2025-12-31T20:59:00Z", now), "Dec 31, 2025 15:59:00");
  assert.equal(nyTime("2026-01-01T04:59:00Z", now), "Dec 31, 2025 23:59:00"); // still 2025 in NY
  assert.equal(nyTime("2026-01-01T05:00:00Z", now), "Jan 1 00:00:00");
  assert.equal(relativeTime("2026-03-10T14:29:58Z", now), "just now");
  assert.equal(relativeTime("2026-03-10T14:29:18Z", now), "42 s ago");
  assert.equal(relativeTime("2026-03-10T14:25:00Z", now), "5 min ago");
  assert.equal(relativeTime("2026-03-10T11:00:00Z", now), "3 h ago");
  assert.equal(relativeTime("2026-03-10T14:31:00Z", now), "in 1 min");
  assert.equal(duration(172_800), "2 d");
  assert.equal(money(1234.5), "$1,234.50");
  assert.equal(money(1234.5, { signed: true }), "+$1,234.50");
  assert.equal(money(-57), "\u2212$57.00");
  assert.equal(money(-0.001, { signed: true }), "$0.00");
  assert.equal(money(null), "—");
  assert.equal(price(487.1), "487.10");
  assert.equal(ms(0.42), "0.42 ms");
  assert.equal(ms(12.34), "12.3 ms");
  assert.equal(ms(184.4), "184 ms");
  assert.equal(ms(1240), "1.24 s");
  assert.deepEqual(niceTicks(0, 100, 5), [0, 25, 50, 75, 100]);
  assert.deepEqual(niceTicks(-57, 85.8, 4), [-100, -50, 0, 50, 100]);
});

Deno.test("the dashboard names the symbols whose market data has fallen behind", () => {
  const base = { status: "stale", age_seconds: 4, max_age_seconds: 900, symbols: 6 };
  assert.equal(
    componentDetail("context", { ...base, stale_symbols: [], stale_symbol_count: 0 }),
    "age 4 s / max 15 min · 6 sym",
  );
  const behind = [
    { symbol: "SPY", age_seconds: 7200 },
    { symbol: "QQQ", age_seconds: 1200 },
    { symbol: "IWM", age_seconds: 1000 },
    { symbol: "DIA", age_seconds: 950 },
  ];
  assert.equal(
    componentDetail("gex", { ...base, stale_symbols: behind.slice(0, 1), stale_symbol_count: 1 }),
    "age 4 s / max 15 min · 6 sym · behind: SPY 2 h",
  );
  assert.equal(
    componentDetail("context", { ...base, stale_symbols: behind, stale_symbol_count: 25 }),
    "age 4 s / max 15 min · 6 sym · behind: SPY 2 h, QQQ 20 min, IWM 16 min +22",
  );
  // An answer from before the per-symbol check: as it was shown then.
  assert.equal(componentDetail("context", base), "age 4 s / max 15 min · 6 sym");
});

Deno.test("property: a dashboard time names its year exactly when New York's year is not now's", () => {
  const year = (t: number) =>
    new Intl.DateTimeFormat("en-US", { timeZone: "America/New_York", year: "numeric" }).format(t);
  const instant = fc.integer({ min: Date.parse("1990-01-01"), max: Date.parse("2090-01-01") });
  fc.assert(
    fc.property(instant, instant, (t, now) => {
      const shown = nyTime(t, now);
      assert.equal(shown.includes(`, ${year(t)} `), year(t) !== year(now), shown);
      assert.ok(shown.endsWith(nyTime(t, t)), shown); // the time of day is always there
    }),
    { numRuns: 300 },
  );
});

Deno.test("the dashboard's SSE parser handles any chunking, comments, ids and multi-line data", () => {
  const stream = 'event: ready\ndata: {"cursor":"5-1"}\nretry: 3000\n\n' +
    ": heartbeat\n\n" +
    'id: 6-2\r\nevent: signal\r\ndata: {"a":1,\r\ndata: "b":2}\r\n\r\n' +
    "event: ignored-without-data\n\n" +
    // Bare CRs end lines too; a CR at a chunk's end waits to see whether an LF follows.
    "id: 7-3\rdata:plain\r\r\n";
  const expected = [
    { type: "ready", data: '{"cursor":"5-1"}', id: "" },
    { type: "signal", data: '{"a":1,\n"b":2}', id: "6-2" },
    { type: "message", data: "plain", id: "7-3" },
  ];
  // Whole, one character at a time, and in every two-piece split.
  const whole = new SseParser();
  assert.deepEqual(whole.push(stream), expected);
  assert.equal(whole.retry, 3000);
  const bytewise = new SseParser();
  assert.deepEqual([...stream].flatMap((ch) => bytewise.push(ch)), expected);
  for (let i = 0; i <= stream.length; i++) {
    const p = new SseParser();
    assert.deepEqual(
      [...p.push(stream.slice(0, i)), ...p.push(stream.slice(i))],
      expected,
      `split at ${i}`,
    );
  }
});

Deno.test("the dashboard reconnects with doubling, capped, jittered delays", () => {
  assert.equal(backoffMs(1, 1000, 30_000, () => 1), 1000);
  assert.equal(backoffMs(3, 1000, 30_000, () => 1), 4000);
  assert.equal(backoffMs(3, 1000, 30_000, () => 0), 2000);
  assert.equal(backoffMs(12, 1000, 30_000, () => 1), 30_000);
});

dbTest(
  "the dashboard's stream given an id the server never sent starts from now and says so",
  async ({ db }) => {
    const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, s.app.fetch);
    const lost: string[] = [];
    const states: string[] = [];
    const ready = Promise.withResolvers<void>();
    const stream = new EventStream({
      url: `http://127.0.0.1:${server.addr.port}/events`,
      headers: () => ({ authorization: `Bearer ${TOKEN}` }),
      onEvent() {},
      onState: (state: string) => states.push(state),
      onCursorLost: () => lost.push("lost"),
      onReady: () => ready.resolve(),
    });
    // A cursor from a database this server does not have: a transaction it has not begun.
    stream.lastEventId = "18446744073709551615-1";
    stream.start();
    try {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        ready.promise,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not live: ${states.join(", ")}`)), 5000);
        }),
      ]);
      clearTimeout(timer);
      assert.deepEqual(lost, ["lost"]);
      assert.ok(!states.includes("reconnecting"), states.join(", "));
      assert.notEqual(stream.lastEventId, "18446744073709551615-1");
    } finally {
      stream.stop();
      await server.shutdown();
      await s.close();
    }
  },
);

dbTest(
  "the dashboard tells the server's refusals of a token from other bad requests, and cleans a pasted token",
  async ({ db }) => {
    const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
    const get = (path: string, authorization?: string) =>
      s.app.request(path, { headers: authorization ? { authorization } : {} });
    for (
      const [path, authorization, refused] of [
        ["/signals", undefined, true], // 401: no token
        ["/signals", "Bearer not-the-token", true], // 401: wrong token
        ["/signals", "Bearer Bearer abc", true], // 400: a header the server cannot read
        ["/signals", "abc", true], // 400
        ["/signals?cursor=abc", `Bearer ${TOKEN}`, false], // 400, but the token was fine
        ["/signals", `Bearer ${TOKEN}`, false],
      ] as const
    ) {
      const res = await get(path, authorization);
      assert.equal(authRefused(res), refused, `${path} ${authorization}: ${res.status}`);
      await res.body?.cancel();
    }
    assert.equal(normalizeToken(`  Bearer ${TOKEN}\n`), TOKEN);
    assert.equal(normalizeToken(`bearer   ${TOKEN}`), TOKEN);
    assert.equal(normalizeToken(`Authorization: Bearer ${TOKEN}`), TOKEN);
    assert.equal(normalizeToken(TOKEN), TOKEN);
  },
  { drivers: ["pglite"] },
);

// ---- the page in a real browser -----------------------------------------------------------------

const chromiumInstalled = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (!chromiumInstalled) {
  if (Deno.env.get("CI") === "true") {
    Deno.test("Chromium is installed for the dashboard browser test", () => {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium, then run again`);
    });
  } else {
    console.warn(
      `%c${CHROMIUM} not found: the dashboard browser test is SKIPPED (apt-get install -y chromium).`,
      "color: yellow",
    );
  }
}

type Clock = ReturnType<typeof tradingClock>;

/** A clock that runs at real speed from 10:00 New York on a trading day and can jump ahead. */
function tradingClock() {
  let offset = MARKET_OPEN_INSTANT - 30 * 60_000 - Date.now();
  return {
    now: () => Date.now() + offset,
    /** Moves on to `hh:mm` New York time that day (never back). */
    at(hhmm: string) {
      offset = Math.max(offset, Date.parse(`2026-03-10T${hhmm}:00-04:00`) - Date.now());
    },
  };
}

/** The running app over HTTP, as TradingView and an operator's scripts reach it. */
function client(base: string, clock: Clock) {
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
    await res.body?.cancel();
  };
  const webhook = async (init: RequestInit) => {
    const res = await fetch(`${base}/webhook`, init);
    return { status: res.status, json: await res.json() as Record<string, string> };
  };
  return {
    webhook,
    /** Fresh context and an option chain (positive GEX, walls far away) for `symbol` at `spot`. */
    async market(symbol: string, spot: number) {
      await post("/context", contextBody(symbol, spot, clock.now()));
      await post("/gex/chain", chainBody(symbol, spot, clock.now()));
    },
    /** A correctly signed alert stamped with the clock; returns its signal id. */
    async send(fields: Record<string, unknown>): Promise<string> {
      const body = JSON.stringify({
        timeframe: "5m",
        timestamp: new Date(clock.now()).toISOString(),
        metadata: { score: 85, confidence: 0.85 },
        ...fields,
      });
      const { status, json } = await webhook(await signed(body));
      assert.equal(status, 200, JSON.stringify(json));
      return json.signal_id;
    },
  };
}

/**
 * A morning decided before the page opens: two round trips (IWM won 42 x 3.40 = 142.80,
 * QQQ's put lost 19 x 3.00 = 57.00), a low-confidence reject, an open QQQ call, and two
 * refused webhooks. Leaves the clock at 10:30 with fresh SPY and QQQ data.
 */
async function seedMorning(s: Services, api: ReturnType<typeof client>, clock: Clock) {
  const alerts: [string, string, number, Record<string, unknown>][] = [
    ["10:02", "IWM", 200, { direction: "CALL", price: 200 }],
    ["10:08", "IWM", 203.4, { direction: "EXIT", action: "EXIT", price: 203.4 }],
    ["10:12", "QQQ", 430, { direction: "PUT", price: 430 }],
    ["10:15", "SPY", 499, { direction: "CALL", metadata: { confidence: 0.3 } }],
    ["10:19", "QQQ", 433, { direction: "EXIT", action: "EXIT", price: 433 }],
    ["10:22", "QQQ", 432, { direction: "CALL", price: 432 }],
  ];
  for (const [time, symbol, spot, fields] of alerts) {
    clock.at(time);
    await api.market(symbol, spot);
    await api.send({ symbol, ...fields });
    await s.worker.runUntilIdle();
  }
  clock.at("10:30");
  await api.market("QQQ", 433.6);
  await api.market("SPY", 500);
  const invalid = JSON.stringify({ symbol: "SPY", direction: "SIDEWAYS" });
  assert.equal((await api.webhook(await signed(invalid))).status, 422);
  const forged = JSON.stringify({ symbol: "SPY", direction: "CALL" });
  assert.equal(
    (await api.webhook(await signed(forged, { secret: "not-the-secret-0000" }))).status,
    401,
  );
}

/**
 * Everything that went wrong in the page: console errors and warnings, uncaught
 * exceptions, failed requests and HTTP errors. Until `unlocked`, the 401s that make
 * the page ask for the token are expected.
 */
function watchProblems(page: Page) {
  const watch = { unlocked: false, problems: [] as string[] };
  const add = (problem: string) => watch.problems.push(problem);
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    if (!watch.unlocked && /status of 401/.test(m.text())) return;
    add(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => add(`page error: ${e.message}`));
  page.on("requestfailed", (r) => add(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400 && !(r.status() === 401 && !watch.unlocked)) {
      add(`HTTP ${r.status()}: ${r.url()}`);
    }
  });
  return watch;
}

/**
 * In front of the real app: lets the test cut every open `/events` stream (as a proxy or a
 * network blip would) and hold new ones back until it says so.
 */
class CuttableEvents {
  #cuts = new Set<() => void>();
  #gate: Promise<void> = Promise.resolve();

  async handle(req: Request, app: (req: Request) => Response | Promise<Response>) {
    if (new URL(req.url).pathname !== "/events") return await app(req);
    await this.#gate;
    const res = await app(req);
    if (!res.body || res.status !== 200) return res;
    const reader = res.body.getReader();
    let cut = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        cut = () => {
          controller.close();
          reader.cancel().catch(() => {});
        };
        this.#cuts.add(cut);
      },
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => {
        this.#cuts.delete(cut);
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  }

  /** Ends every open stream and holds new ones until the returned function is called. */
  cut(): () => void {
    let open = () => {};
    this.#gate = new Promise((resolve) => (open = resolve));
    for (const cut of this.#cuts) cut();
    this.#cuts.clear();
    return open;
  }
}

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("Timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 50));
  }
}

const artifact = (name: string) => new URL(name, ARTIFACTS).pathname;

if (chromiumInstalled) {
  dbTest(
    "the dashboard asks for the token, then shows a live signal, its decision and the position",
    async ({ db }) => {
      const clock = tradingClock();
      const s = await testServices(db, { now: clock.now, env: { OPERATOR_TOKEN: TOKEN } });
      const events = new CuttableEvents();
      const server = Deno.serve(
        { port: 0, hostname: "127.0.0.1", onListen() {} },
        (req) => events.handle(req, s.app.fetch),
      );
      const base = `http://127.0.0.1:${server.addr.port}`;
      const api = client(base, clock);
      let browser: Browser | null = null;
      let workerStarted = false;
      try {
        await seedMorning(s, api, clock);
        await Deno.mkdir(ARTIFACTS, { recursive: true });
        browser = await chromium.launch({
          executablePath: CHROMIUM,
          headless: true,
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
          ],
        });
        const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
        const watch = watchProblems(page);
        const feed = page.locator("#feed-body tr");
        const positions = page.locator("#positions-body tr");

        // It asks for the token, and shows the (public) health meanwhile.
        await page.goto(base);
        await page.locator("#token-dialog[open]").waitFor();
        await page.locator("#health-pill.tone-ok, #health-pill.tone-warn").waitFor();
        assert.equal(await page.locator("[data-component]").count(), 4);
        assert.match(await page.locator("#conn").innerText(), /Locked/);

        watch.unlocked = true;
        await page.locator("#token-input").fill(TOKEN);
        await page.locator("#token-form button[type=submit]").click();
        await page.locator("#token-dialog").waitFor({ state: "hidden" });
        await page.locator("#conn.tone-ok").waitFor();
        assert.equal(await page.locator("#conn").innerText(), "Live");
        assert.equal(await page.evaluate("sessionStorage.length"), 1);

        // History: six signals with their decisions, the open QQQ call, refusals, PnL, latency.
        await feed.nth(5).waitFor();
        assert.equal(await feed.count(), 6);
        assert.equal(await page.locator("#feed-body .badge.enter").count(), 3);
        assert.equal(await page.locator("#feed-body .badge.exit").count(), 2);
        assert.match(
          await page.locator("#feed-body .outcome-reject").innerText(),
          /LOW_CONFIDENCE/,
        );
        await positions.filter({ hasText: "QQQ" }).waitFor();
        await page.locator("#errors-list li").nth(1).waitFor();
        assert.match(
          await page.locator("#errors-list").innerText(),
          /UNAUTHORIZED[\s\S]*VALIDATION_FAILED/,
        );
        await page.locator("#pnl-total", { hasText: "+$85.80" }).waitFor();
        await page.locator("#pnl-chart circle").nth(1).waitFor();
        await page.locator("#latency-chart rect.bar").nth(5).waitFor();
        await page.locator('#latency-body tr[data-stage="market_hours"]').waitFor();

        // Live: a new signal appears on top without a reload, pending while no worker runs.
        const signalId = await api.send({ symbol: "SPY", direction: "CALL", price: 499.2 });
        const row = page.locator(`#feed-body tr[data-id="${signalId}"]`);
        await row.waitFor();
        assert.equal(await feed.first().getAttribute("data-id"), signalId, "newest on top");
        assert.match(await row.innerText(), /SPY[\s\S]*CALL[\s\S]*499\.20[\s\S]*pending/);
        await page.locator(".feed").screenshot({ path: artifact("dashboard-pending.png") });

        // The worker decides it: the decision fills in, then the position with its mark.
        await s.worker.start();
        workerStarted = true;
        await row.locator(".badge.enter").waitFor();
        assert.match(await row.innerText(), /ENTER[\s\S]*ENTRY_APPROVED/);
        // 10,000 x 0.85 / 499.20 -> 17 units, marked at the 500.00 spot: +$13.60.
        const spy = positions.filter({ hasText: "SPY" });
        await spy.locator(".pnl", { hasText: "+$13.60" }).waitFor();
        assert.match(await spy.innerText(), /17[\s\S]*499\.20[\s\S]*500\.00/);
        assert.equal(await positions.count(), 2);
        await page.locator(".kpi", { hasText: "Signals" }).getByText("7", { exact: true })
          .waitFor();

        await page.screenshot({ path: artifact("dashboard.png"), fullPage: true });
        // A laptop half-screen: one column, nothing wider than the window.
        await page.setViewportSize({ width: 760, height: 1000 });
        assert.ok(await page.evaluate("document.documentElement.scrollWidth <= innerWidth"));
        await page.screenshot({ path: artifact("dashboard-narrow.png"), fullPage: true });
        assert.deepEqual(watch.problems, []);

        // The stream drops: the page says so, reconnects by itself with Last-Event-ID, and shows
        // what happened meanwhile (an exit closing the SPY call), without a reload.
        const resumedFrom: string[] = [];
        page.on("request", (r) => {
          if (r.url().endsWith("/events")) resumedFrom.push(r.headers()["last-event-id"] ?? "");
        });
        const reopen = events.cut();
        await page.locator("#conn.tone-warn").waitFor();
        const missed = await api.send({
          symbol: "SPY",
          direction: "EXIT",
          action: "EXIT",
          price: 501,
        });
        await until(async () =>
          (await s.db.query("select 1 from decisions where signal_id = $1::uuid", [missed]))
            .length === 1
        );
        assert.equal(await page.locator(`tr[data-id="${missed}"]`).count(), 0, "unseen while cut");
        reopen();
        await page.locator("#conn.tone-ok").waitFor();
        await page.locator(`tr[data-id="${missed}"] .badge.exit`).waitFor();
        assert.ok(resumedFrom.length > 0, "reconnected");
        assert.ok(resumedFrom.every((id) => /^\d+-\d+$/.test(id)), String(resumedFrom));
        await positions.filter({ hasText: "SPY" }).waitFor({ state: "detached" });
        await page.locator("#pnl-chart circle").nth(2).waitFor();
        assert.deepEqual(watch.problems, []);

        // "Forget token" drops the token and everything loaded with it, and asks again. Closing
        // the stream is an abort the page asked for, the one failure allowed here.
        await page.locator("#forget").click();
        await page.locator("#token-dialog[open]").waitFor();
        assert.equal(await page.evaluate("sessionStorage.length"), 0);
        assert.equal(await feed.count(), 0);
        assert.equal(await positions.count(), 0);
        assert.deepEqual(watch.problems.filter((p) => !/\/events net::ERR_ABORTED/.test(p)), []);
      } finally {
        await browser?.close();
        if (workerStarted) await s.worker.stop();
        await server.shutdown();
      }
    },
    { drivers: ["pglite", "postgres"] },
  );
}

/** A fresh page in headless Chromium on a server for `s.app`; both closed afterwards. */
async function onPage(s: Services, use: (page: Page, base: string) => Promise<void>) {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, s.app.fetch);
  let browser: Browser | null = null;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    });
    await use(await browser.newPage(), `http://127.0.0.1:${server.addr.port}`);
  } finally {
    await browser?.close();
    await server.shutdown();
  }
}

/** A position-opened event on the outbox, and the NOTIFY that wakes the dashboard's stream. */
async function positionOpened(s: Services) {
  await s.db.query(
    `insert into events (kind, symbol, payload)
     values ('position', 'SPY', jsonb_build_object('change', 'opened',
       'id', gen_random_uuid(), 'symbol', 'SPY', 'direction', 'CALL', 'quantity', 1,
       'entry_price', 100, 'opened_at', now(), 'is_closed', false))`,
  );
  await s.db.query("select pg_notify('optionstrat_events', '')");
}

/** `onPage`, on the dashboard with TOKEN already given and its live stream connected. */
function onDashboard(
  s: Services,
  use: (page: Page) => Promise<void>,
  options: { fakeClock?: boolean } = {},
) {
  return onPage(s, async (page, base) => {
    // The page's timers then move only when the test says (page.clock.runFor).
    if (options.fakeClock) await page.clock.install();
    await page.addInitScript(
      `sessionStorage.setItem("optionstrat.operatorToken", ${JSON.stringify(TOKEN)})`,
    );
    await page.goto(base);
    await page.locator("#conn.tone-ok").waitFor();
    await use(page);
  });
}

if (chromiumInstalled) {
  dbTest(
    "the dashboard takes a token pasted with its Bearer prefix, and asks again for one it cannot send",
    async ({ db }) => {
      const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
      await onPage(s, async (page, base) => {
        await page.goto(base);
        const dialog = page.locator("#token-dialog[open]");
        await dialog.waitFor();

        // Copied from a curl line: "Bearer <token>", with a stray space.
        await page.locator("#token-input").fill(` Bearer ${TOKEN} `);
        await page.locator("#token-form button[type=submit]").click();
        await page.locator("#conn.tone-ok").waitFor({ timeout: 5000 });
        assert.equal(
          await page.evaluate(`sessionStorage.getItem("optionstrat.operatorToken")`),
          TOKEN,
        );

        // A smart quote cannot go into a header (fetch throws): the page asks again.
        await page.locator("#forget").click();
        await dialog.waitFor();
        await page.locator("#token-input").fill("operator\u2019s-token-0123456789");
        await page.locator("#token-form button[type=submit]").click();
        await page.locator("#token-error", { hasText: "not accepted" }).waitFor({ timeout: 5000 });
        await dialog.waitFor();
        assert.match(await page.locator("#conn").innerText(), /Locked/);
      });
    },
    { drivers: ["pglite"] },
  );
}

if (chromiumInstalled) {
  dbTest(
    "the dashboard's PnL chart keeps the newest closes, not every close of the day",
    async ({ db }) => {
      const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
      await onDashboard(s, async (page) => {
        // A long day's closes, as the outbox sends them: 600 closed positions, the last on ZZZ.
        await s.db.query(
          `insert into events (kind, symbol, payload)
           select 'position', sym, jsonb_build_object('change', 'closed', 'id', gen_random_uuid(),
             'symbol', sym, 'direction', 'CALL', 'quantity', 1, 'entry_price', 100,
             'opened_at', at - interval '1 minute', 'is_closed', true, 'exit_price', 101,
             'closed_at', at, 'realized_pnl', 1)
           from (select g, case when g = 600 then 'ZZZ' else 'SPY' end as sym,
                   timestamptz '2026-03-10 14:00:00Z' + g * interval '20 seconds' as at
                 from generate_series(1, 600) g) x
           order by g`,
        );
        await s.db.query("select pg_notify('optionstrat_events', '')");
        await page.locator("#pnl-chart title", { hasText: "ZZZ" }).waitFor({ state: "attached" });
        assert.equal(await page.locator("#pnl-chart circle").count(), 500);
      });
    },
    { drivers: ["pglite"] },
  );
}

if (chromiumInstalled) {
  dbTest(
    "the dashboard's figures refresh while events keep coming, not only once they pause",
    async ({ db }) => {
      const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
      await onDashboard(s, async (page) => {
        let metricsLoads = 0;
        page.on("request", (req) => {
          if (new URL(req.url()).pathname === "/metrics") metricsLoads++;
        });
        // A busy open: a position event every 100 ms for 3 s, well inside the 10 s poll.
        for (let i = 0; i < 30; i++) {
          await positionOpened(s);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(metricsLoads >= 2, `${metricsLoads} refreshes of /metrics during 3 s of events`);
      });
    },
    { drivers: ["pglite"] },
  );
}

if (chromiumInstalled) {
  dbTest(
    "a refresh the service refuses (503 QUERY_TIMEOUT) is shown with its reason until one succeeds",
    async ({ db }) => {
      const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
      await onDashboard(s, async (page) => {
        // The answer a read past READ_QUERY_TIMEOUT_MS gets.
        await page.route("**/positions?*", (route) =>
          route.fulfill({
            status: 503,
            contentType: "application/json",
            body: JSON.stringify({
              status: "REJECTED",
              correlation_id: "c",
              error: { code: "QUERY_TIMEOUT", message: "The query did not finish in time" },
            }),
          }));
        await positionOpened(s); // a position change refreshes the figures
        const updated = page.locator("#updated.refresh-failed");
        await updated.waitFor({ timeout: 5000 });
        assert.match(
          await updated.innerText(),
          /last refresh failed: GET \/positions\?status=open&limit=500: HTTP 503 QUERY_TIMEOUT: The query did not finish in time/,
        );

        await page.unroute("**/positions?*");
        await positionOpened(s);
        await page.locator("#updated:not(.refresh-failed)").waitFor({ timeout: 5000 });
        assert.match(await page.locator("#updated").innerText(), /^Updated .* ET$/);
      });
    },
    { drivers: ["pglite"] },
  );
}

if (chromiumInstalled) {
  dbTest(
    "the dashboard's periodic refresh waits for a slow one instead of piling reads on it",
    async ({ db }) => {
      const s = await testServices(db, { env: { OPERATOR_TOKEN: TOKEN } });
      await onDashboard(s, async (page) => {
        await page.locator("#updated", { hasText: "Updated" }).waitFor();
        // From now on /metrics never answers, as a read stuck until its deadline.
        const held: Route[] = [];
        await page.route("**/metrics", (route) => void held.push(route));
        // Two ticks (the stream's own watchdog, 45 s of silence, stays out of it).
        for (let i = 0; i < 2; i++) await page.clock.runFor(10_000);
        await until(async () => held.length >= 1);
        await page.clock.runFor(1000);
        assert.equal(held.length, 1, "one refresh in flight, not one per 10 s");

        // Once it is answered, the next tick refreshes again.
        for (const route of held) await route.continue();
        await page.unroute("**/metrics");
        let after = 0;
        page.on("request", (req) => {
          if (new URL(req.url()).pathname === "/metrics") after++;
        });
        await page.clock.runFor(10_000);
        await until(async () => after >= 1);
      }, { fakeClock: true });
    },
    { drivers: ["pglite"] },
  );
}
