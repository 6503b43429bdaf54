/**
 * What the context and GEX providers take from a feed they fetch from: only
 * the symbol asked for (however the feed writes it) and no more than a size
 * cap, one fetch per symbol at a time however many decisions ask for it, and
 * two chains at a time.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { otherSymbolProblem } from "../core/context.ts";
import { OptionChainSchema } from "../core/option_chain.ts";
import { type ContextProviderOptions, createContextProvider } from "../providers/context.ts";
import {
  createGexProvider,
  FAILING_REFRESH_MAX_SECONDS,
  type GexProviderOptions,
  ticksToSkip,
} from "../providers/gex.ts";
import { CHAIN_MAX_BODY_BYTES, CONTEXT_MAX_BODY_BYTES } from "../read_body.ts";
import type { Database } from "../db/port.ts";
import { insertContextSnapshot } from "../db/market_data.ts";
import { countRows } from "./_app.ts";
import { aroundQueries, dbTest } from "./_db.ts";
import { chainBody } from "./_pipeline.ts";
import { waitFor } from "./_service.ts";

const NOW = Date.parse("2026-03-10T14:30:00Z");
const ticker = fc.stringMatching(/^[A-Z][A-Z0-9.]{0,5}$/);

Deno.test("property: otherSymbolProblem() takes the ticker in any case and with an exchange, never another", () => {
  fc.assert(
    fc.property(
      ticker,
      ticker,
      fc.stringMatching(/^[A-Z]{1,8}$/),
      fc.boolean(),
      (asked, other, exchange, lower) => {
        const write = (t: string) => lower ? t.toLowerCase() : t;
        assert.equal(otherSymbolProblem(asked, write(asked)), null);
        assert.equal(otherSymbolProblem(asked, `${exchange}:${write(asked)}`), null);
        assert.equal(otherSymbolProblem(asked, `_${asked}`), null);
        if (other !== asked) {
          assert.match(otherSymbolProblem(asked, write(other)) ?? "", /not /);
          assert.match(otherSymbolProblem(asked, `${exchange}:${other}`) ?? "", /not /);
        }
      },
    ),
    { numRuns: 300 },
  );
  // An answer that names no symbol is the one asked for.
  for (const named of [undefined, null, "", "  ", 42]) {
    assert.equal(otherSymbolProblem("SPY", named), null);
  }
});

/** Serves `answer(kind, symbol)` at /context/<symbol> and /gex/<symbol>, counting requests. */
function feed(answer: (kind: string, symbol: string) => Promise<Response> | Response) {
  const requests = { context: 0, gex: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const [, kind, symbol] = new URL(req.url).pathname.split("/");
    requests[kind as "context" | "gex"]++;
    return answer(kind, decodeURIComponent(symbol ?? ""));
  });
  const { port } = server.addr as Deno.NetAddr;
  return { base: `http://127.0.0.1:${port}`, requests, close: () => server.shutdown() };
}

/** A Cboe delayed-quotes body for `symbol` with one call and one put. */
function cboeChain(symbol: string, spot: number) {
  const occ = (type: string, strike: number) =>
    `${symbol}260417${type}${String(strike * 1000).padStart(8, "0")}`;
  return {
    timestamp: "2026-03-10 10:29:00",
    data: {
      symbol,
      current_price: spot,
      options: [
        { option: occ("C", spot + 10), open_interest: 1000, iv: 0.2, gamma: 0.01 },
        { option: occ("P", spot - 10), open_interest: 1000, iv: 0.2, gamma: 0.01 },
      ],
    },
  };
}

/** A context provider at NOW with a 60 s cache and no feed, unless `o` says otherwise. */
function contextProvider(db: Database, o: Partial<ContextProviderOptions> = {}) {
  return createContextProvider({
    db,
    ttlSeconds: 60,
    maxAgeSeconds: 900,
    url: null,
    timeoutMs: 5_000,
    now: () => NOW,
    ...o,
  });
}

/** A GEX provider at NOW with a 60 s cache and no feed, unless `o` says otherwise. */
function gexProvider(db: Database, o: Partial<GexProviderOptions> = {}) {
  return createGexProvider({
    db,
    ttlSeconds: 60,
    maxAgeSeconds: 3600,
    url: null,
    refreshSeconds: 300,
    symbols: [],
    timeoutMs: 5_000,
    now: () => NOW,
    ...o,
  });
}

/** `db` whose first read from `table` answers only once `until` settles; `reads()` counts them. */
function holdFirstRead(db: Database, table: string, until: Promise<void>) {
  let reads = 0;
  const held = aroundQueries(db, async (text, run) => {
    if (!new RegExp(`from ${table}`, "i").test(text) || reads++ > 0) return await run();
    const rows = await run();
    await until;
    return rows;
  });
  return { db: held, reads: () => reads };
}

dbTest(
  "a fetched context or chain that names another symbol is a failed fetch, not stored as the one asked for",
  async ({ db }) => {
    let named = "QQQ";
    const f = feed((kind) =>
      Response.json(
        kind === "context"
          ? { symbol: named, spot: 400, vix: 15, asOf: new Date(NOW - 1_000).toISOString() }
          : cboeChain(named, 400),
      )
    );
    try {
      const context = contextProvider(db, { ttlSeconds: 0, url: `${f.base}/context/{symbol}` });
      const gex = gexProvider(db, { ttlSeconds: 0, url: `${f.base}/gex/{symbol}` });
      assert.equal(await context.get("SPY"), null, "QQQ's context decided SPY's trade");
      assert.equal(context.stats().fetchErrors, 1);
      assert.equal(await gex.refresh("SPY"), null, "QQQ's chain stored as SPY's levels");
      assert.equal(gex.stats().fetchErrors, 1);
      assert.equal(await countRows(db, "context_snapshots"), 0);
      assert.equal(await countRows(db, "gex_signals"), 0);

      // The same ticker written the feed's way is the one asked for.
      named = "NYSEARCA:spy";
      assert.equal((await context.get("SPY"))?.context.symbol, "SPY");
      named = "SPY";
      assert.equal((await gex.refresh("SPY"))?.levels.symbol, "SPY");
    } finally {
      await f.close();
    }
  },
);

/**
 * `json` after spaces that make the body `size` bytes in all, streamed in
 * 64 KiB chunks, so no Content-Length says how large it is.
 */
function streamedJson(json: unknown, size: number): Response {
  const tail = new TextEncoder().encode(JSON.stringify(json));
  const spaces = new Uint8Array(64 * 1024).fill(0x20);
  let left = size - tail.byteLength;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        if (left <= 0) {
          controller.enqueue(tail);
          controller.close();
          return;
        }
        const n = Math.min(left, spaces.byteLength);
        controller.enqueue(spaces.subarray(0, n));
        left -= n;
      },
    }),
    { headers: { "content-type": "application/json" } },
  );
}

dbTest(
  "a fetched context or chain past its size cap is a failed fetch, whether or not its length is declared",
  async ({ db }) => {
    const context = { spot: 500, vix: 15, asOf: new Date(NOW - 1_000).toISOString() };
    let size = CONTEXT_MAX_BODY_BYTES + 1;
    let declared = false;
    const f = feed((kind) => {
      if (kind === "gex") return streamedJson(cboeChain("SPY", 400), size);
      if (!declared) return streamedJson(context, size);
      return new Response(JSON.stringify(context).padEnd(size), {
        headers: { "content-type": "application/json" },
      });
    });
    try {
      const contexts = contextProvider(db, { ttlSeconds: 0, url: `${f.base}/context/{symbol}` });
      assert.equal(await contexts.get("SPY"), null, "a context one byte past 1 MiB was taken");
      declared = true;
      assert.equal(await contexts.get("SPY"), null, "a declared Content-Length past 1 MiB");
      assert.equal(contexts.stats().fetchErrors, 2);
      assert.equal(await countRows(db, "context_snapshots"), 0);

      size = CONTEXT_MAX_BODY_BYTES; // exactly the cap is read
      assert.equal((await contexts.get("SPY"))?.context.spot, 500);
      declared = false;
      assert.equal((await contexts.get("SPY"))?.context.spot, 500);

      const gex = gexProvider(db, { ttlSeconds: 0, url: `${f.base}/gex/{symbol}` });
      size = CHAIN_MAX_BODY_BYTES + 1;
      assert.equal(await gex.refresh("SPY"), null, "a chain one byte past 64 MiB was taken");
      assert.equal(gex.stats().fetchErrors, 1);
      assert.equal(await countRows(db, "gex_signals"), 0);
      size = CHAIN_MAX_BODY_BYTES;
      assert.equal((await gex.refresh("SPY"))?.levels.symbol, "SPY");
    } finally {
      await f.close();
    }
  },
);

dbTest(
  "decisions that miss the context cache together share one fetch and one snapshot",
  async ({ db }) => {
    const { promise: answered, resolve: answer } = Promise.withResolvers<void>();
    const f = feed(async () => {
      await answered; // every lookup below asks before the feed answers
      return Response.json({ spot: 500, vix: 15, asOf: new Date(NOW - 1_000).toISOString() });
    });
    try {
      const context = contextProvider(db, { url: `${f.base}/context/{symbol}` });
      const lookups = Array.from({ length: 5 }, () => context.get("SPY"));
      while (f.requests.context === 0) await new Promise((r) => setTimeout(r, 10));
      answer();
      const found = await Promise.all(lookups);
      assert.deepEqual(new Set(found.map((x) => x?.id)).size, 1);
      assert.ok(found[0]?.context.spot === 500);
      assert.equal(f.requests.context, 1, "each lookup fetched for itself");
      assert.equal(await countRows(db, "context_snapshots"), 1);
    } finally {
      await f.close();
    }
  },
);

dbTest(
  "a context pushed while a lookup of the symbol is reading is used by the next decision",
  async ({ db }) => {
    const { promise: pushed, resolve: pushDone } = Promise.withResolvers<void>();
    // The first read of the newest snapshot answers only after the push.
    const slow = holdFirstRead(db, "context_snapshots", pushed);
    const context = contextProvider(slow.db);
    // Stale: no context to decide with, but a close's last resort price.
    await insertContextSnapshot(db, {
      symbol: "SPY",
      spot: 499,
      vix: 15,
      trend: "UP",
      asOf: new Date(NOW - 3_600_000).toISOString(),
      source: "push",
    });
    const before = context.get("SPY");
    while (slow.reads() === 0) await new Promise((r) => setTimeout(r, 10));
    await insertContextSnapshot(db, {
      symbol: "SPY",
      spot: 501,
      vix: 15,
      trend: "UP",
      asOf: new Date(NOW).toISOString(),
      source: "push",
    });
    context.invalidate("SPY");
    pushDone();
    assert.equal(await before, null, "the read began before the push");
    assert.equal(context.lastKnown("SPY")?.context.spot, 499, "the last known price was lost");
    assert.equal((await context.get("SPY"))?.context.spot, 501, "the push was hidden for the TTL");
  },
);

dbTest(
  "a chain pushed while a GEX lookup of the symbol is reading is used by the next decision",
  async ({ db }) => {
    const { promise: pushed, resolve: pushDone } = Promise.withResolvers<void>();
    // The first read of the newest levels answers only after the push.
    const slow = holdFirstRead(db, "gex_signals", pushed);
    const gex = gexProvider(slow.db);
    const before = gex.get("SPY");
    while (slow.reads() === 0) await new Promise((r) => setTimeout(r, 10));
    const { id } = await gex.storeChain(
      OptionChainSchema.parse(chainBody("SPY", 500, NOW)),
      "push",
    );
    pushDone();
    await before;
    assert.equal((await gex.get("SPY"))?.id, id, "the push was hidden for the TTL");
  },
);

dbTest(
  "the GEX schedule fetches two chains at a time, however many symbols it refreshes",
  async ({ db }) => {
    const symbols = ["SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA"];
    let fetching = 0;
    let most = 0;
    let asked = 0;
    const held: (() => void)[] = [];
    const gex = gexProvider(db, {
      url: "https://feed.example/gex/{symbol}",
      symbols,
      // Each chain answers when the test lets it, so the fetches in flight can be counted.
      fetch: async (input) => {
        asked++;
        most = Math.max(most, ++fetching);
        await new Promise<void>((resolve) => held.push(resolve));
        fetching--;
        const symbol = String(input).split("/").pop()!;
        return Response.json(cboeChain(symbol, 400));
      },
    });
    gex.start();
    try {
      while (asked < symbols.length) {
        while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
        held.shift()!();
      }
      while (held.length > 0 || fetching > 0) {
        held.shift()?.();
        await new Promise((r) => setTimeout(r, 5));
      }
      // The last chains answered; their writes may still be under way.
      for (const symbol of symbols) {
        const stored = await waitFor(
          `${symbol} stored`,
          async () => await gex.get(symbol) ?? undefined,
          10_000,
        );
        assert.equal(stored.levels.symbol, symbol);
      }
      assert.equal(most, 2, "chains fetched at once");
      assert.equal(gex.stats().fetchErrors, 0);
    } finally {
      await gex.stop();
    }
  },
);

dbTest("chains still waiting for their turn at stop() are not fetched", async ({ db }) => {
  let asked = 0;
  const gex = gexProvider(db, {
    url: "https://feed.example/gex/{symbol}",
    symbols: ["SPY", "QQQ", "IWM", "AAPL"],
    // A feed that never answers: only stop() ends a fetch (at once if already stopped, as fetch does).
    fetch: (_input, init) => {
      asked++;
      const signal = init!.signal!;
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      );
    },
  });
  gex.start();
  while (asked < 2) await new Promise((r) => setTimeout(r, 5));
  await gex.stop();
  assert.equal(asked, 2, "a chain queued behind the hanging ones was fetched after stop()");
  assert.equal(gex.stats().fetches, 2);
});

Deno.test("property: a failing symbol sits out no ticks after one failure, then doubling waits up to an hour", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }),
      fc.integer({ min: 1, max: 7_200 }),
      (failures, refreshSeconds) => {
        const skip = ticksToSkip(failures, refreshSeconds);
        const waitSeconds = (skip + 1) * refreshSeconds;
        assert.ok(Number.isInteger(skip) && skip >= 0);
        if (failures === 1) assert.equal(skip, 0);
        assert.ok(skip <= ticksToSkip(failures + 1, refreshSeconds), "a wait got shorter");
        // Never longer than an hour, unless one interval is; never shorter than doubling.
        assert.ok(waitSeconds <= Math.max(refreshSeconds, FAILING_REFRESH_MAX_SECONDS));
        assert.ok(
          waitSeconds >=
            Math.min(
              2 ** (failures - 1) * refreshSeconds,
              FAILING_REFRESH_MAX_SECONDS - refreshSeconds + 1,
            ),
        );
      },
    ),
    { numRuns: 500 },
  );
  // At the default 300 s: 0, 1, 3, 7, then 11 ticks (an hour between fetches).
  assert.deepEqual([1, 2, 3, 4, 5, 6, 50].map((f) => ticksToSkip(f, 300)), [
    0,
    1,
    3,
    7,
    11,
    11,
    11,
  ]);
});

dbTest(
  "a symbol a signal asked about that the feed does not have is fetched less and less often; GEX_SYMBOLS every tick",
  async ({ db }) => {
    let listed = false;
    const requests = new Map<string, number>();
    const f = feed((_kind, symbol) => {
      requests.set(symbol, (requests.get(symbol) ?? 0) + 1);
      if (symbol === "BTCUSD" && listed) return Response.json(cboeChain("BTCUSD", 5000));
      return new Response("not found", { status: 404 });
    });
    const ticks: (() => Promise<void>)[] = [];
    const gex = gexProvider(db, {
      url: `${f.base}/gex/{symbol}`,
      symbols: ["SPY"],
      schedule: (tick) => {
        ticks.push(tick);
        return () => {};
      },
    });
    const tick = async (n: number) => {
      for (let i = 0; i < n; i++) await ticks[0]();
    };
    try {
      assert.equal(await gex.get("BTCUSD"), null); // a signal asks: fetched once in the background
      while (gex.stats().fetchErrors === 0) await new Promise((r) => setTimeout(r, 5));
      gex.start();
      await tick(16);
      assert.equal(requests.get("SPY"), 16, "a configured symbol skipped a tick");
      // The first fetch, then ticks 0, 2, 6 and 14 (waits of 1, 2, 4 and 8 ticks).
      assert.equal(requests.get("BTCUSD"), 5, "fetched every tick although it keeps failing");

      // Listed at last: fetched when its wait (12 ticks, an hour at 300 s) is out, then every tick.
      listed = true;
      await tick(10);
      assert.equal(requests.get("BTCUSD"), 5);
      await tick(1);
      assert.equal(requests.get("BTCUSD"), 6);
      assert.equal((await gex.get("BTCUSD"))?.levels.symbol, "BTCUSD");
      await tick(2);
      assert.equal(requests.get("BTCUSD"), 8);
    } finally {
      await gex.stop();
      await f.close();
    }
  },
);

dbTest(
  "a fetched context is fetched again once it goes stale, however long CONTEXT_TTL_SECONDS is",
  async ({ db }) => {
    let now = NOW;
    // The feed always has a context of this very moment.
    const f = feed(() =>
      Response.json({ symbol: "SPY", spot: 500, vix: 15, asOf: new Date(now).toISOString() })
    );
    try {
      // An hour's cache (to spare the feed) beside the default 15 minutes' freshness.
      const context = contextProvider(db, {
        ttlSeconds: 3600,
        maxAgeSeconds: 900,
        url: `${f.base}/context/{symbol}`,
        now: () => now,
      });
      assert.notEqual(await context.get("SPY"), null);
      now += 600_000;
      assert.notEqual(await context.get("SPY"), null);
      assert.equal(f.requests.context, 1, "a fresh cached context was fetched again");
      // 901 s on, the cached one is stale while the feed has a fresh one: it decided degraded
      // (half size, or NO_CONTEXT under DEGRADED_POLICY=REJECT) for the rest of the hour.
      now += 301_000;
      const later = await context.get("SPY");
      assert.equal(later?.context.asOf, new Date(now).toISOString());
      assert.equal(f.requests.context, 2);
    } finally {
      await f.close();
    }
  },
);
