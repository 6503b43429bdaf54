/**
 * The dedup key of a signal: deterministic, so every instance and every
 * re-send of the same alert computes the same one, and the database's unique
 * index on it decides which delivery is stored.
 * - With an explicit id (payload `id`/`alert_id`, or the Standard Webhooks
 *   `webhook-id`), the key is that id within its source.
 * - Otherwise it is a hash of what makes the alert itself: source, symbol,
 *   direction, action, timeframe and signal time, all canonical, so field
 *   order, whitespace and alias spelling do not matter.
 */
import { createHash } from "node:crypto";
import type { Signal } from "./signal.ts";

export function dedupKey(signal: Signal, options: { deliveryId?: string | null } = {}): string {
  // An empty delivery id (a bare `webhook-id:` header) is no id: as one, it
  // would make every alert in the window a duplicate of the first.
  const deliveryId = options.deliveryId?.trim() ? options.deliveryId : null;
  const explicit = signal.alertId ?? deliveryId;
  if (explicit !== null) return `id:${sha256Hex(JSON.stringify([signal.source, explicit]))}`;
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
