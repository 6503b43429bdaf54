/** The real app on a test database, and ways to sign requests to it. */
import { compose, type Services } from "../compose.ts";
import { signHex } from "../core/auth.ts";
import { loadConfig } from "../core/config.ts";
import type { Database } from "../db/port.ts";

export const SECRET = "test-webhook-secret-0123456789";

/** The deployment guide's sample signal. */
export const GUIDE_SIGNAL = {
  source: "TradingView",
  symbol: "SPY",
  direction: "CALL",
  timeframe: "5m",
  timestamp: "2024-01-29T12:00:00Z",
  metadata: { score: 85, confidence: 0.85 },
};

export interface TestAppOptions {
  env?: Record<string, string>;
  now?: () => number;
}

export async function testServices(db: Database, options: TestAppOptions = {}): Promise<Services> {
  const { config } = loadConfig({
    NODE_ENV: "test",
    WEBHOOK_SECRET: SECRET,
    ...options.env,
  });
  return await compose(config, { db, now: options.now });
}

let counter = 0;
/** A sample signal with a unique timestamp, so it is never a duplicate of another. */
export function uniqueSignal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter++;
  return {
    ...GUIDE_SIGNAL,
    timestamp: new Date(
      Date.UTC(2024, 0, 29, 12) + counter * 1000 + Math.floor(Math.random() * 1e9) * 1000,
    )
      .toISOString(),
    ...overrides,
  };
}

export async function signed(
  body: string,
  options: { secret?: string; timestamp?: number; headers?: Record<string, string> } = {},
): Promise<RequestInit> {
  const secret = options.secret ?? SECRET;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    ...options.headers,
  };
  if (options.timestamp !== undefined) {
    headers["x-signature-timestamp"] = String(options.timestamp);
    headers["x-signature"] = await signHex(secret, `${options.timestamp}.${body}`);
  } else {
    headers["x-signature"] = await signHex(secret, body);
  }
  return { method: "POST", body, headers };
}

/** Standard Webhooks v1 headers for `body`; `secrets` gives one signature each (rotation). */
export async function standardWebhooks(
  body: string,
  options: { id?: string; timestamp?: number; secrets?: string[] } = {},
): Promise<RequestInit> {
  const id = options.id ?? `msg_${crypto.randomUUID()}`;
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const signatures: string[] = [];
  for (const secret of options.secrets ?? [SECRET]) {
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const mac = await crypto.subtle.sign(
      "HMAC",
      key,
      new TextEncoder().encode(`${id}.${timestamp}.${body}`),
    );
    signatures.push(`v1,${btoa(String.fromCharCode(...new Uint8Array(mac)))}`);
  }
  return {
    method: "POST",
    body,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signatures.join(" "),
    },
  };
}

export async function countRows(db: Database, table: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(`select count(*)::integer as n from ${table}`);
  return Number(row.n);
}
