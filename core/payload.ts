/**
 * What of a request body may be kept: the TradingView-native secret fields
 * come out before anything is stored or logged, and strings are made safe
 * for Postgres jsonb (which refuses NUL and unpaired surrogates).
 */

/** Body fields that carry the webhook secret. */
export const SECRET_FIELDS = ["secret", "passphrase"] as const;

/** Longest payload text kept for a refused request. */
export const MAX_STORED_PAYLOAD = 8 * 1024;

export interface Extracted {
  /** The first secret field's value, when it is a string. */
  secret: string | null;
  /** The body without its secret fields. */
  payload: unknown;
}

/** Splits the secret from a parsed body. Only a top-level object can carry one. */
export function extractSecret(body: unknown): Extracted {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { secret: null, payload: body };
  }
  const rest: Record<string, unknown> = { ...body as Record<string, unknown> };
  let secret: string | null = null;
  for (const field of SECRET_FIELDS) {
    if (field in rest) {
      if (secret === null && typeof rest[field] === "string") secret = rest[field] as string;
      delete rest[field];
    }
  }
  return { secret, payload: rest };
}

/** A copy of a JSON value whose strings (keys too) Postgres jsonb accepts. */
export function storable(value: unknown): unknown {
  if (typeof value === "string") return clean(value);
  if (Array.isArray(value)) return value.map(storable);
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[clean(k)] = storable(v);
    return out;
  }
  return value;
}

function clean(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.toWellFormed().replace(/\u0000/g, "\uFFFD");
}

/**
 * A body that could not be parsed, made fit to store: secret values blanked
 * by pattern (the body may be broken JSON with a secret in it), cleaned and
 * truncated.
 */
export function redactText(text: string, limit = MAX_STORED_PAYLOAD): string {
  const redacted = text.replace(
    /("(?:secret|passphrase)"\s*:\s*)"(?:[^"\\]|\\.)*"?/gi,
    '$1"[redacted]"',
  );
  const cleaned = clean(redacted);
  return cleaned.length > limit ? `${cleaned.slice(0, limit)}…[truncated]` : cleaned;
}

/** A parsed body, secret removed, as text to store with a refused request. */
export function payloadText(payload: unknown, limit = MAX_STORED_PAYLOAD): string {
  return redactText(JSON.stringify(storable(extractSecret(payload).payload)) ?? "", limit);
}
