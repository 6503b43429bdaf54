/**
 * Database outage: the real service reaches its own Postgres database
 * through a proxy, and under a steady stream of signed webhooks the proxy
 * drops every connection and refuses new ones for a few seconds. While the
 * database is gone, every webhook is answered quickly (well inside
 * TradingView's 3 s) with 503 DATABASE_UNAVAILABLE and a Retry-After, and
 * /health says unhealthy with 503. When it returns, the same process,
 * without a restart, accepts again within seconds, /health recovers, jobs
 * claimed when the connection died are given back without waiting out the
 * claim timeout, and the pipeline drains. Every 503'd alert re-sent (as
 * TradingView does) ends stored once and decided once; nothing half-written.
 */
import assert from "node:assert/strict";
import { POSTGRES_REACHABLE, TEST_DATABASE_URL } from "../_db.ts";
import { delay, IN_CI, scratchPostgres, type Service, startService } from "../_service.ts";
import { tcpProxy } from "./_proxy.ts";
import { fakeProvider } from "./_provider.ts";
import { assertClean, audit, deliver, drained, type Sent, stream } from "./_traffic.ts";

const OUTAGE_MS = 3_000;
/** TradingView gives up on a webhook after 3 s. */
const TRADINGVIEW_TIMEOUT_MS = 3_000;

interface HealthSample {
  at: number;
  status: number | "no answer";
  body?: string;
  ms: number;
}

/**
 * Samples GET /health every 100 ms; stop() waits for a 200 after `since`
 * (at most `limitMs`), so a slow recovery is measured, not cut off.
 */
function sampleHealth(
  base: string,
): { samples: HealthSample[]; stop(since: number, limitMs: number): Promise<void> } {
  const samples: HealthSample[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5_000) });
        const body = await res.json();
        samples.push({
          at: Date.now(),
          status: res.status,
          body: body.status,
          ms: performance.now() - started,
        });
      } catch {
        samples.push({ at: Date.now(), status: "no answer", ms: performance.now() - started });
      }
      await delay(100);
    }
  })();
  return {
    samples,
    async stop(since, limitMs) {
      const until = Date.now() + limitMs;
      while (!samples.some((h) => h.at >= since && h.status === 200) && Date.now() < until) {
        await delay(50);
      }
      running = false;
      await done;
    },
  };
}

/**
 * `cut`: connections reset and refused (Postgres stopped). `stall`: silence,
 * no error (a network partition): calls hang until the probe gives up on
 * them, so the first answers come from the ingest deadline.
 */
async function outageUnderLoad(mode: "cut" | "stall"): Promise<void> {
  const scratch = await scratchPostgres("outage");
  const target = new URL(TEST_DATABASE_URL);
  const proxy = tcpProxy({ hostname: target.hostname, port: Number(target.port || 5432) });
  const viaProxy = new URL(scratch.url);
  viaProxy.host = `127.0.0.1:${proxy.port}`;
  const provider = fakeProvider(() => "ok", { okDelayMs: 20 });
  const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-outage-" });
  const prefix = `outage-${mode}-${crypto.randomUUID().slice(0, 8)}`;
  let service: Service | null = null;
  try {
    service = await startService({
      DATABASE_URL: viaProxy.toString(),
      DATA_DIR: dataDir,
      ENFORCE_MARKET_HOURS: "false",
      CONTEXT_URL: `${provider.url}/context/{symbol}`,
      CONTEXT_TTL_SECONDS: "1",
      // Recovery must not come from the claim timeout.
      JOB_CLAIM_TIMEOUT_SECONDS: "600",
    });
    const health = sampleHealth(service.base);
    const s = stream([service.base], { prefix, clients: 8, pauseMs: 50 });
    await delay(1_000);
    const cutAt = Date.now();
    if (mode === "cut") proxy.cut();
    else proxy.stall();
    await delay(OUTAGE_MS);
    const restoredAt = Date.now();
    proxy.restore();
    await delay(2_000);
    s.stop();
    await s.done;
    await health.stop(restoredAt, 10_000);

    const before = s.sent.filter((x) => x.at! < cutAt);
    const during = s.sent.filter((x) => x.at! >= cutAt + 50 && x.at! < restoredAt);
    const refused = s.sent.filter((x) => x.outcome !== 200);
    const firstAcceptedAfter = s.sent
      .filter((x) => x.at! >= restoredAt && x.status === "ACCEPTED")
      .reduce((min, x) => Math.min(min, x.at!), Infinity);
    const healthDuring = health.samples.filter((h) => h.at >= cutAt + 2_500 && h.at < restoredAt);
    const healthBack = health.samples.find((h) => h.at >= restoredAt && h.status === 200);

    // What a failure message carries, so a failed CI run says what happened when.
    const timeline = () =>
      JSON.stringify({
        cutAt,
        restoredAt,
        answers: Object.entries(Object.groupBy(
          s.sent,
          (x) => `${x.outcome} ${x.code ?? x.status ?? ""}`,
        )).map(([k, xs]) => ({
          answer: k,
          n: xs!.length,
          slowestMs: Math.round(Math.max(...xs!.map((x) => x.ms!))),
          firstAt: Math.min(...xs!.map((x) => x.at!)) - cutAt,
          lastAt: Math.max(...xs!.map((x) => x.at!)) - cutAt,
        })),
        health: health.samples.map((h) => `${h.at - cutAt}:${h.status}/${Math.round(h.ms)}`),
        log: service!.lines.filter((l) => /"level":"(WARN|ERROR)"/.test(l)).slice(-5),
        stderr: service!.errors.slice(-5),
      });

    // Before: accepted. During: 503 with a code and Retry-After, fast. After: accepted again.
    assert.ok(
      before.filter((x) => x.status === "ACCEPTED").length >= 20,
      `no steady stream: ${timeline()}`,
    );
    assert.ok(during.length >= 20, `only ${during.length} requests in the outage: ${timeline()}`);
    for (const x of refused) {
      assert.equal(x.outcome, 503, `${x.alertId}: ${x.outcome} ${x.code ?? ""}: ${timeline()}`);
      assert.equal(x.code, "DATABASE_UNAVAILABLE");
    }
    const refusedMs = refused.map((x) => x.ms!);
    const slowest503 = Math.max(...refusedMs);
    assert.ok(
      slowest503 < TRADINGVIEW_TIMEOUT_MS,
      `a 503 took ${Math.round(slowest503)} ms, past TradingView's 3 s: ${timeline()}`,
    );
    assert.ok(
      healthDuring.length > 0 &&
        healthDuring.every((h) => h.status === 503 && h.body === "unhealthy"),
      `/health during the outage: ${timeline()}`,
    );
    assert.ok(Number.isFinite(firstAcceptedAfter), `never accepted again: ${timeline()}`);
    assert.ok(healthBack, `/health never recovered: ${timeline()}`);
    const recoveryMs = firstAcceptedAfter - restoredAt;
    const healthRecoveryMs = healthBack.at - restoredAt;
    assert.ok(
      recoveryMs < 5_000,
      `first ACCEPTED ${recoveryMs} ms after the database returned: ${timeline()}`,
    );

    // TradingView re-sends every 503 (and the service takes each exactly once).
    const resent: Sent[] = [];
    for (let i = 0; i < refused.length; i += 16) {
      resent.push(
        ...await Promise.all(refused.slice(i, i + 16).map((x) => deliver(service!.base, x))),
      );
    }
    for (const r of resent) assert.equal(r.outcome, 200, `re-send of ${r.alertId}: ${r.code}`);
    const drainStarted = Date.now();
    await drained(service.base, 60_000);
    const drainMs = Date.now() - drainStarted;
    const gaveBack = service.lines.filter((l) => /Gave back \d+ claimed jobs/.test(l)).length;

    const db = await scratch.open();
    const a = await audit(db, prefix, [...s.sent.filter((x) => x.outcome === 200), ...resent]);
    const sentAlerts = new Set(s.sent.map((x) => x.alertId));
    console.log(
      `outage [postgres, ${mode === "cut" ? "connections cut" : "partition"}]: ` +
        `${sentAlerts.size} alerts sent, ` +
        `${s.sent.filter((x) => x.status === "ACCEPTED").length} acknowledged at once, ` +
        `${refused.length} answered 503 (slowest ${Math.round(slowest503)} ms, median ${
          Math.round(refusedMs.sort((x, y) => x - y)[refusedMs.length >> 1] ?? 0)
        } ms) and re-sent (${
          resent.filter((r) => r.status === "DUPLICATE").length
        } had committed), ` +
        `${a.found} found, ${a.decided} decided, ${a.lost.length} lost; ` +
        `database back -> first ACCEPTED ${recoveryMs} ms, /health 200 ${healthRecoveryMs} ms; ` +
        `drained ${drainMs} ms after the re-sends; worker gave back claims ${gaveBack} time(s)`,
    );
    assertClean(a);
    assert.equal(a.found, sentAlerts.size);
    // The same process served throughout: no restart.
    assert.equal(
      await Promise.race([service.child.status.then(() => "exited"), "alive"]),
      "alive",
    );
  } finally {
    await service?.kill9();
    proxy.close();
    await provider.close();
    await scratch.drop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name:
    "[postgres] database stopped under load: 503 fast, /health 503, recovery without restart, nothing lost",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => outageUnderLoad("cut"),
});

Deno.test({
  name:
    "[postgres] network partition under load: 503 inside 3 s, /health 503, recovery without restart, nothing lost",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => outageUnderLoad("stall"),
});
