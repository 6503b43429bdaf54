/**
 * The canonical signal and `normalizeSignal()`, which turns whatever a
 * TradingView alert message produced (placeholders substituted, aliases,
 * strings for numbers) into it. Total: any input gives a signal or a list of
 * issues, never a throw. Idempotent: a canonical signal normalizes to itself.
 */
import { z } from "zod";
import { storable } from "./payload.ts";

export const DIRECTIONS = ["CALL", "PUT", "EXIT"] as const;
export const ACTIONS = ["ENTRY", "EXIT"] as const;
export type Direction = typeof DIRECTIONS[number];
export type Action = typeof ACTIONS[number];

export const SignalSchema = z.object({
  source: z.string().min(1).max(64),
  symbol: z.string().regex(/^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/),
  exchange: z.string().regex(/^[A-Z0-9_]{1,32}$/).nullable(),
  direction: z.enum(DIRECTIONS),
  action: z.enum(ACTIONS),
  timeframe: z.string().regex(/^\d+[smhDWMT]$/),
  timestamp: z.iso.datetime(),
  price: z.number().positive().finite().nullable(),
  metadata: z.record(z.string(), z.unknown()),
  alertId: z.string().min(1).max(200).nullable(),
});
export type Signal = z.infer<typeof SignalSchema>;

/** A stored signal as the pipeline sees it: its id and when it was received (ISO, UTC). */
export type ReceivedSignal = Signal & { id: string; receivedAt: string };

export interface Issue {
  path: string;
  message: string;
}
export type NormalizeResult =
  | {
    ok: true;
    signal: Signal;
    /**
     * The body's `idempotency_key`, checked as an id is: the sender's promise
     * that the same key is the same request (dedup, not stored on its own).
     */
    idempotencyKey: string | null;
  }
  | { ok: false; issues: Issue[] };

const CALL_WORDS = new Set(["CALL", "CALLS", "BUY", "LONG", "BULL", "BULLISH", "UP"]);
const PUT_WORDS = new Set(["PUT", "PUTS", "SELL", "SHORT", "BEAR", "BEARISH", "DOWN"]);
const EXIT_WORDS = new Set(["EXIT", "FLAT", "CLOSE", "CLOSE_ALL", "FLATTEN"]);
const ENTRY_ACTIONS = new Set(["ENTRY", "ENTER", "OPEN"]);
const EXIT_ACTIONS = new Set(["EXIT", "CLOSE"]);
// No brace inside: with [^}] every "{{" of a field of braces scanned to its end, quadratic
// (a 60 KB field held the event loop for seconds).
const PLACEHOLDER = /\{\{[^{}]*\}\}/;
// Epoch values below this are seconds, above it milliseconds. 1e11 s is the
// year 5138 and 1e11 ms is 1973, so every time from 2000 to 2100 reads right
// either way (1e12, year 2001 in ms, misread Jan-Sep 2001 in ms as seconds).
const EPOCH_MS_THRESHOLD = 1e11;
const MIN_TIME = Date.UTC(2000, 0, 1);
const MAX_TIME = Date.UTC(2100, 0, 1);

type Fields = Record<string, unknown>;

/** Normalizes an already-parsed alert body (the secret removed) into a `Signal`. */
export function normalizeSignal(input: unknown): NormalizeResult {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return fail("", "Alert message must be a JSON object");
  }
  const body = input as Fields;
  const issues: Issue[] = [];
  const need = <T>(path: string, value: T | Invalid): T | undefined => {
    if (isIssue(value)) {
      issues.push({ path: value.path || path, message: value.message });
      return undefined;
    }
    return value;
  };

  const source = need("source", normalizeSource(pick(body, ["source"])));
  const ticker = need("symbol", normalizeTicker(pick(body, ["symbol", "ticker"]), body.exchange));
  const intent = need("direction", normalizeIntent(body));
  const timeframe = need(
    "timeframe",
    normalizeTimeframe(pick(body, ["timeframe", "interval", "tf"])),
  );
  const timestamp = need(
    "timestamp",
    normalizeTime(pick(body, ["timestamp", "time", "timenow"])),
  );
  const price = need("price", normalizePrice(pick(body, ["price", "close"])));
  const metadata = need("metadata", normalizeMetadata(body));
  const alertId = need(
    "id",
    normalizeAlertId(pick(body, ["id", "alert_id", "alertId", "signal_id", "idempotency_key"])),
  );
  const idempotencyKey = need(
    "idempotency_key",
    normalizeAlertId(pick(body, ["idempotency_key"]), "idempotency_key"),
  );
  if (issues.length > 0) return { ok: false, issues };

  const candidate = {
    source,
    symbol: ticker!.symbol,
    exchange: ticker!.exchange,
    direction: intent!.direction,
    action: intent!.action,
    timeframe,
    timestamp,
    price,
    metadata,
    alertId,
  };
  const checked = SignalSchema.safeParse(candidate);
  if (!checked.success) {
    return {
      ok: false,
      issues: checked.error.issues.map((i) => ({
        path: i.path.join("."),
        message: i.message,
      })),
    };
  }
  return { ok: true, signal: checked.data, idempotencyKey: idempotencyKey ?? null };
}

function fail(path: string, message: string): NormalizeResult {
  return { ok: false, issues: [{ path, message }] };
}

/** A field's problem, as a class so no parsed value can be mistaken for one. */
class Invalid {
  constructor(readonly message: string, readonly path = "") {}
  at(path: string): Invalid {
    return new Invalid(this.message, path);
  }
}

function isIssue(value: unknown): value is Invalid {
  return value instanceof Invalid;
}

function issue(message: string, path = ""): Invalid {
  return new Invalid(message, path);
}

/** The first present, non-empty value among the aliases. */
function pick(body: Fields, keys: readonly string[]): unknown {
  for (const key of keys) {
    const value = body[key];
    if (value !== undefined && value !== null && value !== "") return value;
  }
  return undefined;
}

function text(value: unknown, what: string): string | Invalid {
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value !== "string") return issue(`${what} must be a string`);
  // Postgres text and jsonb refuse both; better a 422 here than a failed insert later.
  if (value.includes("\u0000") || !value.isWellFormed()) {
    return issue(`${what} must not contain NUL or unpaired surrogate characters`);
  }
  const trimmed = value.trim();
  if (PLACEHOLDER.test(trimmed)) {
    return issue(
      `${what} contains an unsubstituted TradingView placeholder: ${preview(trimmed)}`,
    );
  }
  return trimmed;
}

/**
 * Up to 40 characters of the input, for a message: whole characters and no
 * control characters, so the message (stored with the refusal) is valid text.
 */
function preview(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.slice(0, 40).toWellFormed().replace(/[\u0000-\u001f\u007f]/g, "\uFFFD");
}

function normalizeSource(value: unknown): string | Invalid {
  if (value === undefined) return "TradingView";
  const s = text(value, "source");
  if (isIssue(s)) return s;
  if (s.length === 0 || s.length > 64) return issue("source must be 1 to 64 characters");
  return s;
}

/**
 * The ticker in `value` as a signal's symbol reads it ("amex:spy" is SPY), or
 * null when it is none: for lists of symbols outside an alert (GEX_SYMBOLS).
 */
export function tickerOf(value: string): string | null {
  const read = normalizeTicker(value, undefined);
  return isIssue(read) ? null : read.symbol;
}

function normalizeTicker(
  value: unknown,
  exchangeField: unknown,
): { symbol: string; exchange: string | null } | Invalid {
  if (value === undefined) return issue("symbol is required (e.g. {{ticker}})");
  const raw = text(value, "symbol");
  if (isIssue(raw)) return raw;
  let symbol = raw.toUpperCase();
  let exchange: string | null = null;
  const colon = symbol.indexOf(":");
  if (colon >= 0) {
    exchange = symbol.slice(0, colon);
    symbol = symbol.slice(colon + 1);
  }
  if (exchange === null && exchangeField !== undefined && exchangeField !== null) {
    const e = text(exchangeField, "exchange");
    if (isIssue(e)) return e.at("exchange");
    exchange = e.length > 0 ? e.toUpperCase() : null;
  }
  if (!/^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/.test(symbol)) {
    return issue(`symbol "${preview(symbol)}" is not a ticker`);
  }
  if (exchange !== null && !/^[A-Z0-9_]{1,32}$/.test(exchange)) {
    return issue(`exchange "${preview(exchange)}" is not an exchange code`, "exchange");
  }
  return { symbol, exchange };
}

/**
 * Direction and action from the fields TradingView alerts carry. A strategy's
 * market position wins over its order action: "sell" while going flat closes
 * a long, it does not open a PUT. Going flat with a previous market position
 * (`{{strategy.prev_market_position}}`) closes that side only: a close and a
 * reversal's new entry fired on one bar may arrive swapped, and a flat that
 * closed every side would then close the new position too.
 */
function normalizeIntent(body: Fields): { direction: Direction; action: Action } | Invalid {
  let action: Action | undefined;
  const actionField = pick(body, ["action"]);
  let directionWord: string | undefined;
  if (actionField !== undefined) {
    const a = text(actionField, "action");
    if (isIssue(a)) return a.at("action");
    const upper = a.toUpperCase();
    if (ENTRY_ACTIONS.has(upper)) action = "ENTRY";
    else if (EXIT_ACTIONS.has(upper)) action = "EXIT";
    // `"action": "{{strategy.order.action}}"` carries buy/sell: a direction.
    else if (CALL_WORDS.has(upper) || PUT_WORDS.has(upper)) directionWord = upper;
    else return issue(`action "${preview(a)}" must be ENTRY or EXIT`, "action");
  }

  // Not "position": templates use that name for {{strategy.position_size}}, a number.
  const position = pick(body, ["market_position", "marketPosition"]);
  const explicit = pick(body, ["direction", "side", "signal"]);
  let direction: Direction | undefined;
  if (position !== undefined) {
    const p = text(position, "market_position");
    if (isIssue(p)) return p.at("market_position");
    direction = directionFromWord(p.toUpperCase());
    if (direction === undefined) {
      return issue(
        `market_position "${preview(p)}" must be long, short or flat`,
        "market_position",
      );
    }
    const prevField = pick(body, ["prev_market_position", "prevMarketPosition"]);
    if (prevField !== undefined) {
      const prev = text(prevField, "prev_market_position");
      if (isIssue(prev)) return prev.at("prev_market_position");
      const left = directionFromWord(prev.toUpperCase());
      if (left === undefined) {
        return issue(
          `prev_market_position "${preview(prev)}" must be long, short or flat`,
          "prev_market_position",
        );
      }
      if (direction === "EXIT" && left !== "EXIT") return { direction: left, action: "EXIT" };
    }
  } else if (explicit !== undefined) {
    const d = text(explicit, "direction");
    if (isIssue(d)) return d;
    const word = d.toUpperCase();
    // On an exit, buy or sell names the closing order to some ("sell" ends a long,
    // {{strategy.order.action}}) and the position to others ("close buy"). One side at
    // most is open per symbol (an entry closes the other), so it closes whatever is.
    direction = action === "EXIT" && (word === "BUY" || word === "SELL")
      ? "EXIT"
      : directionFromWord(word);
    if (direction === undefined) {
      return issue(
        `direction "${
          preview(d)
        }" must be CALL, PUT or EXIT (or an alias such as buy, sell, long, short, flat)`,
      );
    }
  } else if (directionWord !== undefined) {
    direction = directionFromWord(directionWord);
  } else if (action === "EXIT") {
    direction = "EXIT";
  }
  if (direction === undefined) return issue("direction is required (CALL, PUT or EXIT)");
  if (direction === "EXIT") return { direction, action: "EXIT" };
  return { direction, action: action ?? "ENTRY" };
}

function directionFromWord(word: string): Direction | undefined {
  if (CALL_WORDS.has(word)) return "CALL";
  if (PUT_WORDS.has(word)) return "PUT";
  if (EXIT_WORDS.has(word)) return "EXIT";
  return undefined;
}

/**
 * TradingView's `{{interval}}` ("1", "60", "240", "D", "W", "1S", "100T") and
 * the usual "5m", "1h", "1d".
 */
function normalizeTimeframe(value: unknown): string | Invalid {
  if (value === undefined) return issue("timeframe is required (e.g. {{interval}})");
  const raw = text(value, "timeframe");
  if (isIssue(raw)) return raw;
  const m = /^(\d*)\s*([a-zA-Z]*)$/.exec(raw);
  const count = m && m[1] !== "" ? Number(m[1]) : 1;
  if (!m || !Number.isSafeInteger(count) || count <= 0 || count > 100_000) {
    return issue(`timeframe "${preview(raw)}" is not an interval such as 5, 60, D or 5m`);
  }
  const unit = m[2];
  const bare = m[1] !== "" && unit === "";
  const minutes = bare || /^(m|min|mins|minute|minutes)$/.test(unit);
  if (minutes) {
    return count % 60 === 0 ? `${count / 60}h` : `${count}m`;
  }
  if (/^(s|S|sec|secs|second|seconds)$/.test(unit)) return `${count}s`;
  if (/^(h|H|hr|hrs|hour|hours)$/.test(unit)) return `${count}h`;
  if (/^(D|d|day|days)$/.test(unit)) return `${count}D`;
  if (/^(W|w|wk|week|weeks)$/.test(unit)) return `${count}W`;
  if (/^(M|mo|month|months)$/.test(unit)) return `${count}M`;
  // Tick charts ("1T", "100T"): bars of so many trades, no fixed length.
  if (/^(T|tick|ticks)$/.test(unit)) return `${count}T`;
  return issue(`timeframe "${preview(raw)}" is not an interval such as 5, 60, D or 5m`);
}

/** ISO 8601 (`{{time}}`, `{{timenow}}`) or epoch milliseconds or seconds, as number or string. */
function normalizeTime(value: unknown): string | Invalid {
  if (value === undefined) return issue("timestamp is required (e.g. {{timenow}})");
  const raw = typeof value === "number" ? value : text(value, "timestamp");
  if (isIssue(raw)) return raw;
  const read = readTimestamp(raw);
  if (typeof read === "string") return issue(read);
  // Whole milliseconds, so the canonical form parses back to itself.
  return new Date(Math.trunc(read)).toISOString();
}

/**
 * A timestamp as the webhook reads it: epoch milliseconds, or why it is not
 * one. Only with a zone: without one, `Date.parse` would read it in the
 * reading machine's zone. Also for `deno task send --timestamp`.
 */
export function readTimestamp(value: number | string): number | string {
  let ms: number;
  if (typeof value === "number") {
    ms = epochToMs(value);
  } else if (/^\d+(\.\d+)?$/.test(value)) {
    ms = epochToMs(Number(value));
  } else if (
    /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(value)
  ) {
    // Date.parse rolls "2024-02-30" over to March 1; a day the month lacks is an error.
    if (!isCalendarDate(value)) return `timestamp "${preview(value)}" is not a calendar date`;
    ms = Date.parse(value.replace(" ", "T"));
  } else {
    return `timestamp "${
      preview(value)
    }" must be ISO 8601 with a zone (e.g. 2024-01-29T12:00:00Z) or epoch milliseconds`;
  }
  if (!Number.isFinite(ms) || ms < MIN_TIME || ms >= MAX_TIME) {
    return "timestamp must be a real time between 2000 and 2100";
  }
  return ms;
}

function isCalendarDate(iso: string): boolean {
  const [year, month, day] = iso.slice(0, 10).split("-").map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function epochToMs(n: number): number {
  return n < EPOCH_MS_THRESHOLD ? n * 1000 : n;
}

/** A placeholder with nothing to print: null, or TradingView's `NaN`, quoted. */
function noValue(value: unknown): boolean {
  return value === null || (typeof value === "string" && /^\s*nan\s*$/i.test(value));
}

function normalizePrice(value: unknown): number | null | Invalid {
  // No value (a NaN plot, or null): no price; the decision falls back to the context's spot.
  if (value === undefined || noValue(value)) return null;
  // "{{close}}" left as is: say so, as for the other fields.
  const t = typeof value === "string" ? text(value, "price") : null;
  if (isIssue(t)) return t;
  const n = toNumber(value);
  if (n === undefined || n <= 0) return issue("price must be a positive number");
  return n;
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value !== "string") return undefined;
  const trimmed = value.trim();
  // One way to match any digits (not \d+\.?\d*, which tried every split of a long run of
  // digits before failing: quadratic, seconds for a 60 KB field).
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(trimmed)) return undefined;
  const n = Number(trimmed);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * `metadata` as given, with `score` and `confidence` lifted from the top level
 * when the template puts them there. Confidence is a fraction; 85 means 0.85.
 * Made `storable` (no NUL or unpaired surrogates, bounded depth): it goes to jsonb.
 */
function normalizeMetadata(body: Fields): Record<string, unknown> | Invalid {
  const given = body.metadata;
  if (
    given !== undefined && given !== null && (typeof given !== "object" || Array.isArray(given))
  ) {
    return issue("metadata must be an object");
  }
  const metadata: Record<string, unknown> = { ...(given as Fields | undefined ?? {}) };
  for (const key of ["score", "confidence"] as const) {
    if (metadata[key] === undefined && body[key] !== undefined) metadata[key] = body[key];
    // A plot with no value ({{plot_0}} on a bar without one) prints NaN: no value, not a
    // bad alert. The signal is kept and the decision says what the missing value means.
    if (noValue(metadata[key])) delete metadata[key];
  }
  if (metadata.score !== undefined) {
    const score = toNumber(metadata.score);
    if (score === undefined || score < 0 || score > 100) {
      return issue("score must be a number from 0 to 100", "metadata.score");
    }
    metadata.score = score;
  }
  if (metadata.confidence !== undefined) {
    let confidence = toNumber(metadata.confidence);
    if (confidence !== undefined && confidence > 1 && confidence <= 100) confidence /= 100;
    if (confidence === undefined || confidence < 0 || confidence > 1) {
      return issue(
        "confidence must be a fraction from 0 to 1 (or a percentage)",
        "metadata.confidence",
      );
    }
    metadata.confidence = confidence;
  }
  return storable(metadata) as Record<string, unknown>;
}

function normalizeAlertId(value: unknown, what = "id"): string | null | Invalid {
  if (value === undefined) return null;
  const id = text(value, what);
  if (isIssue(id)) return id;
  if (id.length === 0 || id.length > 200) return issue(`${what} must be 1 to 200 characters`);
  return id;
}
