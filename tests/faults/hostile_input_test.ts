/**
 * Hostile input, the fuzz layer of the fault suite: the real app on a real
 * database answering what an attacker or a broken sender posts. It proves:
 * - fast-check bodies and headers (random bytes, nesting thousands deep, huge
 *   numbers, prototype-pollution keys, unicode edge cases, wrong content
 *   types, signature look-alikes, random headers) never get a 5xx; every
 *   refusal is JSON whose stable code maps to its status; nothing without a
 *   credential valid for exactly its body is ever ACCEPTED or DUPLICATE; the
 *   signals table holds exactly the ACCEPTED answers to requests the test
 *   signed; no prototype is polluted. At least 10,000 requests; the last test
 *   prints the count;
 * - malformed HTTP on a real socket (Deno.serve) gets no 5xx, and the server
 *   keeps serving;
 * - replays outside the timestamp window (either scheme) and signatures over
 *   another body are 401 with nothing stored;
 * - an HMAC verdict is one constant-time comparison (timingSafeEqual) of the
 *   whole candidate with the message's MAC, wherever a forgery differs (no
 *   early return on a first byte);
 *   a plain secret wrong at any position gets the same refusal;
 * - the body secret, right or wrong, in any shape, reaches no table and no log line;
 * - SQL-looking symbols in the ticker charset are stored verbatim, SQL
 *   injections outside it are 422 and kept verbatim among the refusals, SQL
 *   in free text is stored verbatim, and every table survives;
 * - every operator route refuses a missing, wrong, cut or extended token;
 * - in production the process refuses to start without WEBHOOK_SECRET or
 *   OPERATOR_TOKEN, names what is missing, and never listens.
 */
import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { reset } from "@logtape/logtape";
import fc from "fast-check";
import type { Hono } from "hono";
import type { AppEnv } from "../../app_env.ts";
import type { Services } from "../../compose.ts";
import { signHex } from "../../core/auth.ts";
import { codeToStatus, type ErrorCode } from "../../core/errors.ts";
import { scrubSecret } from "../../core/payload.ts";
import type { Database } from "../../db/port.ts";
import { setupLogging } from "../../logging.ts";
import { SECRET, signed, standardWebhooks, testServices, uniqueSignal } from "../_app.ts";
import { dbTest, POSTGRES_REACHABLE } from "../_db.ts";
import { freePort, spawnMain } from "../_service.ts";

/** 2024-01-29T12:00:00Z. A fixed clock puts the window's edges at exact skews. */
const NOW_S = 1_706_529_600;
const NOW_MS = NOW_S * 1000;
/** SIGNATURE_TOLERANCE_SECONDS and WEBHOOK_MAX_BODY_BYTES, the defaults. */
const TOLERANCE_S = 300;
const LIMIT = 64 * 1024;
/** app.request() has no socket, so every request shares one rate-limit key. */
const ENV = { RATE_LIMIT_PER_MINUTE: "10000000" };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const realTimingSafeEqual = nodeCrypto.timingSafeEqual;

/** Over the whole file; the last test prints it. */
const tally = { requests: 0, fiveXx: 0, webhookFuzzRan: false };

// --- requests and what may come back -----------------------------------------

interface Probe {
  label: string;
  path: string;
  body: Uint8Array<ArrayBuffer>;
  headers: Record<string, string>;
  /** Some credential is valid for exactly this body: the only kind that may pass. */
  genuine: boolean;
  /** Genuine, a valid alert and within the size limit: must be ACCEPTED or DUPLICATE. */
  mustAccept: boolean;
}

interface Reply {
  status?: string;
  signal_id?: string;
  correlation_id?: string;
  error?: { code?: string; message?: string; issues?: { path: string; message: string }[] };
}

interface Answer {
  status: number;
  json: Reply;
}

/** What one test sent and what it was told. */
class Ledger {
  requests = 0;
  /** signal_id of every ACCEPTED answer. */
  accepted = new Set<string>();
  /** signal_id of every DUPLICATE answer. */
  duplicatesOf = new Set<string>();
  statuses = new Map<number, number>();
  summary(): string {
    return [...this.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}x${n}`).join(" ");
  }
}

function parseReply(text: string, what: string): Reply {
  try {
    return JSON.parse(text);
  } catch {
    throw new assert.AssertionError({ message: `answer is not JSON: ${what}` });
  }
}

/**
 * Sends a probe and checks what every answer must be: below 500; JSON; a
 * refusal carries a known code whose status is the one sent; a forgery is
 * refused (401 in the one shape that says nothing) and never ACCEPTED or
 * DUPLICATE; a genuine request is ACCEPTED, DUPLICATE or a 4xx about its body.
 */
async function fire(s: Services, p: Probe, ledger: Ledger): Promise<Answer> {
  const res = await s.app.request(p.path, { method: "POST", body: p.body, headers: p.headers });
  ledger.requests++;
  tally.requests++;
  ledger.statuses.set(res.status, (ledger.statuses.get(res.status) ?? 0) + 1);
  const text = await res.text();
  const what = `${p.label} [${p.genuine ? "genuine" : "forged"}] ${p.path} -> ${res.status} ${
    text.slice(0, 300)
  }`;
  if (res.status >= 500) tally.fiveXx++;
  assert.ok(res.status < 500, what);
  const json = parseReply(text, what);
  if (res.status >= 400) {
    assert.equal(json.status, "REJECTED", what);
    assert.equal(codeToStatus(json.error?.code as ErrorCode), res.status, what);
    assert.equal(typeof json.error?.message, "string", what);
    assert.equal(typeof json.correlation_id, "string", what);
  } else {
    assert.equal(res.status, 200, what);
    assert.ok(json.status === "ACCEPTED" || json.status === "DUPLICATE", what);
  }
  if (p.genuine) {
    assert.ok([200, 400, 413, 415, 422].includes(res.status), what);
    if (p.mustAccept) assert.equal(res.status, 200, what);
  } else {
    assert.ok(json.status !== "ACCEPTED" && json.status !== "DUPLICATE", `FORGERY PASSED: ${what}`);
    const allowed = p.path === "/webhook" ? [401, 413] : [401, 404, 413];
    assert.ok(allowed.includes(res.status), what);
    if (res.status === 401) {
      assert.deepEqual(
        json.error,
        { code: "UNAUTHORIZED", message: "Authentication failed" },
        what,
      );
    }
  }
  if (json.status === "ACCEPTED") {
    assert.ok(!ledger.accepted.has(json.signal_id!), `signal id reused: ${what}`);
    ledger.accepted.add(json.signal_id!);
  }
  // Checked at the end: under concurrency the original's answer may come second.
  if (json.status === "DUPLICATE") ledger.duplicatesOf.add(json.signal_id!);
  return { status: res.status, json };
}

/**
 * The signals table holds exactly the signals answered ACCEPTED (all to genuine
 * requests), and every DUPLICATE pointed at one of them.
 */
async function assertStoredExactly(db: Database, ledger: Ledger): Promise<void> {
  const rows = await db.query<{ id: string }>("select id::text as id from signals");
  assert.deepEqual(new Set(rows.map((r) => r.id)), ledger.accepted);
  for (const id of ledger.duplicatesOf) assert.ok(ledger.accepted.has(id), `duplicate of ${id}`);
}

/** Requests per fast-check run: in flight together, as a sender's retries and bursts are. */
const BATCH = 4;

/**
 * fast-check runs for about `requests` requests (a whole number: fc loops on a fraction), and
 * never fewer than 100 runs, as every property in the suite.
 */
function runsFor(requests: number): number {
  return Math.max(100, Math.ceil(requests / BATCH));
}

/** A property over BATCH values of `arb` at a time, checked concurrently. */
function batched<T>(arb: fc.Arbitrary<T>, check: (value: T) => Promise<void>) {
  return fc.asyncProperty(
    fc.array(arb, { minLength: BATCH, maxLength: BATCH }),
    (values) => allOf(values, check),
  );
}

/** Runs `fn` on every element at once; fails with the first failure once all have settled. */
async function allOf<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(items.map(fn));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

function prototypes(): string {
  return [Object, Array, Function, String, Number, Boolean, Promise, RegExp]
    .map((c) => Object.getOwnPropertyNames(c.prototype).sort().join(","))
    .join("|");
}

function assertUnpolluted(before: string, what: string): void {
  assert.equal(prototypes(), before, `a prototype changed: ${what}`);
  for (const probe of [{}, [], Object.create(Object.prototype), () => {}]) {
    const p = probe as Record<string, unknown>;
    assert.equal(p.polluted, undefined, `polluted: ${what}`);
    assert.equal(p.isAdmin, undefined, `polluted: ${what}`);
  }
}

// --- byte helpers --------------------------------------------------------------

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One byte per character: raw HTTP may carry any byte. */
function latin1(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}

function hexBytes(hex: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

/** `hex` with nibble `index` changed by `by` (1..15): always a different signature. */
function flipHex(hex: string, index: number, by: number): string {
  const nibble = ((parseInt(hex[index], 16) + by) % 16).toString(16);
  return hex.slice(0, index) + nibble + hex.slice(index + 1);
}

function percentEncodeAll(s: string): string {
  return Array.from(encoder.encode(s), (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`)
    .join("");
}

// --- credentials, genuine and forged -------------------------------------------

type HexForm = "exact" | "upper" | "sha256=" | "SHA256=" | "spaced";
type XSig =
  | { kind: "hex"; form: HexForm }
  | { kind: "stamped"; skew: number; form: HexForm }
  | { kind: "flip"; index: number; by: number }
  | { kind: "cut"; n: number }
  | { kind: "extend"; extra: string }
  | { kind: "base64" }
  | { kind: "other-body"; suffix: string }
  | { kind: "wrong-secret"; secret: string }
  | { kind: "stale"; skew: number }
  | { kind: "restamped"; skew: number; shift: number }
  | { kind: "stamp-unsigned"; skew: number }
  | { kind: "stamp-dropped"; skew: number }
  | { kind: "bad-stamp"; stamp: string }
  | { kind: "list"; flips: number[]; separator: string }
  | { kind: "junk"; value: string };

type Sw =
  | { kind: "sw"; skew: number; others: string[]; at: number; junk: string[] }
  | { kind: "sw-wrong"; secrets: string[] }
  | { kind: "sw-stale"; skew: number }
  | { kind: "sw-id"; id: string }
  | { kind: "sw-ts-shift"; skew: number; shift: number }
  | { kind: "sw-v2" }
  | { kind: "sw-hex" }
  | { kind: "sw-flip"; index: number; bit: number }
  | { kind: "sw-no-id" }
  | { kind: "sw-no-ts" }
  | { kind: "sw-body"; suffix: string }
  | { kind: "sw-junk"; value: string };

/** A field added to a JSON object body (whether it authenticates is read off the final body). */
interface BodyField {
  field: string;
  value: unknown;
  last: boolean;
}

type UrlToken = { kind: "url"; encoded: boolean } | { kind: "url-bad"; token: string };

interface Creds {
  xsig?: XSig | null;
  sw?: Sw | null;
  body?: BodyField | null;
  url?: UrlToken | null;
}

const inWindow = fc.integer({ min: -TOLERANCE_S, max: TOLERANCE_S });
const outOfWindow = fc.oneof(
  fc.integer({ min: TOLERANCE_S + 1, max: 10 * 365 * 86_400 }),
  fc.integer({ min: -NOW_S, max: -TOLERANCE_S - 1 }),
);
/** A shift that moves a skew to another one still inside the window. */
const shiftedInWindow = fc.tuple(inWindow, fc.integer({ min: 1, max: 50 }), fc.boolean()).map((
  [skew, by, up],
) => {
  const shift = up ? by : -by;
  return { skew, shift: Math.abs(skew + shift) <= TOLERANCE_S ? shift : -shift };
});
/** A secret someone might try: close to the real one, or anything else. */
const wrongSecret = fc.oneof(
  fc.constantFrom(SECRET.slice(0, -1), `${SECRET}x`, SECRET.toUpperCase(), ` ${SECRET}`),
  fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s !== SECRET),
);
/** Header values: any byte a header can carry (no NUL, CR or LF). */
const headerText = fc.stringMatching(/^[\x21-\x7e\x80-\xff][\x20-\x7e\x80-\xff\t]{0,80}$/);
const hexForm = fc.constantFrom<HexForm>("exact", "upper", "sha256=", "SHA256=", "spaced");

const xsigGenuine: fc.Arbitrary<XSig> = fc.oneof(
  hexForm.map((form): XSig => ({ kind: "hex", form })),
  fc.record({ skew: inWindow, form: hexForm }).map((r): XSig => ({ kind: "stamped", ...r })),
);
const xsigForged: fc.Arbitrary<XSig> = fc.oneof(
  fc.record({ index: fc.integer({ min: 0, max: 63 }), by: fc.integer({ min: 1, max: 15 }) })
    .map((r): XSig => ({ kind: "flip", ...r })),
  fc.integer({ min: 1, max: 63 }).map((n): XSig => ({ kind: "cut", n })),
  fc.stringMatching(/^[0-9a-f]{1,4}$/).map((extra): XSig => ({ kind: "extend", extra })),
  fc.constant<XSig>({ kind: "base64" }),
  fc.string({ minLength: 1, maxLength: 8 }).map((suffix): XSig => ({ kind: "other-body", suffix })),
  wrongSecret.map((secret): XSig => ({ kind: "wrong-secret", secret })),
  outOfWindow.map((skew): XSig => ({ kind: "stale", skew })),
  shiftedInWindow.map((r): XSig => ({ kind: "restamped", ...r })),
  inWindow.map((skew): XSig => ({ kind: "stamp-unsigned", skew })),
  inWindow.map((skew): XSig => ({ kind: "stamp-dropped", skew })),
  fc.constantFrom(
    "now",
    "-1",
    "1e9",
    "0x65B7A2C0",
    `${NOW_S}.0`,
    `+${NOW_S}`,
    `${NOW_MS}`,
    "",
  ).map((stamp): XSig => ({ kind: "bad-stamp", stamp })),
  fc.record({
    flips: fc.array(fc.integer({ min: 0, max: 63 }), { minLength: 2, maxLength: 3 }),
    separator: fc.constantFrom(",", ", ", " "),
  }).map((r): XSig => ({ kind: "list", ...r })),
  headerText.map((value): XSig => ({ kind: "junk", value })),
);

const swGenuine: fc.Arbitrary<Sw> = fc.record({
  skew: inWindow,
  others: fc.array(wrongSecret, { maxLength: 2 }),
  at: fc.nat(3),
  junk: fc.array(fc.constantFrom("v1,", "v1,!!!", "v0,abc", ",", "v1", "v1,AAAA", "v2,x"), {
    maxLength: 2,
  }),
}).map((r): Sw => ({ kind: "sw", ...r }));
const swForged: fc.Arbitrary<Sw> = fc.oneof(
  fc.array(wrongSecret, { minLength: 1, maxLength: 2 }).map((secrets): Sw => ({
    kind: "sw-wrong",
    secrets,
  })),
  outOfWindow.map((skew): Sw => ({ kind: "sw-stale", skew })),
  fc.stringMatching(/^msg_[a-z0-9]{1,20}$/).map((id): Sw => ({ kind: "sw-id", id })),
  shiftedInWindow.map((r): Sw => ({ kind: "sw-ts-shift", ...r })),
  fc.constantFrom<Sw>({ kind: "sw-v2" }, { kind: "sw-hex" }, { kind: "sw-no-id" }, {
    kind: "sw-no-ts",
  }),
  fc.record({ index: fc.nat(31), bit: fc.nat(7) }).map((r): Sw => ({ kind: "sw-flip", ...r })),
  fc.string({ minLength: 1, maxLength: 8 }).map((suffix): Sw => ({ kind: "sw-body", suffix })),
  headerText.map((value): Sw => ({ kind: "sw-junk", value })),
);

const bodyGenuine: fc.Arbitrary<BodyField> = fc.record({
  field: fc.constantFrom("secret", "passphrase"),
  value: fc.constant(SECRET),
  last: fc.boolean(),
});
const bodyForged: fc.Arbitrary<BodyField> = fc.oneof(
  fc.record({
    field: fc.constantFrom("secret", "passphrase"),
    value: fc.oneof(
      wrongSecret,
      fc.constantFrom<unknown>(123, [SECRET], { v: SECRET }, null, true, ""),
    ),
    last: fc.boolean(),
  }),
  fc.record({
    field: fc.constantFrom("Secret", "SECRET", "secret ", "pass_phrase", "token", "password"),
    value: fc.constant(SECRET),
    last: fc.boolean(),
  }),
);

const urlForged: fc.Arbitrary<UrlToken> = fc.oneof(
  fc.integer({ min: 1, max: SECRET.length - 1 }).map((n) => SECRET.slice(0, n)),
  fc.string({ minLength: 1, maxLength: 5 }).map((x) => SECRET + encodeURIComponent(x)),
  fc.tuple(fc.nat(SECRET.length - 1), fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-"))
    .filter(([i, c]) => SECRET[i] !== c)
    .map(([i, c]) => SECRET.slice(0, i) + c + SECRET.slice(i + 1)),
  fc.constantFrom(
    SECRET.toUpperCase(),
    encodeURIComponent(percentEncodeAll(SECRET)),
    `${SECRET}%00`,
    `%20${SECRET}`,
    `${SECRET}%2F`,
    `${SECRET};`,
  ),
  // Not "." or "..": the URL would resolve them away, to another route.
  fc.string({ minLength: 1, maxLength: 40 }).filter((x) => x !== SECRET && !/^\.{1,2}$/.test(x))
    .map(encodeURIComponent),
).map((token): UrlToken => ({ kind: "url-bad", token }));

/** Mostly forged look-alikes on several channels; half the time one genuine credential among them. */
const credentials: fc.Arbitrary<Creds> = fc.record({
  xsig: fc.option(xsigForged, { freq: 3 }),
  sw: fc.option(swForged, { freq: 4 }),
  body: fc.option(bodyForged, { freq: 4 }),
  url: fc.option(urlForged, { freq: 6 }),
  genuine: fc.option(
    fc.oneof(
      { weight: 5, arbitrary: xsigGenuine.map((xsig): Creds => ({ xsig })) },
      { weight: 2, arbitrary: swGenuine.map((sw): Creds => ({ sw })) },
      { weight: 2, arbitrary: bodyGenuine.map((body): Creds => ({ body })) },
      {
        weight: 1,
        arbitrary: fc.boolean().map((encoded): Creds => ({ url: { kind: "url", encoded } })),
      },
    ),
    { freq: 2 },
  ),
}).map(({ genuine, ...forged }) => ({ ...forged, ...genuine }));

async function xSignature(
  spec: XSig,
  body: Uint8Array,
): Promise<{ headers: Record<string, string>; genuine: boolean }> {
  const hmac = (message: Uint8Array, secret = SECRET) => signHex(secret, message);
  const stamped = (ts: number | string) => concat(encoder.encode(`${ts}.`), body);
  const good = await hmac(body);
  const sig = (value: string, ts?: number | string) => ({
    "x-signature": value,
    ...(ts === undefined ? {} : { "x-signature-timestamp": String(ts) }),
  });
  const forged = (headers: Record<string, string>) => ({ headers, genuine: false });
  switch (spec.kind) {
    case "hex":
      return { headers: sig(writtenAs(good, spec.form)), genuine: true };
    case "stamped": {
      const ts = NOW_S + spec.skew;
      return { headers: sig(writtenAs(await hmac(stamped(ts)), spec.form), ts), genuine: true };
    }
    case "flip":
      return forged(sig(flipHex(good, spec.index, spec.by)));
    case "cut":
      return forged(sig(good.slice(0, 64 - spec.n)));
    case "extend":
      return forged(sig(good + spec.extra));
    case "base64":
      return forged(sig(base64(hexBytes(good))));
    case "other-body":
      return forged(sig(await hmac(concat(body, encoder.encode(spec.suffix)))));
    case "wrong-secret":
      return forged(sig(await hmac(body, spec.secret)));
    case "stale":
      return forged(sig(await hmac(stamped(NOW_S + spec.skew)), NOW_S + spec.skew));
    case "restamped":
      return forged(sig(await hmac(stamped(NOW_S + spec.skew)), NOW_S + spec.skew + spec.shift));
    case "stamp-unsigned":
      return forged(sig(good, NOW_S + spec.skew));
    case "stamp-dropped":
      return forged(sig(await hmac(stamped(NOW_S + spec.skew))));
    case "bad-stamp":
      return forged(sig(await hmac(stamped(spec.stamp)), spec.stamp));
    case "list":
      return forged(sig(spec.flips.map((i) => flipHex(good, i, 1)).join(spec.separator)));
    case "junk":
      return forged(sig(spec.value));
  }
}

function writtenAs(hex: string, form: HexForm): string {
  switch (form) {
    case "exact":
      return hex;
    case "upper":
      return hex.toUpperCase();
    case "sha256=":
      return `sha256=${hex}`;
    case "SHA256=":
      return `SHA256=${hex.toUpperCase()}`;
    case "spaced":
      return `  ${hex}\t`;
  }
}

async function standardHeaders(
  spec: Sw,
  text: string,
): Promise<{ headers: Record<string, string>; genuine: boolean }> {
  const make = async (body: string, o: { timestamp?: number; secrets?: string[] } = {}) => {
    const h = (await standardWebhooks(body, { timestamp: NOW_S, ...o })).headers as Record<
      string,
      string
    >;
    return {
      "webhook-id": h["webhook-id"],
      "webhook-timestamp": h["webhook-timestamp"],
      "webhook-signature": h["webhook-signature"],
    } as Record<string, string>;
  };
  const forged = (headers: Record<string, string>) => ({ headers, genuine: false });
  switch (spec.kind) {
    case "sw": {
      const secrets = [...spec.others];
      secrets.splice(spec.at % (secrets.length + 1), 0, SECRET);
      const h = await make(text, { timestamp: NOW_S + spec.skew, secrets });
      h["webhook-signature"] = [...spec.junk, h["webhook-signature"]].join(" ");
      return { headers: h, genuine: true };
    }
    case "sw-wrong":
      return forged(await make(text, { secrets: spec.secrets }));
    case "sw-stale":
      return forged(await make(text, { timestamp: NOW_S + spec.skew }));
    case "sw-id":
      return forged({ ...await make(text), "webhook-id": spec.id });
    case "sw-ts-shift": {
      const h = await make(text, { timestamp: NOW_S + spec.skew });
      return forged({ ...h, "webhook-timestamp": String(NOW_S + spec.skew + spec.shift) });
    }
    case "sw-v2": {
      const h = await make(text);
      return forged({ ...h, "webhook-signature": h["webhook-signature"].replace(/^v1,/, "v2,") });
    }
    case "sw-hex": {
      const h = await make(text);
      const hex = await signHex(SECRET, `${h["webhook-id"]}.${h["webhook-timestamp"]}.${text}`);
      return forged({ ...h, "webhook-signature": `v1,${hex}` });
    }
    case "sw-flip": {
      const h = await make(text);
      const mac = Uint8Array.from(atob(h["webhook-signature"].slice(3)), (c) => c.charCodeAt(0));
      mac[spec.index] ^= 1 << spec.bit;
      return forged({ ...h, "webhook-signature": `v1,${base64(mac)}` });
    }
    case "sw-no-id": {
      const { "webhook-id": _, ...h } = await make(text);
      return forged(h);
    }
    case "sw-no-ts": {
      const { "webhook-timestamp": _, ...h } = await make(text);
      return forged(h);
    }
    case "sw-body":
      return forged(await make(text + spec.suffix));
    case "sw-junk":
      return forged({
        "webhook-id": "msg_1",
        "webhook-timestamp": String(NOW_S),
        "webhook-signature": spec.value,
      });
  }
}

/** `text` with a field added first or last, when it is a JSON object; else null. */
function withField(text: string, { field, value, last }: BodyField): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return null;
  const pair = `${JSON.stringify(field)}:${JSON.stringify(value)}`;
  const empty = Object.keys(parsed).length === 0;
  if (last) {
    const i = text.lastIndexOf("}");
    return text.slice(0, i) + (empty ? pair : `,${pair}`) + text.slice(i);
  }
  const i = text.indexOf("{");
  return text.slice(0, i + 1) + (empty ? pair : `${pair},`) + text.slice(i + 1);
}

/**
 * The body secret as the contract defines it: a top-level `secret`, else
 * `passphrase`, string-valued, in a body that is a JSON object.
 */
function bodySecretOf(body: Uint8Array): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(body).replace(/^\uFEFF/, ""));
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return null;
  const o = parsed as Record<string, unknown>;
  for (const field of ["secret", "passphrase"]) {
    if (Object.hasOwn(o, field) && typeof o[field] === "string") return o[field] as string;
  }
  return null;
}

// --- bodies --------------------------------------------------------------------

interface Case {
  label: string;
  body: string | Uint8Array<ArrayBuffer>;
  /** A valid alert whatever its hostile part: genuine, it must be accepted. */
  alert: boolean;
  /** undefined: application/json; null: no content-type at all. */
  contentType?: string | null;
  headers?: Record<string, string>;
}

async function buildProbe(c: Case, creds: Creds): Promise<Probe> {
  let text = typeof c.body === "string" ? c.body : null;
  const parts = [c.label];
  if (text !== null && creds.body) {
    const injected = withField(text, creds.body);
    if (injected !== null) {
      text = injected;
      parts.push(`body ${creds.body.field}`);
    }
  }
  const body = text !== null ? encoder.encode(text) : c.body as Uint8Array<ArrayBuffer>;
  const headers: Record<string, string> = { ...c.headers };
  const contentType = c.contentType === undefined ? "application/json" : c.contentType;
  if (contentType !== null) headers["content-type"] = contentType;
  let genuine = false;
  if (creds.xsig) {
    const x = await xSignature(creds.xsig, body);
    Object.assign(headers, x.headers);
    genuine ||= x.genuine;
    parts.push(`x-signature ${creds.xsig.kind}`);
  }
  // Standard Webhooks signs text (the helper takes a string): not on raw byte bodies.
  if (creds.sw && text !== null) {
    const x = await standardHeaders(creds.sw, text);
    Object.assign(headers, x.headers);
    genuine ||= x.genuine;
    parts.push(creds.sw.kind);
  }
  let path = "/webhook";
  if (creds.url) {
    if (creds.url.kind === "url") {
      path = `/webhook/${creds.url.encoded ? percentEncodeAll(SECRET) : SECRET}`;
      genuine = true;
    } else {
      path = `/webhook/${creds.url.token}`;
    }
    parts.push(creds.url.kind);
  }
  if (bodySecretOf(body) === SECRET) genuine = true;
  return {
    label: parts.join(", "),
    path,
    body,
    headers,
    genuine,
    mustAccept: genuine && c.alert && body.length <= LIMIT,
  };
}

const alertTime = fc.integer({ min: 0, max: 2_900_000_000 })
  .map((s) => new Date(Date.UTC(2001, 0, 1) + s * 1000).toISOString());
const validAlert = fc.record({
  symbol: fc.constantFrom("SPY", "QQQ", "AAPL", "NASDAQ:AAPL", "BRK.B", "ES1!", "spy"),
  direction: fc.constantFrom("CALL", "PUT", "EXIT", "buy", "sell", "long", "short", "flat"),
  timeframe: fc.constantFrom("5m", "1", "60", "D", "240", "1h"),
  timestamp: alertTime,
  price: fc.option(fc.double({ min: 0.01, max: 100_000, noNaN: true }), { nil: undefined }),
});
const alertJson = validAlert.map((a) => JSON.stringify(a));

const bytesCases: fc.Arbitrary<Case> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.uint8Array({ maxLength: 512 }).map((b): Case => ({
      label: "random bytes",
      body: b,
      alert: false,
    })),
  },
  {
    // A valid alert with a few bytes overwritten: broken UTF-8, broken JSON, or by luck neither.
    weight: 3,
    arbitrary: fc.tuple(
      alertJson,
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
    ).map(([json, edits]): Case => {
      const b = encoder.encode(json);
      for (const [at, byte] of edits) b[at % b.length] = byte;
      return { label: "alert with bytes overwritten", body: b, alert: false };
    }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: LIMIT - 64, max: LIMIT + 4096 }), fc.nat(255)).map((
      [n, byte],
    ): Case => ({
      label: `${n} bytes around the limit`,
      body: new Uint8Array(n).map((_, i) => (byte + i * 31) & 0xff),
      alert: false,
    })),
  },
);

const deepCases: fc.Arbitrary<Case> = fc.record({
  depth: fc.integer({ min: 64, max: 32_000 }),
  shape: fc.constantFrom("array", "object", "mixed", "metadata", "comment", "unclosed"),
  alert: validAlert,
}).map(({ depth, shape, alert }): Case => {
  const array = "[".repeat(depth) + "]".repeat(depth);
  const object = '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  const label = `${shape} nested ${depth} deep`;
  switch (shape) {
    case "array":
      return { label, body: array, alert: false };
    case "object":
      return { label, body: object, alert: false };
    case "mixed":
      return { label, body: '[{"a":'.repeat(depth) + "null" + "}]".repeat(depth), alert: false };
    case "metadata":
      return {
        label,
        body: JSON.stringify({ ...alert, metadata: { x: "@" } }).replace('"@"', object),
        alert: true,
      };
    case "comment":
      return {
        label,
        body: JSON.stringify({ ...alert, comment: "@" }).replace('"@"', array),
        alert: true,
      };
    default:
      return { label, body: "[".repeat(depth) + '{"a":'.repeat(depth), alert: false };
  }
});

/** Raw JSON number (and number-like) literals JSON.stringify cannot write. */
const HUGE = [
  "1e308",
  "-1e308",
  "1.7976931348623157e308",
  "1e309",
  "-1e400",
  "123456789012345678901234567890",
  "-123456789012345678901234567890",
  "9007199254740993",
  "4.9e-324",
  "1e-400",
  "-0",
  "0",
  "1E+308",
  "0.000000000000000000000000000001",
  "[1e308]",
  '"NaN"',
  '"nan"',
  '" NaN "',
  '"Infinity"',
  '"-Infinity"',
  '"1e400"',
  '"123456789012345678901234567890"',
  '"0x1F"',
  '{"$numberLong":"9223372036854775808"}',
];
const hugeCases: fc.Arbitrary<Case> = fc.record({
  alert: validAlert,
  literal: fc.constantFrom(...HUGE),
  where: fc.constantFrom(
    "price",
    "score",
    "confidence",
    "timestamp",
    "timeframe",
    "id",
    "symbol",
    "source",
    "extra",
    "metadata.score",
    "metadata.confidence",
    "metadata.x",
    "metadata.nested",
  ),
}).map(({ alert, literal, where }): Case => {
  const base = JSON.stringify({ ...alert, metadata: { note: "n" } });
  const body = where === "metadata.nested"
    ? base.replace('"metadata":{', `"metadata":{"nested":{"v":${literal}},`)
    : where.startsWith("metadata.")
    ? base.replace('"metadata":{', `"metadata":{${JSON.stringify(where.slice(9))}:${literal},`)
    : `${base.slice(0, -1)},${JSON.stringify(where)}:${literal}}`;
  return {
    label: `${literal} as ${where}`,
    body,
    alert: ["extra", "metadata.x", "metadata.nested"].includes(where),
  };
});

const PROTO_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "__lookupGetter__",
  "isPrototypeOf",
];
const PROTO_VALUES = [
  '{"polluted":"yes","isAdmin":true}',
  '{"prototype":{"polluted":"yes"}}',
  '{"__proto__":{"polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '{"score":100,"symbol":"EVIL","direction":"PUT","polluted":1}',
  '"yes"',
  "1",
  "null",
  '[{"polluted":1}]',
];
const protoCases: fc.Arbitrary<Case> = fc.record({
  alert: validAlert,
  pairs: fc.array(
    fc.record({
      key: fc.constantFrom(...PROTO_KEYS),
      value: fc.constantFrom(...PROTO_VALUES),
      where: fc.constantFrom("top", "metadata", "nested", "array"),
    }),
    { minLength: 1, maxLength: 4 },
  ),
}).map(({ alert, pairs }): Case => {
  const member = (p: { key: string; value: string }) => `${JSON.stringify(p.key)}:${p.value}`;
  const at = (where: string) => pairs.filter((p) => p.where === where).map(member);
  const metadata = [
    '"score":50',
    ...at("metadata"),
    `"deeper":{"a":{${at("nested").join(",")}}}`,
    `"list":[{${at("array").join(",")}}]`,
  ];
  const top = JSON.stringify(alert).slice(1, -1);
  const body = `{${[top, ...at("top"), `"metadata":{${metadata.join(",")}}`].join(",")}}`;
  return { label: `prototype keys ${JSON.stringify(pairs)}`, body, alert: true };
});

const WEIRD = [
  "\uD800",
  "\uDBFF",
  "\uDC00",
  "\uDFFF",
  "a\uD800b",
  "\u0000",
  "\u202E",
  "\u202D",
  "\u200F",
  "\u200E",
  "\u200B",
  "\u200C",
  "\u200D",
  "\u2060",
  "\uFEFF",
  "\uFFFE",
  "\uFFFF",
  "😀",
  "👨‍👩‍👧",
  "🇺🇸",
  "\u0301",
  "e\u0301",
  "\u2028",
  "\u2029",
  "\u00A0",
  "\u0085",
  "ſpy",
  "ı",
  "ß",
  "İ",
  "Ⅻ",
  "０",
  "\u001B[31m",
  "\r\n",
  "\t",
  "\\",
  '"',
  "'",
  "<script>alert(1)</script>",
  "%00",
  "{{ticker}}",
  "SPY😀",
];
const weirdString = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.array(fc.constantFrom(...WEIRD), { maxLength: 6 }).map((a) => a.join("")),
  },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...WEIRD, "x"), fc.integer({ min: 1_000, max: 40_000 }))
      .map(([p, n]) => p.repeat(Math.ceil(n / p.length))),
  },
);
const unicodeCases: fc.Arbitrary<Case> = fc.record({
  alert: validAlert,
  s: weirdString,
  where: fc.constantFrom(
    "symbol",
    "direction",
    "timeframe",
    "timestamp",
    "source",
    "id",
    "exchange",
    "action",
    "comment",
    "strategy",
    "metadata.note",
    "metadata key",
    "key",
  ),
  encoding: fc.constantFrom("escaped", "raw", "bom"),
}).map(({ alert, s, where, encoding }): Case => {
  // "raw": the characters unescaped in the JSON text (control characters make it invalid JSON).
  const str = encoding === "raw"
    ? `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`
    : JSON.stringify(s);
  const base = JSON.stringify({ ...alert, metadata: { note: "n" } });
  let body: string;
  // Keys get a prefix so no generated key is a field name (`tf`, `id`...) with a bad value.
  if (where === "metadata key") {
    body = base.replace('"metadata":{', `"metadata":{${str.replace('"', '"x-')}:1,`);
  } else if (where === "key") body = `${base.slice(0, -1)},${str.replace('"', '"x-')}:"v"}`;
  else if (where === "metadata.note") body = base.replace('"note":"n"', `"note":${str}`);
  else body = `${base.slice(0, -1)},${JSON.stringify(where)}:${str}}`;
  if (encoding === "bom") body = `\uFEFF${body}`;
  const free = ["comment", "strategy", "metadata.note", "metadata key", "key"].includes(where);
  return {
    label: `${encoding} ${JSON.stringify(s.slice(0, 20))} in ${where}`,
    body,
    alert: free && encoding !== "raw",
  };
});

/** Content types a JSON body is fine under: the ones the README's senders use. */
const JSONISH = [null, "application/json", "application/json; charset=utf-8", "text/plain"];
const contentTypeCases: fc.Arbitrary<Case> = fc.record({
  alert: validAlert,
  contentType: fc.oneof(
    fc.constantFrom<string | null>(
      ...JSONISH,
      "text/plain;charset=UTF-8",
      "text/plain; charset=utf-16le",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=----x",
      "multipart/form-data",
      "application/xml",
      "text/html",
      "application/octet-stream",
      "image/png",
      "garbage",
      "*/*",
      ";",
      'application/json; charset="',
      "application/json, text/plain",
      "application/vnd.api+json",
      "a".repeat(2000),
    ),
    headerText,
  ),
  shape: fc.constantFrom("json", "form", "multipart", "utf16", "xml", "query"),
}).map(({ alert, contentType, shape }): Case => {
  const json = JSON.stringify(alert);
  const form = new URLSearchParams(alert as unknown as Record<string, string>).toString();
  const label = `${shape} as ${JSON.stringify(contentType)?.slice(0, 60)}`;
  switch (shape) {
    case "json":
      return { label, body: json, contentType, alert: JSONISH.includes(contentType) };
    case "form":
      return { label, body: form, contentType, alert: false };
    case "multipart":
      return {
        label,
        body:
          `------x\r\nContent-Disposition: form-data; name="alert"\r\n\r\n${json}\r\n------x--\r\n`,
        contentType,
        alert: false,
      };
    case "utf16": {
      const b = new Uint8Array(json.length * 2);
      for (let i = 0; i < json.length; i++) b[i * 2] = json.charCodeAt(i);
      return { label, body: b, contentType, alert: false };
    }
    case "xml":
      return {
        label,
        body: `<?xml version="1.0"?><alert><symbol>SPY</symbol><secret>${SECRET}</secret></alert>`,
        contentType,
        alert: false,
      };
    default:
      return { label, body: `?${form}`, contentType, alert: false };
  }
});

const RESERVED_HEADERS = new Set([
  "x-signature",
  "x-signature-timestamp",
  "webhook-id",
  "webhook-timestamp",
  "webhook-signature",
  "content-type",
  "content-length",
  "content-encoding",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "host",
]);
const headerName = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,40}$/)
  .filter((n) => !RESERVED_HEADERS.has(n.toLowerCase()));
const headerValue = fc.oneof(
  headerText,
  fc.constantFrom(
    "",
    "null",
    "__proto__",
    "'; DROP TABLE signals; --",
    "../../etc/passwd",
    "%00",
    "${jndi:ldap://x/a}",
    "0".repeat(8000),
  ),
);
const headerCases: fc.Arbitrary<Case> = fc.record({
  alert: alertJson,
  random: fc.dictionary(headerName, headerValue, { maxKeys: 8 }),
  named: fc.record({
    "x-request-id": headerValue,
    "x-forwarded-for": headerValue,
    "fly-client-ip": headerValue,
    authorization: headerValue,
    cookie: headerValue,
    accept: headerValue,
    origin: headerValue,
  }, { requiredKeys: [] }),
}).map(({ alert, random, named }): Case => ({
  label: `headers ${Object.keys({ ...random, ...named }).join(" ").slice(0, 120)}`,
  body: alert,
  headers: { ...random, ...named },
  alert: true,
}));

const lookalikeCases: fc.Arbitrary<Case> = alertJson.map((body): Case => ({
  label: "alert",
  body,
  alert: true,
}));

const SQLISH = [
  "'; DROP TABLE signals; --",
  "' OR '1'='1",
  "1; SELECT pg_sleep(5)",
  "$$; DELETE FROM signals; $$",
  "\\'; TRUNCATE signals; --",
];
const generalCases: fc.Arbitrary<Case> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v): Case => ({
    label: "any JSON",
    body: JSON.stringify(v),
    alert: false,
  })),
  fc.object({ maxDepth: 3 }).map((v): Case => ({
    label: "any object",
    body: JSON.stringify(v) ?? "{}",
    alert: false,
  })),
  fc.string({ maxLength: 200 }).map((s): Case => ({ label: "any text", body: s, alert: false })),
  fc.tuple(validAlert, fc.constantFrom(...SQLISH), fc.constantFrom("symbol", "direction", "id"))
    .map(([a, sql, field]): Case => ({
      label: `SQL in ${field}`,
      body: JSON.stringify({ ...a, [field]: sql }),
      alert: field === "id",
    })),
);

// --- the fuzz --------------------------------------------------------------------

/**
 * Of each category's count, the share each driver runs: together with the
 * other tests well over 10,000 requests (over 10,000 on PGlite alone, when
 * Postgres is skipped), within the suite's time budget.
 */
const SHARE = { pglite: POSTGRES_REACHABLE ? 0.5 : 0.8, postgres: 0.3 } as const;

interface Category {
  name: string;
  cases: fc.Arbitrary<Case>;
  runs: number;
  after?: (c: Case, p: Probe, a: Answer) => Promise<void>;
}

dbTest(
  "fuzzed webhooks: never a 5xx, no forgery passes, only what the test signed is stored",
  async ({ db, driver }) => {
    tally.webhookFuzzRan = true;
    const s = await testServices(db, { env: ENV, now: () => NOW_MS });
    const ledger = new Ledger();
    const before = prototypes();
    const categories: Category[] = [
      { name: "random bytes", cases: bytesCases, runs: 1200 },
      { name: "deep nesting", cases: deepCases, runs: 500 },
      { name: "huge numbers", cases: hugeCases, runs: 900 },
      {
        name: "prototype keys",
        cases: protoCases,
        runs: 900,
        // Stored verbatim (prototype keys included, the secret scrubbed wherever it sat), the
        // alert's own fields unchanged.
        async after(_c, p, a) {
          assertUnpolluted(before, p.label);
          if (a.json.status !== "ACCEPTED") return;
          const [row] = await db.query<
            { raw_payload: unknown; symbol: string; metadata: Record<string, unknown> }
          >(
            "select raw_payload, symbol, metadata from signals where id = $1::uuid",
            [a.json.signal_id],
          );
          const expected = scrubSecret(JSON.parse(decoder.decode(p.body)), SECRET);
          delete expected.secret;
          delete expected.passphrase;
          assert.deepEqual(row.raw_payload, expected, p.label);
          assert.notEqual(row.symbol, "EVIL", p.label);
          assert.equal(row.metadata.score, 50, p.label);
          assertUnpolluted(before, p.label);
        },
      },
      { name: "unicode", cases: unicodeCases, runs: 1500 },
      { name: "content types", cases: contentTypeCases, runs: 900 },
      { name: "signature look-alikes", cases: lookalikeCases, runs: 2400 },
      { name: "random headers", cases: headerCases, runs: 900 },
      { name: "any JSON or text", cases: generalCases, runs: 800 },
    ];
    const counts: string[] = [];
    const scale = SHARE[driver];
    for (const { name, cases, runs, after } of categories) {
      const from = ledger.requests;
      const t0 = performance.now();
      await fc.assert(
        batched(fc.tuple(cases, credentials), async ([c, creds]) => {
          const probe = await buildProbe(c, creds);
          const answer = await fire(s, probe, ledger);
          await after?.(c, probe, answer);
        }),
        { numRuns: runsFor(runs * scale) },
      );
      assertUnpolluted(before, name);
      counts.push(`${name} ${ledger.requests - from} ${Math.round(performance.now() - t0)}ms`);
    }
    await assertStoredExactly(db, ledger);
    // The acceptance path was exercised, not only refusals.
    assert.ok(ledger.accepted.size > ledger.requests / 10, ledger.summary());
    console.log(
      `hostile input [${driver}]: ${ledger.requests} requests fuzzed, 0 with 5xx ` +
        `(${counts.join(", ")}); statuses ${ledger.summary()}`,
    );
  },
);

// --- raw HTTP on a real socket -----------------------------------------------------

/** Writes `bytes`, reads until the server closes or 2 s pass; returns what came back. */
async function exchange(port: number, bytes: Uint8Array, halfClose: boolean): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let out = "";
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed already */ }
  }, 2000);
  try {
    try {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      if (halfClose) await conn.closeWrite();
    } catch {
      // The server may refuse before everything is written.
    }
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      out += String.fromCharCode(...buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed already */ }
  }
  return out;
}

interface RawRequest {
  label: string;
  bytes: Uint8Array;
  halfClose: boolean;
  /** Carries a valid x-signature for its body (so at most one alert may be accepted). */
  signed: boolean;
}

const rawHead = fc.record({
  method: fc.constantFrom("POST", "POST", "POST", "GET", "P0ST", "post", "PUT", "TRACE", "\x00"),
  target: fc.constantFrom(
    "/webhook",
    "/webhook",
    `/webhook/${SECRET.slice(0, -1)}`,
    "*",
    "http://evil.example/webhook",
    "/webhook?x=%00",
    "//webhook",
    "/../webhook",
    "/%2e%2e/webhook",
    "/webhook#frag",
    " /webhook",
    "/web\u00ffhook",
  ),
  version: fc.constantFrom(
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/9.9",
    "http/1.1",
    "",
  ),
  lines: fc.array(
    fc.oneof(
      fc.constantFrom(
        "X-A: b",
        "NoColon",
        " leading: space",
        "X-Bad\x00: y",
        "X-\u00dc: y",
        "x-a: \x01\x7f",
        "X-Fold: a\r\n b",
        ":",
        "Content-Length : 5",
        "x-signature: " + "a".repeat(64),
        "x-signature-timestamp: 99999999999999",
        "webhook-signature: v1,v1,v1",
        `X-Long: ${"a".repeat(9000)}`,
        "Expect: 100-continue",
        "Content-Encoding: gzip",
      ),
      headerText.map((v) => `X-Any: ${v}`),
    ),
    { maxLength: 4 },
  ),
  framing: fc.constantFrom(
    "exact",
    "exact",
    "short",
    "truncated",
    "dup-conflict",
    "dup-same",
    "cl-te",
    "chunked",
    "bad-chunk",
    "unterminated-chunk",
    "cl-neg",
    "cl-nan",
    "cl-huge",
    "cl-plus",
    "none",
    "smuggle",
  ),
  body: fc.oneof(alertJson, fc.string({ maxLength: 200 })),
  sign: fc.boolean(),
  lf: fc.boolean(),
});

type RawHead = typeof rawHead extends fc.Arbitrary<infer T> ? T : never;

async function rawRequest(h: RawHead): Promise<RawRequest> {
  const eol = h.lf ? "\n" : "\r\n";
  const body = encoder.encode(h.body);
  const n = body.length;
  const lines = [`Host: 127.0.0.1`, ...h.lines];
  if (h.sign) lines.push(`x-signature: ${await signHex(SECRET, body)}`);
  let payload: Uint8Array = body;
  let halfClose = false;
  let tail = "";
  const chunked = (b: Uint8Array) =>
    concat(latin1(`${b.length.toString(16)}\r\n`), b, latin1("\r\n0\r\n\r\n"));
  switch (h.framing) {
    case "exact":
      lines.push(`Content-Length: ${n}`);
      break;
    case "short":
      lines.push(`Content-Length: ${Math.max(0, n - 3)}`);
      break;
    case "truncated":
      lines.push(`Content-Length: ${n + 100}`);
      halfClose = true;
      break;
    case "dup-conflict":
      lines.push(`Content-Length: ${n}`, `Content-Length: ${n + 1}`);
      break;
    case "dup-same":
      lines.push(`Content-Length: ${n}`, `Content-Length: ${n}`);
      break;
    case "cl-te":
      lines.push(`Content-Length: ${n}`, "Transfer-Encoding: chunked");
      payload = chunked(body);
      break;
    case "chunked":
      lines.push("Transfer-Encoding: chunked");
      payload = chunked(body);
      break;
    case "bad-chunk":
      lines.push("Transfer-Encoding: chunked");
      payload = concat(latin1("zz\r\n"), body, latin1("\r\n0\r\n\r\n"));
      break;
    case "unterminated-chunk":
      lines.push("Transfer-Encoding: chunked");
      payload = concat(latin1(`${(n + 50).toString(16)}\r\n`), body);
      halfClose = true;
      break;
    case "cl-neg":
      lines.push("Content-Length: -1");
      break;
    case "cl-nan":
      lines.push("Content-Length: abc");
      break;
    case "cl-huge":
      lines.push("Content-Length: 99999999999999999999999");
      halfClose = true;
      break;
    case "cl-plus":
      lines.push(`Content-Length: +${n}`);
      break;
    case "none":
      break;
    case "smuggle":
      // A second, unsigned request riding in the same bytes: it must be judged on its own.
      lines.push(`Content-Length: ${n}`);
      tail =
        `POST /webhook HTTP/1.1${eol}Host: x${eol}Content-Length: ${n}${eol}Connection: close${eol}${eol}${h.body}`;
      break;
  }
  // Connection: close (on the last request) so a well-formed exchange ends without a timeout.
  if (h.framing !== "smuggle") lines.push("Connection: close");
  const head = `${h.method} ${h.target} ${h.version}`.trimEnd() + eol + lines.join(eol) + eol + eol;
  return {
    label: `${h.method} ${h.target} ${h.version} ${h.framing} ${
      JSON.stringify(h.lines).slice(0, 200)
    }`,
    bytes: concat(latin1(head), payload, encoder.encode(tail)),
    halfClose,
    signed: h.sign,
  };
}

dbTest(
  "malformed HTTP on a real socket never gets a 5xx, and the server keeps serving",
  async ({ db }) => {
    const s = await testServices(db, { env: ENV });
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request, info) => s.app.fetch(request, info),
    );
    try {
      const { port } = server.addr;
      // A body cut short, with and without Content-Length, is the client's fault: 400. (Found
      // by this test: cut short while chunked, it failed inside bodyLimit as a 500.)
      for (const framing of ["unterminated-chunk", "truncated"] as const) {
        const r = await rawRequest({
          method: "POST",
          target: "/webhook",
          version: "HTTP/1.1",
          lines: [],
          framing,
          body: JSON.stringify(uniqueSignal()),
          sign: true,
          lf: false,
        });
        const reply = await exchange(port, r.bytes, r.halfClose);
        assert.match(reply, /^HTTP\/1\.1 400 /, `${framing}: ${reply.slice(0, 300)}`);
        assert.match(reply, /"code":"BAD_REQUEST"/, reply);
      }
      let sent = 2;
      tally.requests += 2;
      const cases = fc.oneof(
        {
          weight: 1,
          arbitrary: fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => ({ raw: b })),
        },
        { weight: 5, arbitrary: rawHead.map((head) => ({ head })) },
      );
      await fc.assert(
        fc.asyncProperty(cases, async (c) => {
          const r: RawRequest = "raw" in c
            ? {
              label: "random bytes",
              bytes: concat(c.raw, latin1("\r\n\r\n")),
              halfClose: false,
              signed: false,
            }
            : await rawRequest(c.head);
          const reply = await exchange(port, r.bytes, r.halfClose);
          sent++;
          tally.requests++;
          for (const m of reply.matchAll(/HTTP\/1\.[01] (\d{3})/g)) {
            if (Number(m[1]) >= 500) tally.fiveXx++;
            assert.ok(Number(m[1]) < 500, `${r.label} -> ${reply.slice(0, 300)}`);
          }
          // A smuggled second request is judged on its own: unsigned, it is not let in.
          const passed = reply.match(/"status":"(ACCEPTED|DUPLICATE)"/g)?.length ?? 0;
          assert.ok(passed <= (r.signed ? 1 : 0), `${r.label} -> ${reply.slice(0, 600)}`);
        }),
        { numRuns: 300 },
      );
      // Still serving: a genuine alert is accepted over the same listener.
      const res = await fetch(`http://127.0.0.1:${port}/webhook`, {
        ...await signed(JSON.stringify(uniqueSignal())),
      });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).status, "ACCEPTED");
      console.log(`hostile input [raw HTTP]: ${sent} malformed requests, 0 with 5xx`);
    } finally {
      await server.shutdown();
    }
  },
  { drivers: ["pglite"] },
);

// --- replays and other bodies --------------------------------------------------------

/** A helper's RequestInit (string body) as a probe. */
function probeOf(
  label: string,
  init: RequestInit,
  genuine: boolean,
  path = "/webhook",
  mustAccept = genuine,
): Probe {
  return {
    label,
    path,
    body: encoder.encode(init.body as string),
    headers: init.headers as Record<string, string>,
    genuine,
    mustAccept,
  };
}

type Scheme = "x-signature" | "standard";
const scheme = fc.constantFrom<Scheme>("x-signature", "standard");

async function stampedAt(body: string, skew: number, by: Scheme): Promise<RequestInit> {
  return by === "standard"
    ? await standardWebhooks(body, { timestamp: NOW_S + skew })
    : await signed(body, { timestamp: NOW_S + skew });
}

dbTest(
  "replays outside the window (either scheme) and signatures over another body are 401, nothing stored",
  async ({ db }) => {
    const s = await testServices(db, { env: ENV, now: () => NOW_MS });
    const ledger = new Ledger();
    const outside = async ([body, skew, by]: [string, number, Scheme]) => {
      const a = await fire(
        s,
        probeOf(`${by} skew ${skew}`, await stampedAt(body, skew, by), false),
        ledger,
      );
      assert.equal(a.status, 401);
    };
    // One second past either edge, on either scheme; then anywhere outside.
    for (const skew of [TOLERANCE_S + 1, -TOLERANCE_S - 1]) {
      for (const by of ["x-signature", "standard"] as const) {
        await outside([JSON.stringify(uniqueSignal()), skew, by]);
      }
    }
    await fc.assert(batched(fc.tuple(alertJson, outOfWindow, scheme), outside), {
      numRuns: runsFor(304),
    });
    assert.equal(ledger.accepted.size, 0);
    // The same requests inside the window, edges included, pass: only the window refused them.
    await fc.assert(
      batched(
        fc.tuple(alertJson, fc.oneof(inWindow, fc.constantFrom(-TOLERANCE_S, TOLERANCE_S)), scheme),
        async ([body, skew, by]) => {
          await fire(
            s,
            probeOf(`${by} skew ${skew}`, await stampedAt(body, skew, by), true),
            ledger,
          );
        },
      ),
      { numRuns: runsFor(96) },
    );
    // A signature over other bytes than those sent: whitespace, a BOM either way, key order,
    // case, NFC vs NFD, another value, one byte less, nothing at all.
    const change = fc.constantFrom(
      "space",
      "newline",
      "bom signed",
      "bom sent",
      "reorder",
      "case",
      "nfd",
      "field",
      "truncated",
      "empty",
    );
    await fc.assert(
      batched(
        fc.tuple(validAlert, change, scheme, fc.boolean()),
        async ([alert, how, by, stamp]) => {
          const body = JSON.stringify({ ...alert, comment: "café" });
          const [sent, signedOver] = ((): [string, string] => {
            switch (how) {
              case "space":
                return [body, body.replace(":", ": ")];
              case "newline":
                return [body, `${body}\n`];
              case "bom signed":
                return [body, `\uFEFF${body}`];
              case "bom sent":
                return [`\uFEFF${body}`, body];
              case "reorder":
                return [
                  body,
                  JSON.stringify(JSON.parse(body), Object.keys(JSON.parse(body)).reverse()),
                ];
              case "case":
                return [body, body.replace(`"${alert.symbol}"`, `"${swapCase(alert.symbol)}"`)];
              case "nfd":
                return [body, body.normalize("NFD")];
              case "field":
                return [
                  body,
                  body.replace(
                    alert.timestamp,
                    new Date(Date.parse(alert.timestamp) + 1000).toISOString(),
                  ),
                ];
              case "truncated":
                return [body, body.slice(0, -1)];
              default:
                return [body, ""];
            }
          })();
          assert.notEqual(sent, signedOver);
          const init = by === "standard"
            ? await standardWebhooks(signedOver, { timestamp: NOW_S })
            : await signed(signedOver, stamp ? { timestamp: NOW_S } : {});
          const a = await fire(
            s,
            probeOf(`${by} over ${how}`, { ...init, body: sent }, false),
            ledger,
          );
          assert.equal(a.status, 401);
        },
      ),
      { numRuns: runsFor(304) },
    );
    await assertStoredExactly(db, ledger);
  },
  { drivers: ["pglite"] },
);

function swapCase(s: string): string {
  return Array.from(s, (c) => c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()).join("");
}

// --- constant-time comparison -----------------------------------------------------------

interface CompareCall {
  /** What the service computed: the MAC of the signed message. */
  expected: Uint8Array;
  /** What the request presented. */
  candidate: Uint8Array;
}

/**
 * Runs `fn` with node:crypto's timingSafeEqual (core/auth.ts calls it through the module
 * object) recorded and, when told, overruled; restores it after.
 */
async function withCompareSpy(
  fn: (spy: { calls: CompareCall[]; verdict: "real" | "always" }) => Promise<void>,
): Promise<void> {
  const real = nodeCrypto.timingSafeEqual;
  const spy = { calls: [] as CompareCall[], verdict: "real" as "real" | "always" };
  Object.defineProperty(nodeCrypto, "timingSafeEqual", {
    configurable: true,
    writable: true,
    value: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      spy.calls.push({ expected: bytesOf(a), candidate: bytesOf(b) });
      return spy.verdict === "always" ? true : real(a, b);
    },
  });
  try {
    await fn(spy);
  } finally {
    nodeCrypto.timingSafeEqual = real;
  }
}

function bytesOf(view: NodeJS.ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}

dbTest(
  "an HMAC verdict is one constant-time comparison of the whole candidate with the message's MAC, wherever a forgery differs",
  async ({ db }) => {
    const s = await testServices(db, { env: ENV, now: () => NOW_MS });
    const ledger = new Ledger();
    const shape = (a: Answer) =>
      `${a.status} ${JSON.stringify({ ...a.json, correlation_id: "*" })}`;
    await withCompareSpy(async (spy) => {
      // x-signature, bare and with a timestamp: a forgery differing at any one nibble, first
      // to last, takes the same path: one comparison of all 32 candidate bytes with the MAC
      // of the signed message (as WebCrypto computes it, in the test's signer).
      for (const stamp of [false, true]) {
        const body = JSON.stringify(uniqueSignal());
        const init = await signed(body, stamp ? { timestamp: NOW_S } : {});
        const headers = init.headers as Record<string, string>;
        const genuine = hexBytes(headers["x-signature"]);
        const shapes = new Set<string>();
        for (let i = 0; i < 64; i++) {
          const forged = flipHex(headers["x-signature"], i, 8);
          spy.calls.length = 0;
          const a = await fire(
            s,
            probeOf(
              `nibble ${i}`,
              { ...init, headers: { ...headers, "x-signature": forged } },
              false,
            ),
            ledger,
          );
          shapes.add(shape(a));
          assert.equal(spy.calls.length, 1, `nibble ${i}: comparisons`);
          const [call] = spy.calls;
          assert.deepEqual(call.candidate, hexBytes(forged), `nibble ${i}: the whole candidate`);
          assert.deepEqual(call.expected, genuine, `nibble ${i}: the signed message's MAC`);
        }
        assert.equal(shapes.size, 1, [...shapes].join("\n"));
      }
      // Standard Webhooks: a candidate wrong in its first, a middle or its last byte, likewise.
      const body = JSON.stringify(uniqueSignal());
      const init = await standardWebhooks(body, { timestamp: NOW_S });
      const headers = init.headers as Record<string, string>;
      const mac = Uint8Array.from(
        atob(headers["webhook-signature"].slice(3)),
        (c) => c.charCodeAt(0),
      );
      for (const i of [0, 15, 31]) {
        const forged = mac.slice();
        forged[i] ^= 0x80;
        spy.calls.length = 0;
        const a = await fire(
          s,
          probeOf(`byte ${i}`, {
            ...init,
            headers: { ...headers, "webhook-signature": `v1,${base64(forged)}` },
          }, false),
          ledger,
        );
        assert.equal(a.status, 401);
        assert.equal(spy.calls.length, 1, `byte ${i}: comparisons`);
        assert.deepEqual(spy.calls[0].candidate, forged);
        assert.deepEqual(spy.calls[0].expected, mac);
      }
      // A malformed candidate (wrong length, not hex) never reaches it: an HMAC's length is public.
      spy.calls.length = 0;
      for (const bad of [headers["webhook-id"], "ab".repeat(31), "zz".repeat(32)]) {
        const x = await signed(JSON.stringify(uniqueSignal()));
        await fire(
          s,
          probeOf(`malformed ${bad}`, {
            ...x,
            headers: { ...x.headers as Record<string, string>, "x-signature": bad },
          }, false),
          ledger,
        );
      }
      assert.equal(spy.calls.length, 0);

      // Overruled to "yes", forgeries differing in the first or the last position pass: nothing
      // else decides, so the check is exactly as constant-time as timingSafeEqual.
      spy.verdict = "always";
      for (const i of [0, 63]) {
        const x = await signed(JSON.stringify(uniqueSignal()));
        const h = x.headers as Record<string, string>;
        const res = await s.app.request("/webhook", {
          ...x,
          headers: { ...h, "x-signature": flipHex(h["x-signature"], i, 8) },
        });
        assert.equal((await res.json()).status, "ACCEPTED", `nibble ${i}`);
      }
      const sw = await standardWebhooks(JSON.stringify(uniqueSignal()), { timestamp: NOW_S });
      const swHeaders = sw.headers as Record<string, string>;
      const res = await s.app.request("/webhook", {
        ...sw,
        headers: { ...swHeaders, "webhook-signature": `v1,${base64(new Uint8Array(32))}` },
      });
      assert.equal((await res.json()).status, "ACCEPTED");
    });
    assert.equal(nodeCrypto.timingSafeEqual, realTimingSafeEqual, "timingSafeEqual restored");
    const again = await s.app.request(
      "/webhook",
      await signed(JSON.stringify(uniqueSignal()), { secret: "not-the-secret-at-all" }),
    );
    assert.equal(again.status, 401);
  },
  { drivers: ["pglite"] },
);

dbTest(
  "a plain secret (body or URL) wrong at any position, cut or extended gets the one refusal",
  async ({ db }) => {
    const s = await testServices(db, { env: ENV, now: () => NOW_MS });
    const ledger = new Ledger();
    const variants = new Set<string>([`${SECRET}x`, `x${SECRET}`, ` ${SECRET}`, `${SECRET} `]);
    for (let i = 0; i < SECRET.length; i++) {
      variants.add(SECRET.slice(0, i) + (SECRET[i] === "x" ? "y" : "x") + SECRET.slice(i + 1));
      variants.add(SECRET.slice(0, i));
    }
    const shapes = new Set<string>();
    const shape = (a: Answer) =>
      `${a.status} ${JSON.stringify({ ...a.json, correlation_id: "*" })}`;
    for (const v of variants) {
      const viaBody = JSON.stringify(uniqueSignal({ secret: v }));
      shapes.add(
        shape(await fire(s, probeOf(`body ${v}`, { body: viaBody, headers: {} }, false), ledger)),
      );
      if (v.trim() === "") continue; // /webhook/ is another route
      const path = `/webhook/${encodeURIComponent(v)}`;
      const viaUrl = JSON.stringify(uniqueSignal());
      shapes.add(
        shape(
          await fire(s, probeOf(`URL ${v}`, { body: viaUrl, headers: {} }, false, path), ledger),
        ),
      );
    }
    assert.equal(shapes.size, 1, [...shapes].join("\n"));
    assert.match([...shapes][0], /^401 /);
    // The secret itself, both ways.
    await fire(
      s,
      probeOf(
        "body",
        { body: JSON.stringify(uniqueSignal({ secret: SECRET })), headers: {} },
        true,
      ),
      ledger,
    );
    await fire(
      s,
      probeOf(
        "URL",
        { body: JSON.stringify(uniqueSignal()), headers: {} },
        true,
        `/webhook/${SECRET}`,
      ),
      ledger,
    );
    await assertStoredExactly(db, ledger);
    assert.equal(ledger.accepted.size, 2);
  },
  { drivers: ["pglite"] },
);

// --- the body secret, stored and logged nowhere -------------------------------------------

const SECRET_SHAPES = [
  "json",
  "json-spaced",
  "json-bom",
  "both-fields",
  "json-invalid-alert",
  "broken-json",
  "text-eq",
  "text-colon",
  "text-single",
  "escaped-json",
] as const;
type SecretShape = typeof SECRET_SHAPES[number];
/** Shapes in which the server reads the secret (TradingView's `"secret": "..."`). */
const AUTHENTICATING: SecretShape[] = [
  "json",
  "json-spaced",
  "json-bom",
  "both-fields",
  "json-invalid-alert",
  "broken-json",
];
/** Shapes that are a valid alert besides the secret. */
const VALID: SecretShape[] = ["json", "json-spaced", "json-bom", "both-fields"];

function secretBody(
  shape: SecretShape,
  field: string,
  value: string,
  alert: Record<string, unknown>,
): string {
  const f = JSON.stringify(field);
  const v = JSON.stringify(value);
  switch (shape) {
    case "json":
      return JSON.stringify({ [field]: value, ...alert });
    case "json-spaced":
      return `{ ${f}  :\t${v} ,${JSON.stringify(alert).slice(1)}`;
    case "json-bom":
      return `\uFEFF${JSON.stringify({ ...alert, [field]: value })}`;
    case "both-fields":
      return JSON.stringify({ ...alert, secret: value, passphrase: value });
    case "json-invalid-alert":
      return JSON.stringify({ ...alert, direction: "UP?", [field]: value });
    case "broken-json":
      return `{"symbol":"SPY",${f}:${v},"direction":`;
    case "text-eq":
      return `SPY buy ${field}=${value} now`;
    case "text-colon":
      return `SPY buy ${field}: "${value}" now`;
    case "text-single":
      return `{'symbol': 'SPY', '${field}': '${value}'}`;
    case "escaped-json":
      return JSON.stringify({ ...alert, message: JSON.stringify({ [field]: value }) });
  }
}

dbTest(
  "the body secret, right or wrong, in any shape, reaches no table and no log line",
  async ({ db }) => {
    const lines: string[] = [];
    await setupLogging({ level: "debug", write: (line) => lines.push(line) });
    const tried = new Set<string>([SECRET]);
    try {
      const s = await testServices(db, { env: ENV, now: () => NOW_MS });
      const ledger = new Ledger();
      const value = fc.oneof(
        { weight: 2, arbitrary: fc.constant(SECRET) },
        {
          weight: 3,
          arbitrary: fc.oneof(
            fc.constantFrom(SECRET.slice(0, -1), `${SECRET}x`, SECRET.toUpperCase()),
            fc.stringMatching(/^wrong-[A-Za-z0-9_.~+-]{8,24}$/),
          ),
        },
      );
      await fc.assert(
        batched(
          fc.tuple(
            value,
            fc.constantFrom("secret", "passphrase"),
            fc.constantFrom(...SECRET_SHAPES),
            fc.constantFrom("none", "x-signature", "url token"),
            validAlert,
          ),
          async ([v, field, shape, alongside, alert]) => {
            tried.add(v);
            // A secret inside a string value is no field: stored as sent when another method
            // lets the alert in, so only its refusal (redacted by pattern) is under test.
            const along = shape === "escaped-json" ? "none" : alongside;
            const text = secretBody(shape, field, v, alert);
            const body = encoder.encode(text);
            const headers: Record<string, string> = {
              "content-type": shape.startsWith("text") ? "text/plain" : "application/json",
            };
            if (along === "x-signature") headers["x-signature"] = await signHex(SECRET, body);
            const genuine = along !== "none" || (v === SECRET && AUTHENTICATING.includes(shape));
            const a = await fire(s, {
              label: `${shape} ${field} alongside ${along}`,
              path: along === "url token" ? `/webhook/${SECRET}` : "/webhook",
              body,
              headers,
              genuine,
              mustAccept: genuine && VALID.includes(shape),
            }, ledger);
            assert.ok(!JSON.stringify(a.json).includes(v), "the answer holds the secret");
          },
        ),
        { numRuns: runsFor(600) },
      );
      for (const status of [200, 400, 401, 422]) {
        assert.ok(ledger.statuses.has(status), `no ${status}: ${ledger.summary()}`);
      }
      const tables = await db.query<{ name: string }>(
        `select table_name::text as name from information_schema.tables
         where table_schema = current_schema() and table_type = 'BASE TABLE'`,
      );
      assert.ok(tables.length >= 8, JSON.stringify(tables));
      let dump = "";
      for (const { name } of tables) {
        const [row] = await db.query<{ dump: string | null }>(
          `select json_agg(t)::text as dump from "${name}" t`,
        );
        dump += row.dump ?? "";
      }
      assert.ok(dump.includes('"symbol"'), "the dump holds the alerts");
      assert.ok(lines.length >= ledger.requests, "the logs were captured");
      const log = lines.join("");
      for (const secret of tried) {
        assert.ok(!dump.includes(secret), `stored: ${secret}`);
        assert.ok(!log.includes(secret), `logged: ${secret}`);
      }
    } finally {
      await reset();
    }
  },
);

// --- SQL-looking input -----------------------------------------------------------------

/** Inside the ticker charset ^[A-Z0-9][A-Z0-9._!/^-]{0,31}$: tickers, however they read. */
const SQL_TICKERS = [
  "SPY--",
  "1-1",
  "OR1/1",
  "A.--",
  "X^1",
  "1/1",
  "OR",
  "DROP",
  "SELECT",
  "NULL",
  "TRUE",
  "1E5",
  "0X41",
  "A!",
  "SPY--1",
  "DELETE/1",
  "TABLE.SIGNALS",
];
const SQL_INJECTIONS = [
  "SPY'; DROP TABLE signals; --",
  "' OR '1'='1",
  'SPY"; DROP TABLE signals; --',
  "1; SELECT pg_sleep(5)",
  "SPY) OR (1=1",
  "$$; DROP TABLE signals; $$",
  "SPY UNION SELECT * FROM processing_errors",
  "SPY%' --",
  "SPY\\'; --",
  "Robert'); DROP TABLE signals;--",
  "SPY;",
  "'",
  '"',
  "SPY' || pg_sleep(5) || '",
  "1 OR 1=1",
  "x'::text",
  "SPY`",
  "SPY/*",
  "E'\\x27'",
];

dbTest(
  "SQL-looking input is data: stored verbatim or refused 422 and kept verbatim, never run",
  async ({ db }) => {
    const s = await testServices(db, { env: ENV, now: () => NOW_MS });
    const ledger = new Ledger();
    const post = async (alert: Record<string, unknown>, label: string) => {
      const body = JSON.stringify(alert);
      return await fire(s, probeOf(label, await signed(body), true, "/webhook", false), ledger);
    };

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.constantFrom(...SQL_TICKERS),
          fc.stringMatching(/^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/),
        ),
        async (symbol) => {
          const a = await post(uniqueSignal({ symbol }), `ticker ${symbol}`);
          assert.equal(a.status, 200, symbol);
          const [row] = await db.query<{ symbol: string }>(
            "select symbol from signals where id = $1::uuid",
            [a.json.signal_id],
          );
          assert.equal(row.symbol, symbol);
        },
      ),
      { numRuns: 150, examples: SQL_TICKERS.map((t) => [t]) },
    );

    // Outside the charset: 422 on the symbol, and the refusal keeps the alert as sent.
    const injection = fc.oneof(
      fc.constantFrom(...SQL_INJECTIONS),
      fc.tuple(
        fc.stringMatching(/^[ -~]{0,12}$/),
        // Each outside the charset, and not whitespace (which trimming would remove).
        fc.constantFrom("'", '"', ";", "*", "=", "(", ")", "`", ",", "' OR '"),
        fc.stringMatching(/^[ -~]{0,12}$/),
      ).map((parts) => parts.join("")).filter((x) => !/secret|passphrase|\{\{/i.test(x)),
    );
    await fc.assert(
      fc.asyncProperty(injection, async (symbol) => {
        const alert = uniqueSignal({ symbol });
        const a = await post(alert, `injection ${symbol}`);
        assert.equal(a.status, 422, symbol);
        assert.equal(a.json.error?.code, "VALIDATION_FAILED");
        assert.ok(["symbol", "exchange"].includes(a.json.error!.issues![0].path), symbol);
        const [row] = await db.query<{ code: string; payload: string }>(
          "select code, payload from processing_errors where correlation_id = $1",
          [a.json.correlation_id],
        );
        assert.equal(row.code, "VALIDATION_FAILED");
        assert.deepEqual(JSON.parse(row.payload), alert);
      }),
      { numRuns: 150, examples: SQL_INJECTIONS.map((t) => [t]) },
    );
    for (
      const [field, value] of [["exchange", "NYSE'; --"], ["timeframe", "5m'; DROP TABLE signals"]]
    ) {
      const a = await post(uniqueSignal({ [field]: value }), `${field} ${value}`);
      assert.equal(a.status, 422, field);
    }

    // SQL in free text of an accepted alert: kept exactly.
    const alert = uniqueSignal({
      strategy: "'; DROP TABLE positions; --",
      comment: "1' OR '1'='1",
      id: "x'); DROP TABLE signals;--",
      metadata: {
        note: '"; DELETE FROM signals; --',
        "'; DROP TABLE events; --": "a key too",
        nested: { q: "$$ $$ \\' E'\\x00' ; COMMIT; --" },
      },
    });
    const a = await post(alert, "free text");
    assert.equal(a.json.status, "ACCEPTED");
    const [row] = await db.query<
      { raw_payload: unknown; metadata: unknown; alert_id: string }
    >("select raw_payload, metadata, alert_id from signals where id = $1::uuid", [
      a.json.signal_id,
    ]);
    assert.deepEqual(row.raw_payload, alert);
    assert.deepEqual(row.metadata, alert.metadata);
    assert.equal(row.alert_id, alert.id);

    for (
      const table of [
        "signals",
        "signal_dedup",
        "pipeline_jobs",
        "processing_errors",
        "events",
        "decisions",
        "positions",
      ]
    ) {
      const [t] = await db.query<{ present: boolean }>(
        "select to_regclass($1) is not null as present",
        [table],
      );
      assert.ok(t.present, `${table} is gone`);
    }
    await assertStoredExactly(db, ledger);
  },
);

// --- operator routes -----------------------------------------------------------------------

const OPERATOR_TOKEN = "operator-token-0123456789abcdef";

/** Every route behind the operator token, read off the app (so a new one is covered). */
function operatorRoutes(app: Hono<AppEnv>): [string, string][] {
  const out = new Map<string, [string, string]>();
  for (const r of app.routes) {
    if (r.method === "ALL") continue; // middleware
    if (r.path === "/" || /^\/(webhook|health|dashboard)(\/|$)/.test(r.path)) continue; // public
    const path = r.path.replace(":id", "00000000-0000-0000-0000-000000000000")
      .replace(/:[a-zA-Z]+/g, "SPY");
    out.set(`${r.method} ${path}`, [r.method, path]);
  }
  return [...out.values()];
}

interface BadAuth {
  label: string;
  headers: Record<string, string>;
  query?: string;
}

const TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
const bearer = (label: string) => (token: string): BadAuth => ({
  label: `${label} (${token})`,
  headers: { authorization: `Bearer ${token}` },
});
const badAuth: fc.Arbitrary<BadAuth> = fc.oneof(
  fc.constant({ label: "no header", headers: {} }),
  fc.constantFrom("", "Bearer", "Bearer ", "Basic", "Token").map((v) => ({
    label: `authorization "${v}"`,
    headers: { authorization: v },
  })),
  fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,64}$/).filter((t) => t !== OPERATOR_TOKEN)
    .map(bearer("random")),
  fc.constantFrom(...TOKEN_CHARS).filter((c) => c !== OPERATOR_TOKEN.at(-1))
    .map((c) => OPERATOR_TOKEN.slice(0, -1) + c).map(bearer("last char changed")),
  fc.integer({ min: 1, max: OPERATOR_TOKEN.length - 1 }).map((n) => OPERATOR_TOKEN.slice(0, n))
    .map(bearer("prefix")),
  fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,8}$/).map((x) => OPERATOR_TOKEN + x)
    .map(bearer("extended")),
  fc.tuple(fc.nat(OPERATOR_TOKEN.length - 1), fc.constantFrom(...TOKEN_CHARS))
    .filter(([i, c]) => OPERATOR_TOKEN[i] !== c)
    .map(([i, c]) => OPERATOR_TOKEN.slice(0, i) + c + OPERATOR_TOKEN.slice(i + 1))
    .map(bearer("one char changed")),
  fc.constantFrom<BadAuth>(
    bearer("upper-cased")(OPERATOR_TOKEN.toUpperCase()),
    bearer("padded")(`${OPERATOR_TOKEN}=`),
    bearer("the webhook secret")(SECRET),
    { label: "Basic", headers: { authorization: `Basic ${btoa(`operator:${OPERATOR_TOKEN}`)}` } },
    { label: "Basic token", headers: { authorization: `Basic ${btoa(OPERATOR_TOKEN)}` } },
    { label: "Token scheme", headers: { authorization: `Token ${OPERATOR_TOKEN}` } },
    { label: "no scheme", headers: { authorization: OPERATOR_TOKEN } },
    { label: "no space", headers: { authorization: `Bearer${OPERATOR_TOKEN}` } },
    { label: "colon", headers: { authorization: `Bearer: ${OPERATOR_TOKEN}` } },
    { label: "twice", headers: { authorization: `Bearer ${OPERATOR_TOKEN} ${OPERATOR_TOKEN}` } },
    { label: "quoted", headers: { authorization: `Bearer "${OPERATOR_TOKEN}"` } },
    { label: "other header", headers: { "x-operator-token": OPERATOR_TOKEN } },
    { label: "proxy header", headers: { "proxy-authorization": `Bearer ${OPERATOR_TOKEN}` } },
    { label: "cookie", headers: { cookie: `token=${OPERATOR_TOKEN}` } },
    { label: "query token", headers: {}, query: `token=${OPERATOR_TOKEN}` },
    { label: "query access_token", headers: {}, query: `access_token=${OPERATOR_TOKEN}` },
  ),
);

dbTest(
  "every operator route refuses a missing, wrong, cut, extended or misplaced token",
  async ({ db }) => {
    const s = await testServices(db, { env: { ...ENV, OPERATOR_TOKEN } });
    const routes = operatorRoutes(s.app);
    const names = routes.map(([m, p]) => `${m} ${p}`);
    for (
      const expected of ["GET /signals", "GET /events", "POST /context", "GET /metrics/prometheus"]
    ) {
      assert.ok(names.includes(expected), `${expected} not among ${names.join(", ")}`);
    }
    const request = (method: string, path: string, headers: Record<string, string>) =>
      s.app.request(path, {
        method,
        headers: {
          ...headers,
          ...(method === "POST" ? { "content-type": "application/json" } : {}),
        },
        body: method === "POST" ? "{}" : undefined,
      });
    // With the token every route answers (so a refusal below is the token's doing).
    for (const [method, path] of routes) {
      const res = await request(method, path, { authorization: `Bearer ${OPERATOR_TOKEN}` });
      assert.ok(res.status !== 401 && res.status < 500, `${method} ${path}: ${res.status}`);
      await res.body?.cancel();
    }
    // /events opened a stream that polls the database: end it now, not under a closed database.
    await s.stopAccepting();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), badAuth, async ([method, path], bad) => {
        const url = bad.query ? `${path}?${bad.query}` : path;
        const res = await request(method, url, bad.headers);
        sent++;
        tally.requests++;
        const text = await res.text();
        const what = `${method} ${url} with ${bad.label}: ${res.status} ${text.slice(0, 200)}`;
        // 400 BAD_REQUEST is the answer to a malformed Authorization header (RFC 6750
        // invalid_request); the code always matches the status.
        assert.ok([400, 401].includes(res.status), what);
        const json = parseReply(text, what);
        assert.equal(json.status, "REJECTED", what);
        assert.equal(json.error?.code, res.status === 400 ? "BAD_REQUEST" : "UNAUTHORIZED", what);
        const wellFormed = /^Bearer [A-Za-z0-9._~+/-]+=*$/.test(bad.headers.authorization ?? "");
        if (wellFormed || !bad.headers.authorization) assert.equal(res.status, 401, what);
      }),
      { numRuns: 600 },
    );
    console.log(
      `hostile input [operator routes]: ${routes.length} routes, ${sent} bad tokens refused`,
    );
  },
  { drivers: ["pglite"] },
);

// --- production start-up --------------------------------------------------------------------

interface StartAttempt {
  code: number;
  output: string;
  listened: boolean;
  ms: number;
}

/** Starts `deno run main.ts` in production with only `env` set; watches the port until it exits. */
async function startInProduction(env: Record<string, string>): Promise<StartAttempt> {
  const port = freePort();
  const started = performance.now();
  const child = spawnMain({
    NODE_ENV: "production",
    PORT: String(port),
    // Unreachable: a process that got past its config would fail here, not listen; tried
    // once (the default waits 300 s for a database that comes up late).
    DATABASE_URL: "postgres://nobody@127.0.0.1:9/nowhere",
    DATABASE_STARTUP_TIMEOUT_SECONDS: "0",
    ...env,
  });
  let exited = false;
  const output = child.output().finally(() => exited = true);
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 15_000);
  let listened = false;
  try {
    while (!exited) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        listened = true;
      } catch {
        // Refused: not listening, as it should be.
      }
      await Promise.race([output, new Promise((r) => setTimeout(r, 25))]);
    }
  } finally {
    clearTimeout(killer);
  }
  const { code, stdout, stderr } = await output;
  return {
    code,
    output: decoder.decode(stdout) + decoder.decode(stderr),
    listened,
    ms: performance.now() - started,
  };
}

Deno.test({
  name:
    "in production the process will not start without WEBHOOK_SECRET or OPERATOR_TOKEN, and never listens",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const present = {
      WEBHOOK_SECRET: "a-production-secret-0123456789",
      OPERATOR_TOKEN: "an-operator-token-0123456789",
    };
    const cases: [string, Record<string, string>, string[]][] = [
      ["no WEBHOOK_SECRET", { OPERATOR_TOKEN: present.OPERATOR_TOKEN }, ["WEBHOOK_SECRET"]],
      ["no OPERATOR_TOKEN", { WEBHOOK_SECRET: present.WEBHOOK_SECRET }, ["OPERATOR_TOKEN"]],
      ["neither", {}, ["WEBHOOK_SECRET", "OPERATOR_TOKEN"]],
      ["blank ones", { WEBHOOK_SECRET: "  ", OPERATOR_TOKEN: "" }, [
        "WEBHOOK_SECRET",
        "OPERATOR_TOKEN",
      ]],
    ];
    const [control, ...attempts] = await Promise.all([
      startInProduction(present),
      ...cases.map(([, env]) => startInProduction(env)),
    ]);
    for (const [i, [name, env, missing]] of cases.entries()) {
      const a = attempts[i];
      const what = `${name}: exit ${a.code} after ${Math.round(a.ms)} ms:\n${a.output}`;
      assert.equal(a.code, 78, what); // EX_CONFIG, from the config check itself
      assert.ok(!a.listened, `${name}: it listened`);
      for (const variable of missing) {
        assert.match(
          a.output,
          new RegExp(`${variable} is required when NODE_ENV=production`),
          what,
        );
      }
      for (const value of Object.values(env)) {
        if (value.trim() !== "") assert.ok(!a.output.includes(value), `${name}: echoed a secret`);
      }
    }
    // With both set the same process gets past its config (and fails on the unreachable
    // database): the refusals above are the missing variables' doing.
    assert.equal(control.code, 1, control.output);
    assert.match(control.output, /Gave up on the database after 1 attempts/);
    assert.ok(!/is required/.test(control.output), control.output);
    assert.ok(!control.listened);
  },
});

// --- the count -------------------------------------------------------------------------------

Deno.test("hostile input: the fault suite fuzzed at least 10,000 requests, none answered 5xx", () => {
  console.log(`hostile input: ${tally.requests} requests fuzzed, ${tally.fiveXx} with 5xx`);
  assert.equal(tally.fiveXx, 0);
  // Only meaningful when the fuzz ran (not under --filter).
  if (tally.webhookFuzzRan) assert.ok(tally.requests >= 10_000, String(tally.requests));
});
