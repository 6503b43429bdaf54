/**
 * Market context for the pipeline: the latest snapshot per symbol, cached
 * for `contextTTLSeconds`. Two sources behind one provider:
 * - pushed: an operator POSTs /context, which stores a snapshot; the
 *   provider reads the newest snapshot from the database;
 * - fetched: with CONTEXT_URL set, a cache miss fetches it over HTTP (with
 *   a timeout) and stores the result as a snapshot, so every decision can
 *   link the exact snapshot it used. A failed fetch falls back to the newest
 *   stored snapshot.
 * Data older than `maxAgeSeconds` counts as missing (the pipeline degrades).
 */
import {
  ContextInputSchema,
  futureAsOfProblem,
  isStale,
  otherSymbolProblem,
  toMarketContext,
} from "../core/context.ts";
import type { MarketContext } from "../core/market_data.ts";
import { insertContextSnapshot, latestContext, type StoredContext } from "../db/market_data.ts";
import type { Database } from "../db/port.ts";
import { logger } from "../logging.ts";
import { CONTEXT_MAX_BODY_BYTES, readJsonWithin } from "../read_body.ts";

export interface ContextProvider {
  /** The context to decide with: null when there is none or it is stale. */
  get(symbol: string): Promise<StoredContext | null>;
  /**
   * The newest context `get()` found for `symbol`, however old (no lookup of
   * its own): its spot is the last resort price of a close.
   */
  lastKnown(symbol: string): StoredContext | null;
  /** Forget the cached entry (after a push), so the next decision reads the new one. */
  invalidate(symbol: string): void;
  stats(): { hits: number; misses: number; fetchErrors: number };
  /**
   * Ends the fetches in flight (and any later one at once): the service is
   * stopping. Their `get()` throws ProviderStoppedError.
   */
  stop(): void;
}

export interface ContextProviderOptions {
  db: Database;
  ttlSeconds: number;
  maxAgeSeconds: number;
  /** URL template with `{symbol}`; null for pushed context only. */
  url: string | null;
  timeoutMs: number;
  now: () => number;
  fetch?: typeof fetch;
}

const log = logger("context");

/**
 * A lookup cut short because the service is stopping. Not "no context": a
 * decision made without the data would stand for good, so the worker gives
 * the job back for another instance (or the next start) to decide.
 */
export class ProviderStoppedError extends Error {
  constructor(symbol: string) {
    super(`Context lookup for ${symbol} stopped: the service is stopping`);
    this.name = "ProviderStoppedError";
  }
}

export function createContextProvider(o: ContextProviderOptions): ContextProvider {
  const cache = new Map<string, { value: StoredContext | null; until: number }>();
  const counts = { hits: 0, misses: 0, fetchErrors: 0 };
  const inFlight = new Map<string, Promise<StoredContext | null>>();
  const doFetch = o.fetch ?? fetch;
  // Shutdown waits for the jobs being decided, and each waits for its lookup:
  // without this, a provider that never answers holds the stop for
  // PROVIDER_TIMEOUT_MS per round of lookups, past the shutdown deadline.
  const stopping = new AbortController();

  async function fetchContext(symbol: string): Promise<MarketContext | null> {
    const url = o.url!.replaceAll("{symbol}", encodeURIComponent(symbol));
    try {
      const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(o.timeoutMs)]);
      const res = await doFetch(url, { signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await readJsonWithin(res, CONTEXT_MAX_BODY_BYTES);
      const named = typeof body === "object" && body !== null
        ? (body as { symbol?: unknown }).symbol
        : undefined;
      const other = otherSymbolProblem(symbol, named);
      if (other !== null) throw new Error(other);
      // Stored under the symbol asked for, however the response writes it.
      const parsed = ContextInputSchema.safeParse({ ...(body as object), symbol });
      if (!parsed.success) throw new Error(`unexpected shape: ${parsed.error.issues[0].message}`);
      const context = toMarketContext(parsed.data, { now: o.now(), source: new URL(url).host });
      const problem = futureAsOfProblem(context.asOf, o.now());
      if (problem !== null) throw new Error(problem);
      return context;
    } catch (error) {
      if (stopping.signal.aborted) throw new ProviderStoppedError(symbol);
      counts.fetchErrors++;
      log.warn("Context fetch for {symbol} failed: {error}", { symbol, error: String(error) });
      return null;
    }
  }

  async function load(symbol: string): Promise<StoredContext | null> {
    if (o.url !== null) {
      const fetched = await fetchContext(symbol);
      if (fetched !== null) {
        return { id: await insertContextSnapshot(o.db, fetched), context: fetched };
      }
    }
    return await latestContext(o.db, symbol);
  }

  /**
   * The cache's TTL, cut short where the context goes stale: kept past that, a TTL longer
   * than the rest of its freshness (CONTEXT_TTL_SECONDS 3600 beside CONTEXT_MAX_AGE_SECONDS
   * 900) answered "missing" from the cache while the provider had a fresh one. One that is
   * stale already is kept the whole TTL (the provider has nothing newer to ask for).
   */
  function cachedUntil(value: StoredContext | null, now: number): number {
    const ttlEnd = now + o.ttlSeconds * 1000;
    if (value === null) return ttlEnd;
    const staleAt = Date.parse(value.context.asOf) + o.maxAgeSeconds * 1000;
    return staleAt > now ? Math.min(ttlEnd, staleAt) : ttlEnd;
  }

  /**
   * One load per symbol at a time: the decisions that miss the cache together
   * (batches claimed side by side) share it, rather than each fetch and store
   * a snapshot of its own, and each wait out a hanging provider's timeout.
   * A load an invalidate() overtook is kept expired: it may predate the push,
   * so the next lookup loads again, but it is still the last known one.
   */
  function loadOnce(symbol: string, now: number): Promise<StoredContext | null> {
    const running = inFlight.get(symbol);
    if (running) return running;
    const loading: Promise<StoredContext | null> = load(symbol).then((value) => {
      const current = inFlight.get(symbol) === loading;
      if (current || !cache.has(symbol)) {
        cache.set(symbol, { value, until: current ? cachedUntil(value, now) : 0 });
      }
      return value;
    }).finally(() => {
      if (inFlight.get(symbol) === loading) inFlight.delete(symbol);
    });
    inFlight.set(symbol, loading);
    return loading;
  }

  return {
    async get(symbol) {
      const now = o.now();
      const cached = cache.get(symbol);
      let stored: StoredContext | null;
      if (cached && cached.until > now) {
        counts.hits++;
        stored = cached.value;
      } else {
        counts.misses++;
        stored = await loadOnce(symbol, now);
      }
      if (stored === null || isStale(stored.context.asOf, now, o.maxAgeSeconds)) return null;
      return stored;
    },
    lastKnown(symbol) {
      return cache.get(symbol)?.value ?? null;
    },
    invalidate(symbol) {
      cache.delete(symbol);
      inFlight.delete(symbol);
    },
    stats: () => ({ ...counts }),
    stop() {
      stopping.abort(new Error("the service is stopping"));
    },
  };
}
