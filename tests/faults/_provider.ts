/**
 * A market-data provider on loopback for the fault tests: answers
 * `/context/<symbol>` and `/gex/<symbol>` the way each test tells it to
 * (slowly, never, with garbage), and counts the requests it got.
 */
import { delay } from "../_service.ts";

export type Behaviour = "ok" | "hang" | "garbage" | "error" | "wrong-shape" | "slow";

export interface FakeProvider {
  /** Base URL; CONTEXT_URL is `${url}/context/{symbol}`, GEX_URL `${url}/gex/{symbol}`. */
  url: string;
  requests: { context: number; gex: number };
  close(): Promise<void>;
}

/**
 * `behaviour(kind, symbol)` decides each answer; "ok" takes `okDelayMs`
 * (default 0), "slow" takes `slowMs` (default 500).
 */
export function fakeProvider(
  behaviour: (kind: "context" | "gex", symbol: string) => Behaviour,
  o: { okDelayMs?: number; slowMs?: number } = {},
): FakeProvider {
  const requests = { context: 0, gex: 0 };
  const hung = new Set<() => void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const [, kind, symbol] = new URL(req.url).pathname.split("/");
    if (kind !== "context" && kind !== "gex") return new Response("not found", { status: 404 });
    requests[kind]++;
    const b = behaviour(kind, decodeURIComponent(symbol ?? ""));
    if (b === "hang") {
      // Never answers on its own; released when the server closes.
      await new Promise<void>((resolve) => hung.add(resolve));
      return new Response("late", { status: 200 });
    }
    if (b === "slow") await delay(o.slowMs ?? 500);
    if (b === "ok" && o.okDelayMs) await delay(o.okDelayMs);
    if (b === "garbage") return new Response("\u0000<html>not json{{", { status: 200 });
    if (b === "error") return new Response("upstream down", { status: 502 });
    if (b === "wrong-shape") return Response.json({ spot: "a lot", trend: 42 });
    return Response.json(kind === "context" ? { spot: 500, vix: 15, trend: "UP" } : {});
  });
  const { port } = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      for (const release of hung) release();
      await server.shutdown();
    },
  };
}
