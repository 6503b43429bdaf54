/**
 * GEX levels for the pipeline: the newest `gex_signals` row per symbol,
 * cached briefly. Chains come in two ways, both computed with `computeGex`
 * and stored: pushed (POST /gex/chain, any time) or fetched in the Cboe
 * delayed-quotes format from GEX_URL, on a schedule for GEX_SYMBOLS and for
 * every symbol a signal asked about (less often while its fetches fail), two
 * at a time. A fetch never runs on a decision's path (a full chain takes
 * seconds): a decision uses what is stored, and stale data (older than
 * `maxAgeSeconds`) counts as missing.
 */
import { futureAsOfProblem, isStale, otherSymbolProblem } from "../core/context.ts";
import { computeGex, type GexProfile } from "../core/gex.ts";
import { type OptionChain, parseCboeChain } from "../core/option_chain.ts";
import { insertGexSignal, latestGex, type StoredGex } from "../db/market_data.ts";
import type { Database } from "../db/port.ts";
import { logger } from "../logging.ts";
import { CHAIN_MAX_BODY_BYTES, readJsonWithin } from "../read_body.ts";

export interface GexProvider {
  get(symbol: string): Promise<StoredGex | null>;
  /** Computes and stores the levels of a chain; returns the stored row's id and the profile. */
  storeChain(chain: OptionChain, source: string): Promise<{ id: string; profile: GexProfile }>;
  /** Fetches, computes and stores one symbol's chain from GEX_URL. */
  refresh(symbol: string): Promise<StoredGex | null>;
  /** Starts the refresh schedule (no-op without GEX_URL). */
  start(): void;
  stop(): Promise<void>;
  stats(): { hits: number; misses: number; fetches: number; fetchErrors: number };
}

export interface GexProviderOptions {
  db: Database;
  ttlSeconds: number;
  maxAgeSeconds: number;
  url: string | null;
  refreshSeconds: number;
  symbols: readonly string[];
  timeoutMs: number;
  now: () => number;
  fetch?: typeof fetch;
  /** Runs `tick` now and every `ms`; returns what stops it. A timer unless a test drives ticks. */
  schedule?: (tick: () => Promise<void>, ms: number) => () => void;
}

const log = logger("gex");

/**
 * Chains fetched at once. A chain is megabytes of JSON, parsed and its gamma
 * computed on the event loop the webhooks share; each tick refreshes every
 * wanted symbol, and every symbol a signal asks about joins them, so all at
 * once would hold the loop, and the memory, for all of them together.
 */
const CHAIN_FETCHES_AT_ONCE = 2;

/** The longest a failing symbol that a signal asked about waits between fetches. */
export const FAILING_REFRESH_MAX_SECONDS = 3600;

/**
 * Refresh ticks a symbol a signal asked about sits out after its last
 * `failures` fetches in a row failed: none after one failure, then twice the
 * wait for each one more, up to an hour. A symbol the feed does not have (a
 * future such as ES1!, a crypto pair) would otherwise be fetched, and logged
 * as failed, every tick for good. GEX_SYMBOLS, the operator's own list, are
 * fetched every tick whatever happens.
 */
export function ticksToSkip(failures: number, refreshSeconds: number): number {
  const maxTicks = Math.max(1, Math.floor(FAILING_REFRESH_MAX_SECONDS / refreshSeconds));
  return Math.min(2 ** Math.max(0, failures - 1), maxTicks) - 1;
}

/** A chain with nothing to measure; not stored. */
export class EmptyChainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmptyChainError";
  }
}

export function createGexProvider(o: GexProviderOptions): GexProvider {
  const cache = new Map<string, { value: StoredGex | null; until: number }>();
  const counts = { hits: 0, misses: 0, fetches: 0, fetchErrors: 0 };
  const wanted = new Set(o.symbols);
  const configured = new Set(o.symbols);
  /** Symbols a signal asked about whose fetches keep failing: failures in a row, ticks to sit out. */
  const failing = new Map<string, { failures: number; skip: number }>();
  const inFlight = new Map<string, Promise<StoredGex | null>>();
  /** Chains stored per symbol by this instance: a read that one overtook is not cached. */
  const stores = new Map<string, number>();
  const doFetch = o.fetch ?? fetch;
  let stopTicks: (() => void) | undefined;
  // Ends the fetches in flight at stop(): the chain timeout is longer than a shutdown may wait.
  const stopping = new AbortController();

  async function storeChain(chain: OptionChain, source: string) {
    const profile = computeGex(chain);
    if (!profile.strikes.some((k) => k.callGex !== 0 || k.putGex !== 0)) {
      // Stored, it would read as a flat POSITIVE regime with no walls: fresh data
      // saying nothing, where missing data at least makes the decision degraded.
      throw new EmptyChainError(
        `No contract in the ${chain.symbol} chain carries gamma at ${chain.asOf}: ` +
          "every one is expired, without open interest, or without IV and gamma",
      );
    }
    const id = await insertGexSignal(o.db, profile, { source, contracts: chain.contracts.length });
    // Read back on the next get(), not cached as is: the chain may be older than the newest
    // stored (a late or backfilled push), and the pipeline must use what GET /gex shows.
    stores.set(chain.symbol, (stores.get(chain.symbol) ?? 0) + 1);
    cache.delete(chain.symbol);
    return { id, profile };
  }

  async function fetchAndStore(symbol: string): Promise<StoredGex | null> {
    // Still queued at stop(): not a fetch that failed.
    if (stopping.signal.aborted) return null;
    counts.fetches++;
    const url = chainUrl(o.url!, symbol);
    try {
      const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(o.timeoutMs)]);
      const res = await doFetch(url, { signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const parsed = parseCboeChain(await readJsonWithin(res, CHAIN_MAX_BODY_BYTES));
      if (!parsed.ok) throw new Error(parsed.error);
      const other = otherSymbolProblem(symbol, parsed.chain.symbol);
      if (other !== null) throw new Error(other);
      const problem = futureAsOfProblem(parsed.chain.asOf, o.now());
      if (problem !== null) throw new Error(problem);
      const { id, profile } = await storeChain({ ...parsed.chain, symbol }, new URL(url).host);
      failing.delete(symbol);
      log.info("GEX for {symbol} refreshed: net {net}, regime {regime}", {
        symbol,
        net: Math.round(profile.levels.netGex),
        regime: profile.levels.regime,
      });
      return { id, levels: profile.levels };
    } catch (error) {
      counts.fetchErrors++;
      log.warn("GEX fetch for {symbol} failed: {error}", { symbol, error: String(error) });
      if (!configured.has(symbol)) {
        const failures = (failing.get(symbol)?.failures ?? 0) + 1;
        failing.set(symbol, { failures, skip: ticksToSkip(failures, o.refreshSeconds) });
      }
      return null;
    }
  }

  // Fetches waiting for a slot; one that ends hands its slot to the next.
  const waiting: (() => void)[] = [];
  let fetching = 0;
  async function inTurn<T>(f: () => Promise<T>): Promise<T> {
    if (fetching < CHAIN_FETCHES_AT_ONCE) fetching++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await f();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else fetching--;
    }
  }

  function refresh(symbol: string): Promise<StoredGex | null> {
    if (o.url === null) return Promise.resolve(null);
    let running = inFlight.get(symbol);
    if (!running) {
      running = inTurn(() => fetchAndStore(symbol)).finally(() => inFlight.delete(symbol));
      inFlight.set(symbol, running);
    }
    return running;
  }

  return {
    async get(symbol) {
      const now = o.now();
      const cached = cache.get(symbol);
      let stored: StoredGex | null;
      if (cached && cached.until > now) {
        counts.hits++;
        stored = cached.value;
      } else {
        counts.misses++;
        const storesBefore = stores.get(symbol);
        stored = await latestGex(o.db, symbol);
        // A chain stored meanwhile may be newer than this read: not cached, and a newer
        // read cached since (by another lookup) is used instead.
        if (stores.get(symbol) === storesBefore) {
          cache.set(symbol, { value: stored, until: now + o.ttlSeconds * 1000 });
        } else stored = cache.get(symbol)?.value ?? stored;
      }
      const usable = stored !== null && !isStale(stored.levels.asOf, now, o.maxAgeSeconds);
      if (o.url !== null && !wanted.has(symbol)) {
        wanted.add(symbol);
        // First time this symbol is asked for: fetch it in the background.
        if (!usable) void refresh(symbol);
      }
      return usable ? stored : null;
    },
    storeChain,
    refresh,
    start() {
      if (o.url === null || stopTicks !== undefined) return;
      const tick = async () => {
        const due = [...wanted].filter((symbol) => {
          const state = failing.get(symbol);
          if (state === undefined || state.skip === 0) return true;
          state.skip--;
          return false;
        });
        await Promise.allSettled(due.map(refresh));
      };
      const schedule = o.schedule ?? ((f, ms) => {
        void f();
        const timer = setInterval(() => void f(), ms);
        return () => clearInterval(timer);
      });
      stopTicks = schedule(tick, o.refreshSeconds * 1000);
    },
    async stop() {
      stopTicks?.();
      stopTicks = undefined;
      stopping.abort(new Error("the service is stopping"));
      await Promise.allSettled([...inFlight.values()]);
    },
    stats: () => ({ ...counts }),
  };
}

/** Cash indices, which Cboe's delayed quotes name with a leading underscore. */
const CBOE_INDICES = new Set(["SPX", "NDX", "RUT", "VIX", "XSP", "DJX", "OEX", "XEO"]);

/**
 * `template` with `{symbol}` filled in: on Cboe's own host an index is asked
 * for as `_SPX` (plain `SPX.json` is not there); the chain is still stored
 * under the symbol the signals use.
 */
export function chainUrl(template: string, symbol: string): string {
  const host = new URL(template.replaceAll("{symbol}", "x")).hostname;
  const cboe = host === "cboe.com" || host.endsWith(".cboe.com");
  const name = cboe && CBOE_INDICES.has(symbol) ? `_${symbol}` : symbol;
  return template.replaceAll("{symbol}", encodeURIComponent(name));
}
