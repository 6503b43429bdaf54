/**
 * What of a request body may be kept: the TradingView-native secret fields
 * come out before anything is stored or logged, and strings are made safe
 * for Postgres jsonb (which refuses NUL and unpaired surrogates).
 */

/** Body fields that carry the webhook secret. */
export const SECRET_FIELDS = ["secret", "passphrase"] as const;

/** Longest payload text kept for a refused request. */
export const MAX_STORED_PAYLOAD = 8 * 1024;

/**
 * Deepest nesting kept by `storable`; anything deeper becomes a marker string.
 * A 64 KiB body can nest 30,000 levels, which overflows the JS stack in a
 * recursive copy (and Postgres's in jsonb); no alert needs more than a few.
 */
export const MAX_STORED_DEPTH = 64;

/**
 * JSON.parse, and failing that, the same text with every bare `NaN`,
 * `Infinity` and `-Infinity` outside strings read as `null`: TradingView
 * prints a plot without a value as `NaN`, so `"score": {{plot_0}}` without
 * quotes makes the whole alert invalid JSON on such a bar. Throws when the
 * text is not JSON either way.
 */
export function parseAlertJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    if (!/NaN|Infinity/.test(text)) throw error;
    return JSON.parse(bareNonNumbersToNull(text));
  }
}

function bareNonNumbersToNull(text: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
      continue;
    }
    const word = /^(-?Infinity|NaN)(?![\w$])/.exec(text.slice(i, i + 10));
    if (word && !/[\w$.]/.test(text[i - 1] ?? "")) {
      out += "null";
      i += word[0].length - 1;
      continue;
    }
    out += ch;
  }
  return out;
}

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

/**
 * A JSON value that Postgres jsonb accepts: strings (keys too) without NUL
 * or unpaired surrogates, nesting cut at `MAX_STORED_DEPTH`. What already
 * is comes back as it was (every webhook's body passes here, and most need
 * nothing), so never mutate the result.
 */
export function storable(value: unknown): unknown {
  return storableAt(value, 0);
}

function storableAt(value: unknown, depth: number): unknown {
  if (typeof value === "string") return clean(value);
  if (typeof value !== "object" || value === null) return value;
  if (depth >= MAX_STORED_DEPTH) return "[nested too deep]";
  return rebuilt(value, (v) => storableAt(v, depth + 1), clean);
}

function clean(s: string): string {
  if (s.isWellFormed() && !s.includes("\u0000")) return s;
  // deno-lint-ignore no-control-regex
  return s.toWellFormed().replace(/\u0000/g, "\uFFFD");
}

/**
 * `container` with `child` applied to every element or value and `key` to
 * every key: the container itself when nothing changed, else a copy.
 */
function rebuilt(
  container: object,
  child: (v: unknown) => unknown,
  key: (k: string) => string,
): unknown {
  if (Array.isArray(container)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < container.length; i++) {
      const v = child(container[i]);
      if (copy === null && v !== container[i]) copy = container.slice(0, i);
      copy?.push(v);
    }
    return copy ?? container;
  }
  const fields = container as Record<string, unknown>;
  const keys = Object.keys(fields);
  let copy: [string, unknown][] | null = null;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const v = fields[k];
    const nk = key(k);
    const nv = child(v);
    if (copy === null && (nk !== k || nv !== v)) {
      copy = keys.slice(0, i).map((same) => [same, fields[same]]);
    }
    copy?.push([nk, nv]);
  }
  // fromEntries defines own properties: a "__proto__" key stays data on any runtime.
  return copy === null ? container : Object.fromEntries(copy);
}

/**
 * `secret: value` in the shapes a broken alert message takes: key bare or in
 * double, single or escaped quotes (JSON inside a JSON string), `:` or `=`,
 * and the value double-, single-, escaped-quoted (maybe unterminated) or bare.
 */
const SECRET_KEY = /(\b(?:secret|passphrase)\b(?:\\?["'])?\s*[:=]\s*)/;
const SECRET_VALUE =
  /(\\"(?:[^\\]|\\[^"])*(?:\\"|\\?$)|"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s"'\\,;&}\]]*)/;
const SECRET_ASSIGNMENT = new RegExp(SECRET_KEY.source + SECRET_VALUE.source, "gi");

/**
 * A body that could not be parsed, made fit to store: secret values blanked
 * by pattern (the body may be broken JSON with a secret in it), truncated and
 * cleaned (after truncating, so a cut surrogate pair is not left half).
 */
export function redactText(text: string, limit = MAX_STORED_PAYLOAD): string {
  const redacted = text.replace(SECRET_ASSIGNMENT, (_match, key: string, value: string) => {
    const quote = /^(\\"|"|')/.exec(value)?.[0] ?? "";
    return `${key}${quote}[redacted]${quote}`;
  });
  return redacted.length > limit
    ? `${clean(redacted.slice(0, limit))}…[truncated]`
    : clean(redacted);
}

/**
 * The secret of a body that is not valid JSON, when it sits in the usual
 * `"secret": "..."` form: an alert template with a typo elsewhere still
 * authenticates, so its sender hears "invalid JSON", not "wrong secret".
 */
export function secretFromText(text: string): string | null {
  const m = /"(?:secret|passphrase)"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(text);
  if (!m) return null;
  try {
    return JSON.parse(`"${m[1]}"`);
  } catch {
    return null;
  }
}

/** A parsed body, secret removed, as text to store with a refused request. */
export function payloadText(payload: unknown, limit = MAX_STORED_PAYLOAD): string {
  return redactText(JSON.stringify(storable(extractSecret(payload).payload)) ?? "", limit);
}

/**
 * Shortest configured secret that is scrubbed wherever it appears: a
 * shorter one (development only; production requires 16) would match
 * ordinary text and mangle the stored alert.
 */
const MIN_SCRUBBED_SECRET = 8;

/**
 * `value` with every occurrence of the configured `secret` in its strings
 * and keys replaced by "[redacted]": a sender that also put the secret
 * somewhere other than `secret`/`passphrase` (in metadata, a comment) must
 * not get it stored.
 */
export function scrubSecret<T>(value: T, secret: string | null): T {
  if (secret === null || secret.length < MIN_SCRUBBED_SECRET) return value;
  const text = (s: string) => s.includes(secret) ? s.replaceAll(secret, "[redacted]") : s;
  const scrub = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return text(v);
    if (typeof v !== "object" || v === null) return v;
    // As deep as anything is stored (storable); a body nested thousands deep must not overflow.
    if (depth >= MAX_STORED_DEPTH) return "[nested too deep]";
    return rebuilt(v, (x) => scrub(x, depth + 1), text);
  };
  return scrub(value, 0) as T;
}
