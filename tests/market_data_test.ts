/**
 * Market data timed ahead of the server's clock: refused when pushed or
 * fetched, and never used when already stored. Such data never goes stale,
 * and as the newest row it would hide every correct snapshot after it.
 */
import assert from "node:assert/strict";
import type { Services } from "../compose.ts";
import fc from "fast-check";
import { isStale, MARKET_DATA_FUTURE_SKEW_SECONDS } from "../core/context.ts";
import { insertContextSnapshot } from "../db/market_data.ts";
import { DatabaseUnavailableError } from "../db/port.ts";
import { createContextProvider } from "../providers/context.ts";
import { chainUrl, createGexProvider } from "../providers/gex.ts";
import { CHAIN_MAX_BODY_BYTES, CONTEXT_MAX_BODY_BYTES } from "../read_body.ts";
import { countRows } from "./_app.ts";
import { aroundQueries, dbTest } from "./_db.ts";
import { chainBody, clock, contextBody, pipelineServices, pushContext, send } from "./_pipeline.ts";

const HOUR = 3600_000;

/** POSTs `body` as JSON to the app; the status and the parsed answer. */
async function postJson(s: Services, path: string, body: unknown) {
  const res = await s.app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("property: data is usable only from maxAge before now to the skew after it", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
      fc.integer({ min: -10 * HOUR, max: 10 * HOUR }),
      fc.integer({ min: 1, max: 86_400 }),
      (now, offsetMs, maxAgeSeconds) => {
        const asOf = new Date(now + offsetMs).toISOString();
        const usable = offsetMs >= -maxAgeSeconds * 1000 &&
          offsetMs <= MARKET_DATA_FUTURE_SKEW_SECONDS * 1000;
        assert.equal(isStale(asOf, now, maxAgeSeconds), !usable);
      },
    ),
    { numRuns: 500 },
  );
  const now = Date.parse("2026-03-10T14:30:00Z");
  assert.equal(isStale("2026-03-10T14:31:00Z", now, 900), false, "60 s ahead: clock skew");
  assert.equal(isStale("2026-03-10T14:31:01Z", now, 900), true);
  // 10:30 New York written as if it were UTC: four hours in the future.
  assert.equal(isStale("2026-03-10T18:30:00Z", now, 900), true);
  assert.equal(isStale("not a time", now, 900), true);
});

dbTest(
  "pushed market data timed ahead of the clock is refused, none of the push stored",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const post = (path: string, body: unknown) => postJson(s, path, body);
    const ahead = c.now() + 4 * HOUR;

    const batch = await post("/context", [
      contextBody("SPY", 500, c.now()),
      contextBody("QQQ", 400, ahead),
    ]);
    assert.equal(batch.status, 422);
    assert.equal(batch.body.error.code, "VALIDATION_FAILED");
    assert.equal(batch.body.error.issues[0].path, "1.asOf");
    assert.match(batch.body.error.issues[0].message, /14400 s ahead/);
    assert.equal(await countRows(db, "context_snapshots"), 0, "SPY's snapshot was stored");

    const chain = await post("/gex/chain", chainBody("SPY", 500, ahead));
    assert.equal(chain.status, 422);
    assert.equal(chain.body.error.issues[0].path, "asOf");
    assert.equal(await countRows(db, "gex_signals"), 0);

    // Within the skew (a sender's clock a little ahead) is taken.
    assert.equal((await post("/context", contextBody("SPY", 500, c.now() + 30_000))).status, 201);
    assert.equal((await post("/gex/chain", chainBody("SPY", 500, c.now() + 30_000))).status, 201);
  },
);

dbTest(
  "pushed market data the database cannot hold is refused 422, never a 500, none of the push stored",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const post = (path: string, body: unknown) => postJson(s, path, body);
    // Times zod takes as ISO 8601 but Postgres has no year for (0000, or 0001 moved back
    // by its offset), and a NUL, which no text column stores.
    const unstorable: [Record<string, unknown>, string][] = [
      [{ asOf: "0000-06-01T00:00:00Z" }, "asOf"],
      [{ asOf: "0001-01-01T00:00:00+01:00" }, "asOf"],
      [{ source: "feed\u0000" }, "source"],
    ];
    for (const [fields, field] of unstorable) {
      const batch = await post("/context", [
        contextBody("SPY", 500, c.now()),
        { ...contextBody("QQQ", 400, c.now()), ...fields },
      ]);
      assert.equal(batch.status, 422, `${JSON.stringify(fields)}: ${JSON.stringify(batch.body)}`);
      assert.equal(batch.body.error.code, "VALIDATION_FAILED");
      assert.equal(batch.body.error.issues[0].path, `1.${field}`);
      assert.equal(await countRows(db, "context_snapshots"), 0, "SPY's snapshot was stored");
    }
    for (const asOf of ["0000-06-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]) {
      const chain = await post("/gex/chain", { ...chainBody("SPY", 500, c.now()), asOf });
      assert.equal(chain.status, 422, `${asOf}: ${JSON.stringify(chain.body)}`);
      assert.equal(chain.body.error.issues[0].path, "asOf");
      assert.equal(await countRows(db, "gex_signals"), 0);
    }
  },
);

dbTest(
  "a pushed context over 1 MiB or chain over 64 MiB is 413 PAYLOAD_TOO_LARGE, nothing stored",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const post = async (path: string, json: unknown, size: number) => {
      const res = await s.app.request(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(json).padEnd(size),
      });
      return { status: res.status, body: await res.json() };
    };
    const context = contextBody("SPY", 500, c.now());
    const tooLarge = await post("/context", context, CONTEXT_MAX_BODY_BYTES + 1);
    assert.equal(tooLarge.status, 413, JSON.stringify(tooLarge.body));
    assert.equal(tooLarge.body.error.code, "PAYLOAD_TOO_LARGE");
    const chain = chainBody("SPY", 500, c.now());
    assert.equal((await post("/gex/chain", chain, CHAIN_MAX_BODY_BYTES + 1)).status, 413);
    assert.equal(await countRows(db, "context_snapshots"), 0);
    assert.equal(await countRows(db, "gex_signals"), 0);

    assert.equal((await post("/context", context, CONTEXT_MAX_BODY_BYTES)).status, 201);
    assert.equal((await post("/gex/chain", chain, CHAIN_MAX_BODY_BYTES)).status, 201);
  },
);

dbTest(
  "a context batch whose write fails part way is stored not at all: the re-send stores it once",
  async ({ db }) => {
    // The database goes away after the batch's first snapshot was written.
    let inserts = 0;
    const flaky = aroundQueries(db, (text, run) => {
      if (text.includes("insert into context_snapshots") && ++inserts === 2) {
        return Promise.reject(new DatabaseUnavailableError("connection lost"));
      }
      return run();
    }, { inTransactions: true });
    const c = clock();
    const s = await pipelineServices(flaky, c);
    const batch = [contextBody("SPY", 500, c.now()), contextBody("QQQ", 400, c.now())];
    const failed = await postJson(s, "/context", batch);
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(await countRows(db, "context_snapshots"), 0, "half the batch was stored");
    assert.equal((await postJson(s, "/context", batch)).status, 201);
    assert.equal(await countRows(db, "context_snapshots"), 2);
  },
);

dbTest(
  "a pushed context takes the trend words feeds use, and a refusal names the field at fault",
  async ({ db }) => {
    const s = await pipelineServices(db, clock());
    const post = (body: unknown) => postJson(s, "/context", body);
    for (const [word, trend] of [["bullish", "UP"], ["Bearish", "DOWN"], ["flat", "NEUTRAL"]]) {
      const stored = await post({ symbol: "SPY", spot: 512.5, vix: 15.2, trend: word });
      assert.equal(stored.status, 201, JSON.stringify(stored.body));
      assert.equal(stored.body.snapshots[0].trend, trend);
    }
    for (
      const [body, path] of [
        [{ symbol: "SPY", spot: 512.5, trend: "sideways-ish" }, "trend"],
        [{ spot: 512.5 }, "symbol"],
        [{ symbol: "SPY", spot: "512.5" }, "spot"],
        [[{ symbol: "SPY", spot: 1 }, { symbol: "QQQ" }], "1.spot"],
      ] as const
    ) {
      const refused = await post(body);
      assert.equal(refused.status, 422);
      assert.equal(refused.body.error.issues[0].path, path, JSON.stringify(refused.body));
    }
    const trend = await post({ symbol: "SPY", spot: 512.5, trend: "sideways-ish" });
    assert.match(trend.body.error.issues[0].message, /UP, DOWN or NEUTRAL/);
  },
);

dbTest(
  "a stale context spot values no open position: flagged in /positions, unmarked in /metrics",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c, { CONTEXT_MAX_AGE_SECONDS: "900" });
    await pushContext(s, c, "IWM", 220);
    await send(s, c, { symbol: "IWM", direction: "CALL", price: 220.1 });
    await s.worker.runUntilIdle();
    const read = async (path: string) => await (await s.app.request(path)).json();

    const [fresh] = (await read("/positions?status=open")).items;
    assert.equal(fresh.mark, 220);
    assert.equal(fresh.mark_stale, false);
    assert.equal(typeof fresh.unrealized_pnl, "number");
    assert.equal((await read("/metrics")).positions.unmarkedPositions, 0);

    c.advance(901_000);
    const [stale] = (await read("/positions?status=open")).items;
    assert.equal(stale.mark, 220);
    assert.equal(stale.mark_stale, true);
    assert.equal(stale.unrealized_pnl, null);
    const metrics = (await read("/metrics")).positions;
    assert.equal(metrics.unmarkedPositions, 1);
    assert.equal(metrics.unrealizedPnL, 0);
    await s.close();
  },
);

dbTest("a stored snapshot timed ahead of the clock is not used", async ({ db }) => {
  const c = clock();
  const s = await pipelineServices(db, c);
  // As an earlier version (or a direct insert) could have stored it.
  await insertContextSnapshot(db, {
    symbol: "SPY",
    spot: 500,
    vix: 15,
    trend: "UP",
    asOf: new Date(c.now() + 4 * HOUR).toISOString(),
    source: "push",
  });
  const res = await s.app.request("/context/SPY");
  assert.equal(res.status, 200);
  assert.equal((await res.json()).stale, true);
  assert.equal(await s.context.get("SPY"), null);
});

dbTest("fetched context timed ahead of the clock counts as a failed fetch", async ({ db }) => {
  const now = Date.parse("2026-03-10T14:30:00Z");
  let asOf = new Date(now + 4 * HOUR).toISOString();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    // The response writes the symbol its own way: stored as the one asked for.
    () => Response.json({ symbol: "NYSEARCA:spy", spot: 500, vix: 15, asOf }),
  );
  try {
    const { port } = server.addr as Deno.NetAddr;
    const provider = createContextProvider({
      db,
      ttlSeconds: 0,
      maxAgeSeconds: 900,
      url: `http://127.0.0.1:${port}/context/{symbol}`,
      timeoutMs: 5_000,
      now: () => now,
    });
    assert.equal(await provider.get("SPY"), null);
    assert.equal(provider.stats().fetchErrors, 1);
    assert.equal(await countRows(db, "context_snapshots"), 0);

    asOf = new Date(now - 1_000).toISOString();
    const stored = await provider.get("SPY");
    assert.equal(stored?.context.symbol, "SPY");
    assert.equal(stored?.context.spot, 500);
    assert.equal(await countRows(db, "context_snapshots"), 1);
  } finally {
    await server.shutdown();
  }
});

dbTest(
  "a chain in which no contract carries gamma is refused, not stored as flat GEX",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const push = async (body: unknown) => {
      const res = await s.app.request("/gex/chain", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    const live = chainBody("SPY", 500, c.now());
    const yesterday = new Date(c.now() - 86_400_000).toISOString().slice(0, 10);
    for (
      const [what, contracts] of [
        ["all expired", live.contracts.map((k) => ({ ...k, expiry: yesterday }))],
        ["no open interest", live.contracts.map((k) => ({ ...k, openInterest: 0 }))],
      ] as const
    ) {
      const refused = await push({ ...live, contracts });
      assert.equal(refused.status, 422, what);
      assert.equal(refused.body.error.issues[0].path, "contracts", what);
      assert.match(refused.body.error.message, /carries gamma/, what);
    }
    assert.equal(await countRows(db, "gex_signals"), 0);
    assert.equal((await push(live)).status, 201);
  },
);

dbTest(
  "stop() ends a chain fetch in flight instead of waiting out its long timeout",
  async ({ db }) => {
    const { promise: asked, resolve: gotRequest } = Promise.withResolvers<void>();
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
      gotRequest();
      await released; // never answers on its own
      return new Response("late");
    });
    try {
      const { port } = server.addr as Deno.NetAddr;
      const gex = createGexProvider({
        db,
        ttlSeconds: 60,
        maxAgeSeconds: 3600,
        url: `http://127.0.0.1:${port}/gex/{symbol}`,
        refreshSeconds: 300,
        symbols: ["SPY"],
        timeoutMs: 300_000,
        now: Date.now,
      });
      gex.start();
      await asked;
      const stopped = gex.stop().then(() => "stopped");
      const late = new Promise((r) => setTimeout(() => r("still waiting"), 10_000));
      assert.equal(await Promise.race([stopped, late]), "stopped");
      assert.equal(gex.stats().fetchErrors, 1);
    } finally {
      release();
      await server.shutdown();
    }
  },
);

Deno.test("chainUrl() asks Cboe for an index as _SPX, anything else as it is", () => {
  const cboe = "https://cdn.cboe.com/api/global/delayed_quotes/options/{symbol}.json";
  assert.equal(
    chainUrl(cboe, "SPX"),
    "https://cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json",
  );
  assert.equal(
    chainUrl(cboe, "NDX"),
    "https://cdn.cboe.com/api/global/delayed_quotes/options/_NDX.json",
  );
  assert.equal(
    chainUrl(cboe, "SPY"),
    "https://cdn.cboe.com/api/global/delayed_quotes/options/SPY.json",
  );
  assert.equal(chainUrl("http://127.0.0.1:9/gex/{symbol}", "SPX"), "http://127.0.0.1:9/gex/SPX");
  assert.equal(chainUrl("https://notcboe.com/{symbol}", "SPX"), "https://notcboe.com/SPX");
  assert.equal(chainUrl("https://x.test/{symbol}", "BRK/B"), "https://x.test/BRK%2FB");
});

dbTest(
  "a chain pushed older than the stored one does not replace it for the pipeline",
  async ({ db }) => {
    const c = clock();
    const s = await pipelineServices(db, c);
    const newer = chainBody("SPY", 500, c.now());
    // A late or backfilled chain: two hours old, beyond the one-hour GEX max age.
    const older = chainBody("SPY", 480, c.now() - 2 * HOUR);
    assert.equal((await postJson(s, "/gex/chain", newer)).status, 201);
    assert.equal((await postJson(s, "/gex/chain", older)).status, 201);
    const shown = await (await s.app.request("/gex/SPY")).json();
    assert.equal(shown.spot, 500, "the read API shows the newest chain");
    const used = await s.gex.get("SPY");
    assert.equal(used?.levels.spot, 500, "the pipeline uses the newest chain too");
  },
);
