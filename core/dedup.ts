/**
 * The dedup key of a signal: deterministic, so every instance and every
 * re-send of the same alert computes the same one, and the database's unique
 * index on it decides which delivery is stored.
 * - Otherwise it is a hash of what makes the alert itself: source, symbol,
 *   direction, action, timeframe and signal time, all canonical, so field
 *   order, whitespace and alias spelling do not matter.
 * - An id in the payload (`id`/`alert_id`) is added to that, so it can only
 *   tell alerts apart, never merge them: templates reuse ids
 *   (`{{strategy.order.id}}` is "Long" on every ticker and every trade), and
 *   an id in place of the time made a re-entry after an exit, within the
 *   dedup window, a DUPLICATE of the first entry (an id alone, a QQQ entry of
 *   a SPY one). TradingView re-sends the message as it was, time included.
 * - The Standard Webhooks `webhook-id` names one message (the relay makes a
 *   new one per message and keeps it on its retries): the key is that id
 *   within its source, whatever the body says (a relay may re-stamp it).
 * - Else an `idempotency_key` in the body is the sender's promise that the
 *   same key is the same request (a script that rebuilds its retries): the
 *   key is that within its source.
 */
import { createHash } from "node:crypto";
import type { Signal } from "./signal.ts";

export interface DedupOptions {
  /** The Standard Webhooks `webhook-id`, when that scheme signed the request. */
  deliveryId?: string | null;
  /** The body's `idempotency_key`. */
  idempotencyKey?: string | null;
}

export function dedupKey(signal: Signal, options: DedupOptions = {}): string {
  // An empty id (a bare `webhook-id:` header) is no id: as one, it would make
  // every alert in the window a duplicate of the first.
  const given = (id: string | null | undefined) => id?.trim() ? id.trim() : null;
  const deliveryId = given(options.deliveryId);
  if (deliveryId !== null) return `id:${sha256Hex(JSON.stringify([signal.source, deliveryId]))}`;
  const idempotencyKey = given(options.idempotencyKey);
  if (idempotencyKey !== null) {
    return `idem:${sha256Hex(JSON.stringify([signal.source, idempotencyKey]))}`;
  }
  if (signal.alertId !== null) {
    return `aid:${
      sha256Hex(JSON.stringify([
        signal.source,
        signal.alertId,
        signal.symbol,
        signal.direction,
        signal.action,
        signal.timeframe,
        signal.timestamp,
      ]))
    }`;
  }
  return `sig:${
    sha256Hex(JSON.stringify([
      signal.source,
      signal.symbol,
      signal.direction,
      signal.action,
      signal.timeframe,
      signal.timestamp,
    ]))
  }`;
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}
