/**
 * Webhook authentication: a request passes when at least one enabled method
 * vouches for it (DESIGN.md, "Webhook contract"):
 *  1. `x-signature`: hex HMAC-SHA256 of the raw body (`sha256=` prefix
 *     accepted); with `x-signature-timestamp` the signed message is
 *     `<timestamp>.<body>` and the timestamp must be within the tolerance.
 *  2. Standard Webhooks v1: `webhook-id`, `webhook-timestamp`,
 *     `webhook-signature` (space-separated `v1,<base64>`; any one may match,
 *     which is how senders rotate secrets).
 *  3. URL token: `POST /webhook/:token`.
 *  4. Source address in the allowlist (when it is on).
 *  5. `secret` or `passphrase` in the JSON body (TradingView's only choice
 *     besides the URL token).
 * Every comparison is constant-time: HMACs with `timingSafeEqual` on the MAC,
 * plain secrets by comparing SHA-256 digests the same way. The HMAC is
 * @noble/hashes on the event loop (about 10 µs a check, all of it on the main
 * thread), not `crypto.subtle.verify` (about 26 µs of the main thread's time
 * plus its thread pool's, and in the server's V8 profile on the stack in half
 * the busy samples at the no-database ceiling) nor node:crypto's `createHmac`
 * (which lost on the ceiling in three A/B runs). Measured in README
 * "Performance". The failure reason is for logs only; clients learn nothing
 * about which part failed.
 * No clock inside: the caller passes `nowMs`.
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 as sha256Hash } from "@noble/hashes/sha2.js";
// timingSafeEqual through the module object, not a named import: the fault tests
// (tests/faults/hostile_input_test.ts) watch and overrule it, the one step that
// depends on a candidate MAC or secret.
import nodeCrypto, { createHash } from "node:crypto";
import { type Cidr, ipInCidrs } from "./net.ts";

export type AuthMethod =
  | "signature"
  | "standard_webhooks"
  | "url_token"
  | "ip_allowlist"
  | "body_secret"
  | "none";

export interface AuthSettings {
  secret: string | null;
  /**
   * The secret being replaced, accepted as well while alerts move to the new
   * one (TradingView never re-sends a refused alert).
   */
  previousSecret?: string | null;
  toleranceSeconds: number;
  ipAllowlist: readonly Cidr[] | null;
  /** When true the allowlist is a gate every request must pass, not a method on its own. */
  ipAllowlistRequired: boolean;
}

export interface AuthRequest {
  /** The body exactly as received: signatures are over these bytes. */
  rawBody: Uint8Array<ArrayBuffer>;
  header(name: string): string | null | undefined;
  pathToken: string | null;
  /** `secret` (or `passphrase`) from the JSON body, when there was one. */
  bodySecret: string | null;
  clientIp: string | null;
  nowMs: number;
}

export type AuthResult =
  | {
    ok: true;
    method: AuthMethod;
    /**
     * The signed timestamp (epoch ms) when the method carried one: the same
     * request verifies until this plus the tolerance, so its dedup key must
     * live at least that long.
     */
    signedAtMs?: number;
    /** It was the previous secret that vouched for it: the sender still has to move. */
    previousSecret?: true;
  }
  | { ok: false; reason: string };

export interface Authenticator {
  /** Whether any method is enabled (false only in development without a secret or allowlist). */
  readonly enabled: boolean;
  verify(request: AuthRequest): Promise<AuthResult>;
}

const encoder = new TextEncoder();

export function createAuthenticator(settings: AuthSettings): Authenticator {
  const { secret, ipAllowlist } = settings;
  const enabled = secret !== null || ipAllowlist !== null;
  // Keyed once: each check starts from the keyed state. The current secret first.
  const keys = [secret, secret === null ? null : settings.previousSecret ?? null]
    .filter((s): s is string => s !== null)
    .map((s) => ({
      signatureKey: hmacKey(encoder.encode(s)),
      standardKey: hmacKey(standardWebhooksKey(s)),
      secretDigest: sha256(s),
    }));

  function check(request: AuthRequest): AuthResult {
    const ipAllowed = ipAllowlist !== null && ipInCidrs(request.clientIp, ipAllowlist);
    if (settings.ipAllowlistRequired && !ipAllowed) {
      return {
        ok: false,
        reason: `address ${request.clientIp ?? "unknown"} is not in the allowlist`,
      };
    }
    if (!enabled) return { ok: true, method: "none" };

    const reasons: string[] = [];
    for (const [i, k] of keys.entries()) {
      const r = checkSecret(request, k, reasons, i === 0 ? "" : " (nor the previous secret)");
      if (r !== null) return i === 0 ? r : { ...r, previousSecret: true };
    }
    if (ipAllowed) {
      // Required mode with a secret set: the address alone is not enough.
      if (!(settings.ipAllowlistRequired && secret !== null)) {
        return { ok: true, method: "ip_allowlist" };
      }
    } else if (ipAllowlist !== null) {
      reasons.push(`address ${request.clientIp ?? "unknown"} is not in the allowlist`);
    }
    if (reasons.length === 0) reasons.push("no credentials presented");
    return { ok: false, reason: reasons.join("; ") };
  }

  /** The methods that prove knowledge of one secret; null when none vouches. */
  function checkSecret(
    request: AuthRequest,
    k: (typeof keys)[number],
    reasons: string[],
    which: string,
  ): Extract<AuthResult, { ok: true }> | null {
    if (request.header("x-signature")) {
      const r = checkSignature(request, k.signatureKey, settings.toleranceSeconds);
      if (r === true) {
        const ts = request.header("x-signature-timestamp");
        return ts ? { ok: true, method: "signature", signedAtMs: Number(ts.trim()) * 1000 } : {
          ok: true,
          method: "signature",
        };
      }
      reasons.push(r + which);
    }
    if (request.header("webhook-signature")) {
      const r = checkStandardWebhooks(request, k.standardKey, settings.toleranceSeconds);
      if (r === true) {
        const signedAtMs = Number(request.header("webhook-timestamp")!.trim()) * 1000;
        return { ok: true, method: "standard_webhooks", signedAtMs };
      }
      reasons.push(r + which);
    }
    if (request.pathToken !== null) {
      if (sameDigest(k.secretDigest, request.pathToken)) return { ok: true, method: "url_token" };
      reasons.push("URL token does not match" + which);
    }
    if (request.bodySecret !== null) {
      if (sameDigest(k.secretDigest, request.bodySecret)) {
        return { ok: true, method: "body_secret" };
      }
      reasons.push("body secret does not match" + which);
    }
    return null;
  }

  // Every check is synchronous today; the promise keeps callers free of that detail.
  return { enabled, verify: (request) => Promise.resolve(check(request)) };
}

function checkSignature(
  request: AuthRequest,
  key: HmacKey,
  toleranceSeconds: number,
): true | string {
  const given = request.header("x-signature")!.trim().replace(/^sha256=/i, "");
  const signature = fromHex(given);
  if (signature === null) return "x-signature is not hex";
  const timestamp = request.header("x-signature-timestamp");
  let message: Uint8Array<ArrayBuffer> = request.rawBody;
  if (timestamp) {
    const fresh = checkTimestamp(timestamp, request.nowMs, toleranceSeconds);
    if (fresh !== true) return `x-signature-timestamp ${fresh}`;
    message = concat(encoder.encode(`${timestamp.trim()}.`), request.rawBody);
  }
  return key.verify(signature, message) ? true : "x-signature does not match";
}

function checkStandardWebhooks(
  request: AuthRequest,
  key: HmacKey,
  toleranceSeconds: number,
): true | string {
  const id = request.header("webhook-id");
  const timestamp = request.header("webhook-timestamp");
  if (!id || !timestamp) return "webhook-id and webhook-timestamp are required";
  const fresh = checkTimestamp(timestamp, request.nowMs, toleranceSeconds);
  if (fresh !== true) return `webhook-timestamp ${fresh}`;
  const message = concat(encoder.encode(`${id}.${timestamp.trim()}.`), request.rawBody);
  // The MAC once, then each candidate compared with it: the timestamp is public and the header
  // can hold about 1,300 candidates, and a MAC of the body for each (64 KiB, 0.5 ms) held the
  // event loop for a second or more per forged request.
  const expected = key.sign(message);
  for (const entry of request.header("webhook-signature")!.split(" ")) {
    const [version, encoded] = entry.split(",", 2);
    if (version !== "v1" || !encoded) continue;
    const signature = fromBase64(encoded);
    if (signature === null) continue;
    if (sameMac(expected, signature)) return true;
  }
  return "no webhook-signature matches";
}

function checkTimestamp(value: string, nowMs: number, toleranceSeconds: number): true | string {
  if (!/^\d{1,12}$/.test(value.trim())) return "is not unix seconds";
  const skew = Math.abs(nowMs / 1000 - Number(value.trim()));
  return skew <= toleranceSeconds ? true : `is ${Math.round(skew)} s away from now`;
}

/** Standard Webhooks secrets are `whsec_<base64>`; anything else is used as raw bytes. */
function standardWebhooksKey(secret: string): Uint8Array<ArrayBuffer> {
  if (secret.startsWith("whsec_")) {
    const decoded = fromBase64(secret.slice("whsec_".length));
    if (decoded !== null && decoded.length > 0) return decoded;
  }
  return encoder.encode(secret);
}

interface HmacKey {
  /** The HMAC-SHA256 of `message`. */
  sign(message: Uint8Array): Uint8Array;
  /** Whether `signature` is the HMAC-SHA256 of `message`, compared in constant time. */
  verify(signature: Uint8Array, message: Uint8Array): boolean;
}

function hmacKey(raw: Uint8Array): HmacKey {
  const keyed = hmac.create(sha256Hash, raw);
  const sign = (message: Uint8Array) => keyed.clone().update(message).digest();
  return {
    sign,
    verify(signature, message) {
      // Not worth a MAC when the length already rules it out.
      if (signature.length !== keyed.outputLen) return false;
      return sameMac(sign(message), signature);
    },
  };
}

/** `expected` and `given` compared in constant time. */
function sameMac(expected: Uint8Array, given: Uint8Array): boolean {
  // A MAC's length is no secret; timingSafeEqual needs equal lengths.
  return given.length === expected.length && nodeCrypto.timingSafeEqual(expected, given);
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

function sameDigest(expected: Buffer, given: string): boolean {
  return nodeCrypto.timingSafeEqual(expected, sha256(given));
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** A SHA-256 digest written as 64 hex digits, as bytes; null for anything else. */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  // The built-in decoder: a tenth of the time splitting into pairs and parsing each took.
  return SHA256_HEX.test(hex) ? Uint8Array.fromHex(hex) : null;
}

function fromBase64(value: string): Uint8Array<ArrayBuffer> | null {
  try {
    return Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Hex HMAC-SHA256 of `message` under `secret`: what a sender puts in `x-signature`. */
export async function signHex(secret: string, message: string | Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const bytes = typeof message === "string" ? encoder.encode(message) : message;
  const mac = await crypto.subtle.sign("HMAC", key, bytes as BufferSource);
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}
