/**
 * The alerts the bench sends: each one distinct (its own `id`, so its own
 * dedup key) and signed the way TradingView-side relays sign (`x-signature`:
 * hex HMAC-SHA256 of the exact body, as tests/_app.ts `signed()` does).
 * Pure: the caller passes the time.
 *
 * Alert n goes to symbol n mod S and, per symbol, cycles CALL entry, exit,
 * PUT entry, exit, so decisions open and close positions (the write path a
 * real day takes) and per-symbol order matters: an exit decided before its
 * entry would be NO_POSITION.
 */
import { createHash } from "node:crypto";

const encoder = new TextEncoder();

/**
 * `count` tickers (B0000, B0001, ...) that pass both the signal and the
 * option-chain ticker rules; a shorter list is a prefix of a longer one.
 */
export function benchSymbols(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `B${String(i).padStart(4, "0")}`);
}

/** The spot every pushed context and chain uses for symbol `i`, and the alerts' price. */
export function spotOf(index: number): number {
  return 100 + index;
}

const CYCLE = [
  { direction: "CALL", action: "ENTRY" },
  { direction: "EXIT", action: "EXIT" },
  { direction: "PUT", action: "ENTRY" },
  { direction: "EXIT", action: "EXIT" },
] as const;

export interface AlertOptions {
  symbols: readonly string[];
  /** Unique per bench run and phase, e.g. "k3f9-ingest16"; goes into every alert id. */
  prefix: string;
  /** The alert's timestamp (ms); signals are judged fresh at receipt and when decided. */
  timeMs: number;
}

/** The JSON body of alert `n`. */
export function alertBody(n: number, o: AlertOptions): string {
  const s = n % o.symbols.length;
  const step = CYCLE[Math.floor(n / o.symbols.length) % CYCLE.length];
  return JSON.stringify({
    source: "TradingView",
    symbol: o.symbols[s],
    direction: step.direction,
    action: step.action,
    timeframe: "5m",
    timestamp: new Date(o.timeMs).toISOString(),
    price: spotOf(s),
    id: alertId(o.prefix, n),
    metadata: { score: 85, confidence: 0.85 },
  });
}

/** The alert id of alert `n`: what the analysis queries select a phase's signals by. */
export function alertId(prefix: string, n: number): string {
  return `${prefix}-${n}`;
}

/**
 * A signer for `secret`: hex HMAC-SHA256 of a body, synchronous because the
 * bench signs hundreds of thousands. HMAC is H(k^opad || H(k^ipad || m)); the
 * two padded-key blocks are hashed once and their states copied per message,
 * which is about twice as fast as `createHmac` per message.
 */
export function hmacSigner(secret: string): (body: string) => string {
  let key = encoder.encode(secret);
  if (key.length > 64) key = new Uint8Array(createHash("sha256").update(key).digest());
  const block = new Uint8Array(64);
  block.set(key);
  const inner = createHash("sha256").update(block.map((b) => b ^ 0x36));
  const outer = createHash("sha256").update(block.map((b) => b ^ 0x5c));
  return (body) => {
    const digest = inner.copy().update(body, "utf8").digest();
    return outer.copy().update(digest).digest("hex");
  };
}

/** The raw HTTP/1.1 request for a signed alert, ready to write to a socket. */
export function rawRequest(
  body: string,
  o: { sign: (body: string) => string; host: string; path?: string },
): Uint8Array {
  const bytes = encoder.encode(body);
  const head = `POST ${o.path ?? "/webhook"} HTTP/1.1\r\n` +
    `host: ${o.host}\r\n` +
    "content-type: application/json\r\n" +
    `x-signature: ${o.sign(body)}\r\n` +
    `content-length: ${bytes.length}\r\n\r\n`;
  const headBytes = encoder.encode(head);
  const out = new Uint8Array(headBytes.length + bytes.length);
  out.set(headBytes);
  out.set(bytes, headBytes.length);
  return out;
}
