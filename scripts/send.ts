/**
 * `deno task send [URL] [flags]`: posts a correctly signed sample signal (the
 * deployment guide's, stamped with the current time so each send is a new
 * signal) and prints the answer, so a deployment can be tested in one line.
 * Exit code 0 when every response was 200 (ACCEPTED or DUPLICATE), 1
 * otherwise, 2 for a usage error. The secret is never printed.
 *
 * The pure pieces (`parseSendArgs`, `buildBodies`, `buildRequest`,
 * `describeRequest`) and `runSend` (I/O passed in) are exported for tests;
 * `main()` only wires `runSend` to the process.
 */
import { parseArgs } from "node:util";
import { signHex } from "../core/auth.ts";
import { readTimestamp } from "../core/signal.ts";

export const DEFAULT_URL = "http://127.0.0.1:8080/webhook";
export const AUTH_MODES = ["signature", "timestamp", "standard", "body", "token", "none"] as const;
export type AuthMode = typeof AUTH_MODES[number];
const MAX_COUNT = 1000;
const TIMEOUT_MS = 10_000;
/** TradingView cancels a webhook that takes longer than this. */
const TRADINGVIEW_LIMIT_MS = 3000;
const MASK = "***";

export const HELP = `Send a signed sample signal to the webhook and print the response.

Usage: deno task send [URL] [flags]

URL defaults to $SEND_URL, else ${DEFAULT_URL}; a bare origin
(https://optionstrat-backend.fly.dev) gets /webhook appended.

The body is the deployment guide's sample (TradingView, SPY, CALL, 5m,
metadata score 85, confidence 0.85) with timestamp = now, so each send is a
new signal rather than a DUPLICATE.

Body:
  --symbol S --direction D --action A --timeframe T --price P
  --score N --confidence N --id ID    set these fields
  --timestamp TIME                    ISO 8601 with a zone or epoch s/ms (sent as ISO); default now
  --body JSON | --file PATH           send this body instead (verbatim unless the
                                      flags above are given, which then override its fields)
  -n, --count N                       send N signals, timestamps 1 s apart (ending now,
                                      or starting at --timestamp); an --id gets -1, -2, ...
                                      (a verbatim --body is repeated as is: expect DUPLICATE)
Auth (secret from $WEBHOOK_SECRET, or --secret, which shell history keeps):
  --auth signature   x-signature: sha256=<hex HMAC of the body> (default)
  --auth timestamp   also x-signature-timestamp; signs "<ts>.<body>"
  --auth standard    Standard Webhooks v1 (webhook-id, -timestamp, -signature)
  --auth body        "secret" inside the JSON, as a TradingView alert message
  --auth token       POST <URL>/<secret>, TradingView's URL form
  --auth none        no credentials (a development server without a secret)
Other:
  --dry-run          print the request (secret masked) without sending it
  -h, --help         this text

Exit code: 0 when every response was 200 (ACCEPTED or DUPLICATE), 1 otherwise,
2 for a usage error.

Examples:
  WEBHOOK_SECRET=... deno task send
  deno task send https://optionstrat-backend.fly.dev --auth body --symbol QQQ --direction PUT
  deno task send --count 5 --dry-run`;

/** A mistake in the command line: exit code 2 with this message. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export interface SendPlan {
  url: string;
  secret: string | null;
  auth: AuthMode;
  count: number;
  dryRun: boolean;
  /** Body fields set by flags (`score`/`confidence` go into `metadata`). */
  fields: Record<string, string | number>;
  /** From --timestamp, epoch ms. */
  timestampMs: number | null;
  /** --body text or --file path, when given. */
  bodySource: { text: string } | { file: string } | null;
}

export type ParsedArgs = { help: true } | { help: false; plan: SendPlan };

const FIELD_FLAGS = ["symbol", "direction", "action", "timeframe", "id"] as const;
const NUMBER_FLAGS = ["price", "score", "confidence"] as const;

/** Reads the command line and environment. Throws `UsageError`. */
export function parseSendArgs(
  args: string[],
  env: Record<string, string | undefined>,
): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        symbol: { type: "string" },
        direction: { type: "string" },
        action: { type: "string" },
        timeframe: { type: "string" },
        id: { type: "string" },
        price: { type: "string" },
        score: { type: "string" },
        confidence: { type: "string" },
        timestamp: { type: "string" },
        body: { type: "string" },
        file: { type: "string" },
        secret: { type: "string" },
        auth: { type: "string" },
        count: { type: "string", short: "n" },
        "dry-run": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split(". ")[0] : String(error));
  }
  const { values, positionals } = parsed;
  const flag = (name: string) => (values as Record<string, string | undefined>)[name];
  if (values.help) return { help: true };

  if (positionals.length > 1) {
    throw new UsageError(`Expected at most one URL, got ${positionals.length} arguments`);
  }
  const auth = (flag("auth") ?? "signature") as AuthMode;
  if (!AUTH_MODES.includes(auth)) {
    throw new UsageError(`--auth must be one of ${AUTH_MODES.join(", ")}, got "${auth}"`);
  }
  const secret = flag("secret") ?? (env.WEBHOOK_SECRET?.trim() || null);
  if (auth !== "none" && !secret) {
    throw new UsageError(
      "No secret: set WEBHOOK_SECRET or pass --secret (or --auth none for a server without one)",
    );
  }
  const countText = flag("count") ?? "1";
  const count = /^\d+$/.test(countText) ? Number(countText) : NaN;
  if (!(count >= 1 && count <= MAX_COUNT)) {
    throw new UsageError(
      `--count must be a whole number from 1 to ${MAX_COUNT}, got "${countText}"`,
    );
  }
  if (flag("body") !== undefined && flag("file") !== undefined) {
    throw new UsageError("Give --body or --file, not both");
  }

  const fields: Record<string, string | number> = {};
  for (const name of FIELD_FLAGS) {
    const value = flag(name);
    if (value !== undefined) fields[name] = value;
  }
  for (const name of NUMBER_FLAGS) {
    const value = flag(name);
    if (value === undefined) continue;
    const n = Number(value);
    // Decimal only: Number() also reads "0x10" as 16 and "0b11" as 3.
    if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) || !Number.isFinite(n)) {
      throw new UsageError(`--${name} must be a number, got "${value}"`);
    }
    fields[name] = n;
  }
  const timestamp = flag("timestamp");
  const timestampMs = timestamp === undefined ? null : parseTime(timestamp);

  return {
    help: false,
    plan: {
      url: webhookUrl(positionals[0] ?? (env.SEND_URL?.trim() || DEFAULT_URL)),
      secret,
      auth,
      count,
      dryRun: values["dry-run"] === true,
      fields,
      timestampMs,
      bodySource: flag("body") !== undefined
        ? { text: flag("body")! }
        : flag("file") !== undefined
        ? { file: flag("file")! }
        : null,
    },
  };
}

function webhookUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`"${text}" is not a URL (expected e.g. ${DEFAULT_URL})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`The URL must be http:// or https://, got "${url.protocol}"`);
  }
  if (url.pathname === "/") url.pathname = "/webhook";
  return url.toString();
}

/** As the webhook reads it (core/signal.ts): with a zone, or epoch seconds/milliseconds. */
function parseTime(text: string): number {
  const read = readTimestamp(text);
  if (typeof read === "string") {
    throw new UsageError(`--timestamp: ${read}`);
  }
  return read;
}

/** The guide's sample signal, before the timestamp is set. */
export const SAMPLE_SIGNAL = {
  source: "TradingView",
  symbol: "SPY",
  direction: "CALL",
  timeframe: "5m",
  metadata: { score: 85, confidence: 0.85 },
} as const;

/**
 * The bodies to send, one per `count`. Without --body/--file: the sample with
 * the flags' fields and timestamps 1 s apart (starting at --timestamp, or
 * ending at `nowMs` so none is in the future). With one: that text verbatim,
 * unless flags set fields, which then override its fields.
 */
export function buildBodies(plan: SendPlan, baseText: string | null, nowMs: number): string[] {
  const overrides = Object.keys(plan.fields).length > 0 || plan.timestampMs !== null;
  if (baseText !== null && !overrides) return Array(plan.count).fill(baseText);

  let base: Record<string, unknown>;
  if (baseText === null) {
    base = { ...SAMPLE_SIGNAL, metadata: { ...SAMPLE_SIGNAL.metadata } };
  } else {
    const parsed = tryJson(baseText);
    if (!isObject(parsed)) {
      throw new UsageError("Field flags need a --body/--file that is a JSON object");
    }
    base = parsed;
  }
  const start = plan.timestampMs ?? (baseText === null ? nowMs - (plan.count - 1) * 1000 : null);
  return Array.from({ length: plan.count }, (_, i) => {
    const body: Record<string, unknown> = { ...base };
    const { score, confidence, id, ...rest } = plan.fields;
    Object.assign(body, rest);
    if (start !== null) body.timestamp = new Date(start + i * 1000).toISOString();
    if (id !== undefined) body.id = plan.count > 1 ? `${id}-${i + 1}` : id;
    if (score !== undefined || confidence !== undefined) {
      body.metadata = {
        ...(isObject(body.metadata) ? body.metadata : {}),
        ...(score !== undefined ? { score } : {}),
        ...(confidence !== undefined ? { confidence } : {}),
      };
    }
    // The guide's field order, then anything else.
    return JSON.stringify(ordered(body));
  });
}

const FIELD_ORDER = [
  "source",
  "symbol",
  "direction",
  "action",
  "timeframe",
  "timestamp",
  "price",
  "id",
  "metadata",
];

function ordered(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of FIELD_ORDER) if (key in body) out[key] = body[key];
  for (const [key, value] of Object.entries(body)) if (!(key in out)) out[key] = value;
  return out;
}

export interface RequestOptions {
  url: string;
  body: string;
  auth: AuthMode;
  secret: string | null;
  /** Epoch ms, for the signed timestamps. */
  nowMs: number;
  /** Standard Webhooks message id; random by default. */
  webhookId?: string;
}

export interface BuiltRequest {
  url: string;
  init: { method: "POST"; headers: Record<string, string>; body: string };
  /** The same request with the secret masked, for printing. */
  shown: { url: string; headers: Record<string, string>; body: string };
}

/** The request for one body under one auth mode. Throws `UsageError`. */
export async function buildRequest(options: RequestOptions): Promise<BuiltRequest> {
  const { auth, nowMs } = options;
  const secret = options.secret ?? "";
  if (auth !== "none" && secret === "") throw new UsageError(`--auth ${auth} needs a secret`);
  let url = options.url;
  let shownUrl = url;
  let body = options.body;
  let shownBody = body;
  const headers: Record<string, string> = {
    // TradingView sends text/plain when the alert message is not JSON.
    "content-type": tryJson(body) !== undefined ? "application/json" : "text/plain; charset=utf-8",
  };
  const seconds = String(Math.floor(nowMs / 1000));

  switch (auth) {
    case "signature":
      headers["x-signature"] = `sha256=${await signHex(secret, body)}`;
      break;
    case "timestamp":
      headers["x-signature-timestamp"] = seconds;
      headers["x-signature"] = `sha256=${await signHex(secret, `${seconds}.${body}`)}`;
      break;
    case "standard": {
      const id = options.webhookId ?? `msg_${crypto.randomUUID()}`;
      headers["webhook-id"] = id;
      headers["webhook-timestamp"] = seconds;
      headers["webhook-signature"] = `v1,${await signBase64(
        standardWebhooksKey(secret),
        `${id}.${seconds}.${body}`,
      )}`;
      break;
    }
    case "body": {
      const parsed = tryJson(body);
      if (!isObject(parsed)) {
        throw new UsageError("--auth body needs a body that is a JSON object");
      }
      body = JSON.stringify({ ...parsed, secret });
      shownBody = JSON.stringify({ ...parsed, secret: MASK });
      break;
    }
    case "token": {
      // In the path, before any query: appended to the whole URL it landed in the query.
      const target = new URL(url);
      const base = target.pathname.replace(/\/+$/, "");
      target.pathname = `${base}/${encodeURIComponent(secret)}`;
      url = target.toString();
      target.pathname = `${base}/${MASK}`;
      shownUrl = target.toString();
      break;
    }
    case "none":
      break;
  }
  return {
    url,
    init: { method: "POST", headers, body },
    shown: { url: shownUrl, headers: { ...headers }, body: shownBody },
  };
}

/** The request as text (method, URL, headers, body), secret masked. */
export function describeRequest(request: BuiltRequest): string {
  const { url, headers, body } = request.shown;
  return [
    `POST ${url}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    "",
    body,
  ].join("\n");
}

export interface SendIo {
  env: Record<string, string | undefined>;
  print(text: string): void;
  printError(text: string): void;
  fetch?: typeof fetch;
  readTextFile?: (path: string) => Promise<string>;
  now?: () => number;
}

export interface SendResult {
  /** HTTP status; 0 when there was no response. */
  status: number;
  /** The parsed JSON response, or its text when it was not JSON. */
  body: unknown;
  ms: number;
}

export interface SendOutcome {
  exitCode: 0 | 1 | 2;
  results: SendResult[];
}

/** The whole command: parse, build, send (or print), report. Never throws for usage errors. */
export async function runSend(args: string[], io: SendIo): Promise<SendOutcome> {
  const doFetch = io.fetch ?? fetch;
  const now = io.now ?? Date.now;
  let plan: SendPlan;
  let bodies: string[];
  try {
    const parsed = parseSendArgs(args, io.env);
    if (parsed.help) {
      io.print(HELP);
      return { exitCode: 0, results: [] };
    }
    plan = parsed.plan;
    let baseText: string | null = null;
    if (plan.bodySource !== null) {
      baseText = "text" in plan.bodySource
        ? plan.bodySource.text
        : await readFile(plan.bodySource.file, io.readTextFile ?? Deno.readTextFile);
    }
    bodies = buildBodies(plan, baseText, now());
    // Build once up front so a body that cannot carry the auth fails before anything is sent.
    await buildRequest({ ...plan, body: bodies[0], nowMs: now() });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.printError(`${error.message}\nRun with --help for usage.`);
    return { exitCode: 2, results: [] };
  }

  const results: SendResult[] = [];
  for (const body of bodies) {
    const request = await buildRequest({ ...plan, body, nowMs: now() });
    if (plan.dryRun) {
      io.print(describeRequest(request));
      if (bodies.length > 1) io.print("");
      continue;
    }
    const result = await sendOne(request, doFetch);
    results.push(result);
    const label = `POST ${request.shown.url} (${plan.auth})`;
    if (result.status === 0) {
      io.printError(`${label}: ${result.body}`);
      break; // The server is not there; the rest would fail the same way.
    }
    const slow = result.ms > TRADINGVIEW_LIMIT_MS
      ? ` (slower than TradingView's ${TRADINGVIEW_LIMIT_MS / 1000} s limit)`
      : "";
    io.print(`${label} -> ${statusText(result)} in ${result.ms} ms${slow}`);
    io.print(typeof result.body === "string" ? result.body : JSON.stringify(result.body, null, 2));
  }
  if (plan.dryRun) {
    io.print(`(dry run: ${bodies.length} request${bodies.length === 1 ? "" : "s"} not sent)`);
    return { exitCode: 0, results };
  }
  if (bodies.length > 1) io.print(summary(results, bodies.length));
  const ok = results.length === bodies.length && results.every((r) => r.status === 200);
  return { exitCode: ok ? 0 : 1, results };
}

async function readFile(path: string, read: (path: string) => Promise<string>): Promise<string> {
  try {
    return await read(path);
  } catch (error) {
    throw new UsageError(`Cannot read --file ${path}: ${(error as Error).message}`);
  }
}

async function sendOne(request: BuiltRequest, doFetch: typeof fetch): Promise<SendResult> {
  const started = performance.now();
  try {
    const response = await doFetch(request.url, {
      ...request.init,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await response.text();
    const ms = Math.round(performance.now() - started);
    const json = tryJson(text);
    return { status: response.status, body: json === undefined ? text.slice(0, 2000) : json, ms };
  } catch (error) {
    const ms = Math.round(performance.now() - started);
    const reason = error instanceof DOMException && error.name === "TimeoutError"
      ? `no response within ${TIMEOUT_MS / 1000} s`
      : `cannot reach the server: ${networkReason(error)}`;
    // The URL in a network error would show a token-mode secret.
    return { status: 0, body: reason.replaceAll(request.url, request.shown.url), ms };
  }
}

/** Deno's fetch says "fetch failed"; the cause says why, after the URL. */
function networkReason(error: unknown): string {
  const cause = (error as { cause?: unknown })?.cause;
  const message = cause instanceof Error ? cause.message : (error as Error)?.message;
  return String(message).replace(/^error sending request for url \([^)]*\): /, "");
}

function summary(results: SendResult[], planned: number): string {
  const tally = new Map<string, number>();
  for (const r of results) {
    const status = statusText(r);
    tally.set(status, (tally.get(status) ?? 0) + 1);
  }
  const parts = [...tally].map(([status, n]) => `${n} x ${status}`);
  if (results.length < planned) parts.push(`${planned - results.length} not sent`);
  return `${planned} requests: ${parts.join(", ")}`;
}

/** "200 ACCEPTED", "401 REJECTED", "502", "no response". */
function statusText(result: SendResult): string {
  if (result.status === 0) return "no response";
  return isObject(result.body) && typeof result.body.status === "string"
    ? `${result.status} ${result.body.status}`
    : String(result.status);
}

/** Standard Webhooks secrets are `whsec_<base64>`; anything else is used as raw bytes (as core/auth.ts does). */
function standardWebhooksKey(secret: string): Uint8Array<ArrayBuffer> {
  if (secret.startsWith("whsec_")) {
    try {
      const decoded = Uint8Array.from(atob(secret.slice(6)), (c) => c.charCodeAt(0));
      if (decoded.length > 0) return decoded;
    } catch {
      // Not base64: the raw text is the key.
    }
  }
  return new TextEncoder().encode(secret);
}

async function signBase64(key: Uint8Array<ArrayBuffer>, message: string): Promise<string> {
  const hmac = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(message));
  return btoa(String.fromCharCode(...new Uint8Array(mac)));
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function main(): Promise<number> {
  const { exitCode } = await runSend(Deno.args, {
    env: Deno.env.toObject(),
    print: (text) => console.log(text),
    printError: (text) => console.error(text),
  });
  return exitCode;
}

if (import.meta.main) Deno.exit(await main());
