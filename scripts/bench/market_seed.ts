/**
 * Market data for every bench symbol, pushed before any load the way an
 * operator would (POST /context, POST /gex/chain, as tests/_pipeline.ts
 * does): fresh context (spot, VIX 15, trend UP) and a small chain with its
 * walls 5-10 % away from spot and positive GEX, so an entry at spot passes
 * every check and a decision runs the whole path with real data.
 */
import { spotOf } from "./alerts.ts";

/** The chain pushed for a symbol: strikes at 90-110 % of spot, calls above, puts below. */
export function benchChain(symbol: string, spot: number, nowMs: number) {
  const expiry = new Date(nowMs + 30 * 86_400_000).toISOString().slice(0, 10);
  const strikes = [0.9, 0.95, 1, 1.05, 1.1].map((k) => Math.round(spot * k));
  return {
    symbol,
    spot,
    asOf: new Date(nowMs).toISOString(),
    contracts: strikes.flatMap((strike) => [
      { type: "CALL", strike, expiry, iv: 0.2, openInterest: strike > spot ? 5000 : 1000 },
      { type: "PUT", strike, expiry, iv: 0.2, openInterest: strike < spot ? 3000 : 500 },
    ]),
  };
}

async function post(url: string, body: unknown): Promise<void> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 300)}`);
}

export async function seedMarketData(origin: string, symbols: readonly string[]): Promise<void> {
  const now = Date.now();
  const asOf = new Date(now).toISOString();
  // /context takes up to 1000 snapshots per request.
  for (let i = 0; i < symbols.length; i += 1000) {
    await post(
      `${origin}/context`,
      symbols.slice(i, i + 1000).map((symbol, j) => ({
        symbol,
        spot: spotOf(i + j),
        vix: 15,
        trend: "UP",
        asOf,
      })),
    );
  }
  // One chain per request; a few at a time.
  let next = 0;
  const worker = async () => {
    while (next < symbols.length) {
      const i = next++;
      await post(`${origin}/gex/chain`, benchChain(symbols[i], spotOf(i), now));
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}
