/**
 * createAuthenticator() and signHex(), without HTTP or a database: the GitHub
 * test vector, then properties of each method (a genuine request passes, any
 * change to it fails), the replay window, secret rotation, plain secrets and
 * the address allowlist.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type AuthRequest,
  type AuthResult,
  type AuthSettings,
  createAuthenticator,
  fromHex,
  signHex,
} from "../core/auth.ts";
import { TRADINGVIEW_IPS } from "../core/config.ts";
import { type Cidr, parseCidrs } from "../core/net.ts";

const GITHUB_SECRET = "It's a Secret to Everybody";
const GITHUB_BODY = "Hello, World!";
const GITHUB_SIGNATURE = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

const SECRET = "test-webhook-secret-0123456789";
const NOW_S = 1_706_529_600;
const NOW_MS = NOW_S * 1000;
const encoder = new TextEncoder();

function settings(overrides: Partial<AuthSettings> = {}): AuthSettings {
  return {
    secret: SECRET,
    toleranceSeconds: 300,
    ipAllowlist: null,
    ipAllowlistRequired: false,
    ...overrides,
  };
}

function request(
  options: {
    body?: string | Uint8Array;
    headers?: Record<string, string>;
    pathToken?: string | null;
    bodySecret?: string | null;
    clientIp?: string | null;
    nowMs?: number;
  } = {},
): AuthRequest {
  const body = options.body ?? "{}";
  const headers = new Headers(options.headers);
  return {
    rawBody: (typeof body === "string" ? encoder.encode(body) : body) as Uint8Array<ArrayBuffer>,
    header: (name) => headers.get(name),
    pathToken: options.pathToken ?? null,
    bodySecret: options.bodySecret ?? null,
    clientIp: options.clientIp ?? null,
    nowMs: options.nowMs ?? NOW_MS,
  };
}

function assertPasses(result: AuthResult, method: string): void {
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.method, method);
  // Only methods whose signature covers a timestamp report when it was signed.
  if (method !== "signature" && method !== "standard_webhooks") {
    assert.equal(result.signedAtMs, undefined);
  }
}

function assertFails(result: AuthResult): void {
  assert.equal(result.ok, false, JSON.stringify(result));
  // A failure names no method: the reason is a sentence for the log, nothing more.
  assert.deepEqual(Object.keys(result).sort(), ["ok", "reason"]);
}

const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

async function hmac(key: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, message as Uint8Array<ArrayBuffer>));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Standard Webhooks v1: `v1,<base64 HMAC(key, "<id>.<timestamp>.<body>")>`. */
async function standardSignature(
  key: Uint8Array,
  id: string,
  timestamp: number | string,
  body: Uint8Array,
): Promise<string> {
  const mac = await hmac(key, concat(encoder.encode(`${id}.${timestamp}.`), body));
  return `v1,${toBase64(mac)}`;
}

// Known answers ----------------------------------------------------------------

Deno.test("signHex() reproduces GitHub's published HMAC-SHA256 test vector", async () => {
  assert.equal(await signHex(GITHUB_SECRET, GITHUB_BODY), GITHUB_SIGNATURE);
  assert.equal(await signHex(GITHUB_SECRET, encoder.encode(GITHUB_BODY)), GITHUB_SIGNATURE);
});

Deno.test("verify() accepts GitHub's test vector as x-signature, with or without sha256=", async () => {
  const auth = createAuthenticator(settings({ secret: GITHUB_SECRET }));
  for (
    const header of [
      `sha256=${GITHUB_SIGNATURE}`,
      GITHUB_SIGNATURE,
      `SHA256=${GITHUB_SIGNATURE}`,
      GITHUB_SIGNATURE.toUpperCase(),
      ` sha256=${GITHUB_SIGNATURE} `,
    ]
  ) {
    const result = await auth.verify(
      request({ body: GITHUB_BODY, headers: { "x-signature": header } }),
    );
    assertPasses(result, "signature");
  }
  for (
    const header of [
      `sha256=${GITHUB_SIGNATURE.slice(0, -1)}`,
      `sha256=${GITHUB_SIGNATURE}0`,
      `sha1=${GITHUB_SIGNATURE}`,
      `sha256=${"0".repeat(64)}`,
      "sha256=",
      "not hex at all",
    ]
  ) {
    assertFails(
      await auth.verify(request({ body: GITHUB_BODY, headers: { "x-signature": header } })),
    );
  }
  assertFails(
    await auth.verify(
      request({ body: "Hello, World?", headers: { "x-signature": `sha256=${GITHUB_SIGNATURE}` } }),
    ),
  );
});

Deno.test("fromHex(): 64 hex digits in any case are their 32 bytes; anything else is null", () => {
  const hexOf = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0"));
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
      (bytes, upper) => {
        const hex = hexOf(bytes).join("").split("").map((d, i) => upper[i] ? d.toUpperCase() : d);
        assert.deepEqual(fromHex(hex.join("")), new Uint8Array(bytes));
      },
    ),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 63 }),
      fc.constantFrom("g", "G", "z", " ", "-", "\n", "é", "0x"),
      (bytes, at, bad) => {
        const hex = hexOf(bytes).join("");
        assert.equal(fromHex(hex.slice(0, at) + bad + hex.slice(at + 1)), null);
        assert.equal(fromHex(hex.slice(0, at)), null, "too short");
        assert.equal(fromHex(hex + hex.slice(0, at + 1)), null, "too long");
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("verify() with no secret and no allowlist lets everything through as method none", async () => {
  const auth = createAuthenticator(settings({ secret: null }));
  assert.equal(auth.enabled, false);
  assertPasses(await auth.verify(request()), "none");
  assertPasses(await auth.verify(request({ headers: { "x-signature": "garbage" } })), "none");
  assert.equal(createAuthenticator(settings()).enabled, true);
  const allowlistOnly = createAuthenticator(
    settings({ secret: null, ipAllowlist: parseCidrs(["10.0.0.0/8"]) as Cidr[] }),
  );
  assert.equal(allowlistOnly.enabled, true);
});

Deno.test("verify() with a secret refuses a request that presents nothing", async () => {
  const result = await createAuthenticator(settings()).verify(request());
  assertFails(result);
  assert.ok(!result.ok && result.reason.length > 0);
});

// x-signature ------------------------------------------------------------------

const bodyBytes = fc.uint8Array({ minLength: 0, maxLength: 300 });

/** Replaces the hex digit at `index` with a different digit (a real change, not a case change). */
function flipHex(hex: string, index: number, delta: number): string {
  const digit = (parseInt(hex[index], 16) + delta) % 16;
  return hex.slice(0, index) + digit.toString(16) + hex.slice(index + 1);
}

Deno.test("x-signature: a signature over the body verifies; any one-byte change to the body fails", async () => {
  const auth = createAuthenticator(settings());
  await fc.assert(
    fc.asyncProperty(
      bodyBytes,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (body, at, xor) => {
        const signature = await signHex(SECRET, body);
        assertPasses(
          await auth.verify(request({ body, headers: { "x-signature": signature } })),
          "signature",
        );
        const changed = body.slice();
        if (changed.length === 0) return;
        changed[at % changed.length] ^= xor;
        assertFails(
          await auth.verify(request({ body: changed, headers: { "x-signature": signature } })),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("x-signature: any one hex digit of the signature changed fails", async () => {
  const auth = createAuthenticator(settings());
  await fc.assert(
    fc.asyncProperty(
      bodyBytes,
      fc.integer({ min: 0, max: 63 }),
      fc.integer({ min: 1, max: 15 }),
      async (body, index, delta) => {
        const signature = await signHex(SECRET, body);
        const flipped = flipHex(signature, index, delta);
        assert.notEqual(flipped, signature);
        assertFails(
          await auth.verify(request({ body, headers: { "x-signature": `sha256=${flipped}` } })),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("x-signature: a signature made with another secret fails", async () => {
  const auth = createAuthenticator(settings());
  await fc.assert(
    fc.asyncProperty(bodyBytes, fc.string({ minLength: 1 }), async (body, other) => {
      fc.pre(other !== SECRET);
      const signature = await signHex(other, body);
      assertFails(await auth.verify(request({ body, headers: { "x-signature": signature } })));
    }),
    { numRuns: 200 },
  );
});

Deno.test("x-signature-timestamp: inside +/-300 s passes, outside fails, the timestamp is signed", async () => {
  const auth = createAuthenticator(settings());
  const sign = async (timestamp: string, body: string) => ({
    "x-signature": await signHex(SECRET, `${timestamp}.${body}`),
    "x-signature-timestamp": timestamp,
  });
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: -300, max: 300 }),
      fc.integer({ min: 301, max: 10 ** 9 }),
      fc.boolean(),
      fc.string(),
      async (inside, outside, past, body) => {
        const ok = String(NOW_S + inside);
        const passed = await auth.verify(request({ body, headers: await sign(ok, body) }));
        assertPasses(passed, "signature");
        // The signed time is reported, so dedup can outlive the replay window.
        assert.equal(passed.ok && passed.signedAtMs, (NOW_S + inside) * 1000);
        const stale = String(NOW_S + (past ? -outside : outside));
        assertFails(await auth.verify(request({ body, headers: await sign(stale, body) })));
        // A fresh timestamp pasted onto a signature made for another one fails.
        const headers = await sign(stale, body);
        headers["x-signature-timestamp"] = ok;
        assertFails(await auth.verify(request({ body, headers })));
        // Without the timestamp header, a signature over "<timestamp>.<body>" fails.
        const bare = await sign(ok, body);
        delete (bare as Record<string, string>)["x-signature-timestamp"];
        assertFails(await auth.verify(request({ body, headers: bare })));
      },
    ),
    { numRuns: 200 },
  );
  // The edges, exactly.
  for (const skew of [-300, 300]) {
    const ts = String(NOW_S + skew);
    assertPasses(await auth.verify(request({ headers: await sign(ts, "{}") })), "signature");
  }
  for (const skew of [-301, 301]) {
    assertFails(await auth.verify(request({ headers: await sign(String(NOW_S + skew), "{}") })));
  }
});

Deno.test("x-signature-timestamp: a value that is not unix seconds fails even when signed", async () => {
  const auth = createAuthenticator(settings());
  const notSeconds = fc.oneof(
    fc.string({ minLength: 1 }).filter((s) => !/^\s*\d{1,12}\s*$/.test(s) && s.trim() !== ""),
    fc.constantFrom(
      "1706529600.5",
      "-1706529600",
      "1e9",
      "0x65b7a4c0",
      new Date(NOW_MS).toISOString(),
      String(NOW_MS * 10),
    ),
  ).filter((s) => !/[\r\n\0]/.test(s));
  await fc.assert(
    fc.asyncProperty(notSeconds, async (timestamp) => {
      const headers = {
        "x-signature": await signHex(SECRET, `${timestamp}.{}`),
        "x-signature-timestamp": timestamp,
      };
      assertFails(await auth.verify(request({ headers })));
    }),
    { numRuns: 200 },
  );
});

// Standard Webhooks ----------------------------------------------------------

const msgId = fc.stringMatching(/^msg_[A-Za-z0-9]{1,24}$/);

Deno.test("Standard Webhooks: a signature verifies; a changed body, id or signature byte fails", async () => {
  const auth = createAuthenticator(settings());
  const key = encoder.encode(SECRET);
  await fc.assert(
    fc.asyncProperty(
      bodyBytes,
      msgId,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (body, id, at, xor) => {
        const headers = {
          "webhook-id": id,
          "webhook-timestamp": String(NOW_S),
          "webhook-signature": await standardSignature(key, id, NOW_S, body),
        };
        assertPasses(await auth.verify(request({ body, headers })), "standard_webhooks");

        if (body.length > 0) {
          const changed = body.slice();
          changed[at % changed.length] ^= xor;
          assertFails(await auth.verify(request({ body: changed, headers })));
        }
        assertFails(
          await auth.verify(request({ body, headers: { ...headers, "webhook-id": `${id}x` } })),
        );
        const mac = Uint8Array.from(
          atob(headers["webhook-signature"].slice(3)),
          (c) => c.charCodeAt(0),
        );
        // A prefix of the right MAC (a shorter signature) fails, and so does the MAC with a
        // byte more; neither is an error.
        const prefix = toBase64(mac.slice(0, at % mac.length));
        const longer = toBase64(Uint8Array.of(...mac, xor));
        for (const wrongLength of [prefix, longer]) {
          assertFails(
            await auth.verify(
              request({ body, headers: { ...headers, "webhook-signature": `v1,${wrongLength}` } }),
            ),
          );
        }
        mac[at % mac.length] ^= xor;
        assertFails(
          await auth.verify(
            request({ body, headers: { ...headers, "webhook-signature": `v1,${toBase64(mac)}` } }),
          ),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("Standard Webhooks: a base64 character flip fails unless it decodes to the same bytes", async () => {
  // The last base64 digit of a 32-byte MAC carries 2 unused bits; atob ignores
  // them, so a few flips there decode to the very same MAC (not a forgery).
  const auth = createAuthenticator(settings());
  const key = encoder.encode(SECRET);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  await fc.assert(
    fc.asyncProperty(
      msgId,
      fc.integer({ min: 0, max: 42 }),
      fc.integer({ min: 1, max: 63 }),
      async (id, index, delta) => {
        const signature = (await standardSignature(key, id, NOW_S, encoder.encode("{}"))).slice(3);
        const flipped = signature.slice(0, index) +
          alphabet[(alphabet.indexOf(signature[index]) + delta) % 64] + signature.slice(index + 1);
        const sameBytes = atob(flipped) === atob(signature);
        const result = await auth.verify(
          request({
            headers: {
              "webhook-id": id,
              "webhook-timestamp": String(NOW_S),
              "webhook-signature": `v1,${flipped}`,
            },
          }),
        );
        assert.equal(result.ok, sameBytes, `${signature} -> ${flipped}`);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("Standard Webhooks: with rotated secrets the valid signature passes in any position", async () => {
  const auth = createAuthenticator(settings());
  const body = encoder.encode('{"symbol":"SPY"}');
  await fc.assert(
    fc.asyncProperty(
      msgId,
      fc.array(fc.string({ minLength: 1, maxLength: 40 }), { minLength: 0, maxLength: 4 }),
      fc.nat(),
      fc.constantFrom(" ", "  "),
      async (id, others, position, separator) => {
        fc.pre(!others.includes(SECRET));
        const wrong = await Promise.all(
          others.map((s) => standardSignature(encoder.encode(s), id, NOW_S, body)),
        );
        const valid = await standardSignature(encoder.encode(SECRET), id, NOW_S, body);
        const all = [...wrong];
        all.splice(position % (wrong.length + 1), 0, valid);
        const headers = { "webhook-id": id, "webhook-timestamp": String(NOW_S) };
        assertPasses(
          await auth.verify(
            request({ body, headers: { ...headers, "webhook-signature": all.join(separator) } }),
          ),
          "standard_webhooks",
        );
        if (wrong.length > 0) {
          assertFails(
            await auth.verify(
              request({ body, headers: { ...headers, "webhook-signature": wrong.join(" ") } }),
            ),
          );
        }
        // Other versions are ignored, not treated as v1.
        assertFails(
          await auth.verify(
            request({
              body,
              headers: { ...headers, "webhook-signature": valid.replace("v1,", "v2,") },
            }),
          ),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("Standard Webhooks: a whsec_ secret is the base64 key, not its text", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 24, maxLength: 64 }), msgId, async (key, id) => {
      const secret = `whsec_${toBase64(key)}`;
      const auth = createAuthenticator(settings({ secret }));
      const body = encoder.encode("{}");
      const headers = { "webhook-id": id, "webhook-timestamp": String(NOW_S) };
      assertPasses(
        await auth.verify(
          request({
            body,
            headers: {
              ...headers,
              "webhook-signature": await standardSignature(key, id, NOW_S, body),
            },
          }),
        ),
        "standard_webhooks",
      );
      const overText = await standardSignature(encoder.encode(secret), id, NOW_S, body);
      assertFails(
        await auth.verify(
          request({ body, headers: { ...headers, "webhook-signature": overText } }),
        ),
      );
      // x-signature and the plain-secret methods use the secret as written.
      assertPasses(
        await auth.verify(
          request({ body, headers: { "x-signature": await signHex(secret, body) } }),
        ),
        "signature",
      );
      assertPasses(await auth.verify(request({ bodySecret: secret })), "body_secret");
    }),
    { numRuns: 200 },
  );
});

Deno.test("Standard Webhooks: webhook-timestamp inside +/-300 s passes, outside or missing fails", async () => {
  const auth = createAuthenticator(settings());
  const key = encoder.encode(SECRET);
  const body = encoder.encode("{}");
  const headersAt = async (timestamp: string) => ({
    "webhook-id": "msg_1",
    "webhook-timestamp": timestamp,
    "webhook-signature": await standardSignature(key, "msg_1", timestamp, body),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: -300, max: 300 }),
      fc.integer({ min: 301, max: 10 ** 9 }),
      fc.boolean(),
      async (inside, outside, past) => {
        assertPasses(
          await auth.verify(request({ body, headers: await headersAt(String(NOW_S + inside)) })),
          "standard_webhooks",
        );
        const stale = String(NOW_S + (past ? -outside : outside));
        assertFails(await auth.verify(request({ body, headers: await headersAt(stale) })));
      },
    ),
    { numRuns: 200 },
  );
  for (const timestamp of ["soon", "1706529600.0", ""]) {
    assertFails(await auth.verify(request({ body, headers: await headersAt(timestamp) })));
  }
  const { "webhook-id": _, ...noId } = await headersAt(String(NOW_S));
  assertFails(await auth.verify(request({ body, headers: noId })));
});

// Plain secrets: body secret and URL token ------------------------------------

Deno.test("body secret and URL token: the right secret passes; wrong, empty, prefix or longer fails", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.string({ minLength: 1, maxLength: 64 }),
      fc.string({ minLength: 1, maxLength: 8 }),
      fc.string({ maxLength: 64 }),
      fc.nat(),
      async (secret, extra, other, cut) => {
        const auth = createAuthenticator(settings({ secret }));
        assertPasses(await auth.verify(request({ bodySecret: secret })), "body_secret");
        assertPasses(await auth.verify(request({ pathToken: secret })), "url_token");
        const wrong = [
          "",
          secret.slice(0, cut % secret.length),
          secret + extra,
          extra + secret,
          secret.toUpperCase() === secret ? secret.toLowerCase() : secret.toUpperCase(),
          other,
        ].filter((w) => w !== secret);
        for (const guess of wrong) {
          const asBody = await auth.verify(request({ bodySecret: guess }));
          const asPath = await auth.verify(request({ pathToken: guess }));
          assertFails(asBody);
          assertFails(asPath);
          // The guess (perhaps a near miss of the real secret) is not in the log line either.
          if (guess.length >= 4) {
            assert.ok(!asBody.ok && !asBody.reason.includes(guess));
            assert.ok(!asPath.ok && !asPath.reason.includes(guess));
          }
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("verify() passes when any one presented method is right, even if another is wrong", async () => {
  const auth = createAuthenticator(settings());
  const result = await auth.verify(
    request({ headers: { "x-signature": "0".repeat(64) }, bodySecret: SECRET }),
  );
  assertPasses(result, "body_secret");
  assertFails(
    await auth.verify(
      request({ headers: { "x-signature": "0".repeat(64) }, bodySecret: "wrong", pathToken: "no" }),
    ),
  );
});

Deno.test("rotation: the previous secret passes every method, flagged; a third secret fails", async () => {
  const OLD = "the-previous-secret-9876543210";
  const OTHER = "some-other-secret-000000000000";
  const auth = createAuthenticator(settings({ previousSecret: OLD }));
  const body = '{"symbol":"SPY"}';
  const byEach = async (secret: string) => [
    await auth.verify(request({ body, headers: { "x-signature": await signHex(secret, body) } })),
    await auth.verify(request({
      body,
      headers: {
        "webhook-id": "msg_1",
        "webhook-timestamp": String(NOW_S),
        "webhook-signature": await standardSignature(
          encoder.encode(secret),
          "msg_1",
          NOW_S,
          encoder.encode(body),
        ),
      },
    })),
    await auth.verify(request({ pathToken: secret })),
    await auth.verify(request({ bodySecret: secret })),
  ];
  const methods = ["signature", "standard_webhooks", "url_token", "body_secret"];
  for (const [i, r] of (await byEach(SECRET)).entries()) {
    assertPasses(r, methods[i]);
    assert.ok(r.ok && r.previousSecret === undefined, methods[i]);
  }
  for (const [i, r] of (await byEach(OLD)).entries()) {
    assertPasses(r, methods[i]);
    assert.ok(r.ok && r.previousSecret === true, methods[i]);
  }
  for (const r of await byEach(OTHER)) assertFails(r);
  // Without it set, the old secret is refused.
  assertFails(await createAuthenticator(settings()).verify(request({ bodySecret: OLD })));
});

// Address allowlist ------------------------------------------------------------

const TV = parseCidrs(TRADINGVIEW_IPS) as Cidr[];
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));

Deno.test("IP allowlist alone: TradingView's addresses pass (also IPv4-mapped IPv6), others fail", async () => {
  const auth = createAuthenticator(settings({ secret: null, ipAllowlist: TV }));
  for (const ip of TRADINGVIEW_IPS) {
    assertPasses(await auth.verify(request({ clientIp: ip })), "ip_allowlist");
    assertPasses(await auth.verify(request({ clientIp: `::ffff:${ip}` })), "ip_allowlist");
  }
  for (
    const ip of [null, "", "not an ip", "52.89.214.239", "::1", "2001:db8::1", "52.89.214.238:443"]
  ) {
    assertFails(await auth.verify(request({ clientIp: ip })));
  }
  await fc.assert(
    fc.asyncProperty(ipv4, async (ip) => {
      const result = await auth.verify(request({ clientIp: ip }));
      assert.equal(result.ok, TRADINGVIEW_IPS.includes(ip), ip);
    }),
    { numRuns: 200 },
  );
  const cidr = createAuthenticator(
    settings({ secret: null, ipAllowlist: parseCidrs(["10.0.0.0/8", "2001:db8::/32"]) as Cidr[] }),
  );
  assertPasses(await cidr.verify(request({ clientIp: "10.200.3.4" })), "ip_allowlist");
  assertPasses(await cidr.verify(request({ clientIp: "::ffff:10.1.1.1" })), "ip_allowlist");
  assertPasses(await cidr.verify(request({ clientIp: "2001:db8:1::5" })), "ip_allowlist");
  assertFails(await cidr.verify(request({ clientIp: "11.0.0.1" })));
});

Deno.test("IP allowlist beside a secret (not required): a listed address passes without the secret", async () => {
  // Worth knowing: TradingView's senders are shared by every TradingView user.
  const auth = createAuthenticator(settings({ ipAllowlist: TV }));
  assertPasses(await auth.verify(request({ clientIp: TRADINGVIEW_IPS[0] })), "ip_allowlist");
  assertPasses(
    await auth.verify(request({ clientIp: "203.0.113.9", bodySecret: SECRET })),
    "body_secret",
  );
  assertFails(await auth.verify(request({ clientIp: "203.0.113.9" })));
});

Deno.test("IP allowlist required: outside addresses fail even with the secret; inside needs it too", async () => {
  const auth = createAuthenticator(settings({ ipAllowlist: TV, ipAllowlistRequired: true }));
  const inside = TRADINGVIEW_IPS[1];
  const signature = await signHex(SECRET, "{}");
  for (const clientIp of ["203.0.113.9", null, "::ffff:203.0.113.9"]) {
    assertFails(await auth.verify(request({ clientIp, bodySecret: SECRET })));
    assertFails(await auth.verify(request({ clientIp, pathToken: SECRET })));
    assertFails(await auth.verify(request({ clientIp, headers: { "x-signature": signature } })));
  }
  assertPasses(await auth.verify(request({ clientIp: inside, bodySecret: SECRET })), "body_secret");
  assertPasses(
    await auth.verify(
      request({ clientIp: `::ffff:${inside}`, headers: { "x-signature": signature } }),
    ),
    "signature",
  );
  // With a secret configured, the address alone is not enough in required mode.
  assertFails(await auth.verify(request({ clientIp: inside })));
  assertFails(await auth.verify(request({ clientIp: inside, bodySecret: "wrong" })));
  // Without a secret, required mode is the allowlist alone.
  const ipOnly = createAuthenticator(
    settings({ secret: null, ipAllowlist: TV, ipAllowlistRequired: true }),
  );
  assertPasses(await ipOnly.verify(request({ clientIp: inside })), "ip_allowlist");
  assertFails(await ipOnly.verify(request({ clientIp: "203.0.113.9" })));
});

Deno.test("the allowlist reads addresses only in their usual notation, never hex or octal", async () => {
  const auth = createAuthenticator(settings({ secret: null, ipAllowlist: TV }));
  // 52.89.214.238 spelled as one number, in hex and with an octal-looking part.
  for (const ip of ["878302958", "0x34.0x59.0xd6.0xee", "064.89.214.238", "52.89.214.238/32"]) {
    assertFails(await auth.verify(request({ clientIp: ip })));
  }
  assertPasses(
    await auth.verify(request({ clientIp: "0:0:0:0:0:ffff:52.89.214.238" })),
    "ip_allowlist",
  );
  // "010.0.0.0/8" would otherwise mean 8.0.0.0/8.
  for (const entry of ["010.0.0.0/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/8/8", "0x0a.0.0.0/8"]) {
    assert.deepEqual(parseCidrs([entry]), { invalid: entry });
  }
  assert.equal((parseCidrs(["10.0.0.0/8", "2001:db8::/32", "::/0"]) as Cidr[]).length, 3);
});

Deno.test("IP allowlist: an entry written IPv4-mapped admits the same senders as written IPv4", async () => {
  // "::ffff:52.89.214.238" (as a proxy in front may report TradingView) was taken and then
  // matched no sender at all: with a secret set, every alert from it was refused.
  await fc.assert(
    fc.asyncProperty(ipv4, fc.integer({ min: 0, max: 32 }), ipv4, async (range, bits, client) => {
      const plain = createAuthenticator(
        settings({ secret: null, ipAllowlist: parseCidrs([`${range}/${bits}`]) as Cidr[] }),
      );
      const mapped = createAuthenticator(
        settings({
          secret: null,
          ipAllowlist: parseCidrs([`::ffff:${range}/${96 + bits}`]) as Cidr[],
        }),
      );
      for (const ip of [client, `::ffff:${client}`, range]) {
        const want = (await plain.verify(request({ clientIp: ip }))).ok;
        assert.equal(
          (await mapped.verify(request({ clientIp: ip }))).ok,
          want,
          `${range}/${bits} ${ip}`,
        );
      }
    }),
    { numRuns: 200 },
  );
  const tv = createAuthenticator(
    settings({
      ipAllowlist: parseCidrs(["::ffff:52.89.214.238"]) as Cidr[],
      ipAllowlistRequired: true,
    }),
  );
  const body = JSON.stringify({ symbol: "SPY" });
  const signature = await signHex(SECRET, body);
  assertPasses(
    await tv.verify(
      request({ body, headers: { "x-signature": signature }, clientIp: "52.89.214.238" }),
    ),
    "signature",
  );
});
