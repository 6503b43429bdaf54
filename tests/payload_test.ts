/**
 * What of a request body may be kept: extractSecret() takes the secret out,
 * storable() makes any JSON value fit for Postgres jsonb (checked against
 * both drivers), redactText() blanks secrets in bodies that are not JSON.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  extractSecret,
  MAX_STORED_DEPTH,
  MAX_STORED_PAYLOAD,
  parseAlertJson,
  payloadText,
  redactText,
  scrubSecret,
  storable,
} from "../core/payload.ts";
import { dbTest } from "./_db.ts";

Deno.test("extractSecret() removes secret and passphrase and returns the first string one", () => {
  assert.deepEqual(extractSecret({ secret: "s3", symbol: "SPY" }), {
    secret: "s3",
    payload: { symbol: "SPY" },
  });
  assert.deepEqual(extractSecret({ passphrase: "p4", symbol: "SPY" }), {
    secret: "p4",
    payload: { symbol: "SPY" },
  });
  assert.deepEqual(extractSecret({ secret: "s3", passphrase: "p4" }), {
    secret: "s3",
    payload: {},
  });
  // A secret that is not a string is still removed, and does not count.
  assert.deepEqual(extractSecret({ secret: 12345, symbol: "SPY" }), {
    secret: null,
    payload: { symbol: "SPY" },
  });
  assert.deepEqual(extractSecret({ secret: null, passphrase: "p4" }), {
    secret: "p4",
    payload: {},
  });
  assert.deepEqual(extractSecret({ secret: "" }), { secret: "", payload: {} });
  // Only a top-level object carries one.
  for (const body of [null, "secret", 42, [{ secret: "s3" }]]) {
    assert.deepEqual(extractSecret(body), { secret: null, payload: body });
  }
  // The input is not changed.
  const body = { secret: "s3", symbol: "SPY" };
  extractSecret(body);
  assert.deepEqual(body, { secret: "s3", symbol: "SPY" });
});

Deno.test("extractSecret() never leaves a secret field in the payload", () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string(), fc.jsonValue()),
      fc.option(fc.jsonValue(), { nil: undefined }),
      fc.option(fc.jsonValue(), { nil: undefined }),
      (rest, secret, passphrase) => {
        const body: Record<string, unknown> = { ...rest };
        if (secret !== undefined) body.secret = secret;
        if (passphrase !== undefined) body.passphrase = passphrase;
        const out = extractSecret(body);
        const payload = out.payload as Record<string, unknown>;
        assert.ok(!("secret" in payload) && !("passphrase" in payload));
        const expected = typeof secret === "string"
          ? secret
          : typeof passphrase === "string"
          ? passphrase
          : null;
        assert.equal(out.secret, expected);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("storable() replaces NUL and lone surrogates, in keys too, and keeps the rest", () => {
  assert.deepEqual(
    storable({ "a\u0000": ["x\u0000y", "\ud800", "ok 😀", 1, null, true], b: { c: "\udfffz" } }),
    { "a\uFFFD": ["x\uFFFDy", "\uFFFD", "ok 😀", 1, null, true], b: { c: "\uFFFDz" } },
  );
  assert.equal(storable("plain"), "plain");
  assert.equal(storable(3.5), 3.5);
  // Deno has no __proto__ setter, so the key is kept as data.
  const parsed = JSON.parse('{"__proto__": {"x": 1}, "y": 2}');
  assert.deepEqual(JSON.parse(JSON.stringify(storable(parsed))), { ["__proto__"]: { x: 1 }, y: 2 });
});

Deno.test("storable() cuts nesting deeper than MAX_STORED_DEPTH instead of overflowing the stack", () => {
  let deep: unknown = "bottom";
  for (let i = 0; i < 30_000; i++) deep = i % 2 ? [deep] : { d: deep };
  const kept = storable(deep);
  const text = JSON.stringify(kept);
  assert.ok(text.includes('"[nested too deep]"'));
  const containers = text.replace('"[nested too deep]"', "").match(/\[|\{/g) ?? [];
  assert.equal(containers.length, MAX_STORED_DEPTH);
  // Anything shallower is copied whole.
  const shallow = { a: [[[{ b: [1, 2, { c: "d" }] }]]] };
  assert.deepEqual(storable(shallow), shallow);
});

const WELL_FORMED_NO_NUL = (s: string) => s.isWellFormed() && !s.includes("\u0000");

function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => [k, ...strings(v)]);
}

/** Strings with NUL, lone surrogates and everything else. */
const nastyString = fc.string({
  unit: fc.oneof(
    fc.constantFrom("\u0000", "\ud800", "\udbff", "\udc00", "\udfff", "\\", '"'),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  ),
});
const nastyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    nastyString,
    fc.jsonValue({ maxDepth: 1 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(nastyString, tie("value"), { maxKeys: 4 }),
  ),
})).value;

Deno.test("storable() output has only well-formed strings without NUL, and is idempotent", () => {
  fc.assert(
    fc.property(nastyJson, (value) => {
      const once = storable(value);
      assert.ok(strings(once).every(WELL_FORMED_NO_NUL));
      assert.deepEqual(storable(once), once);
    }),
    { numRuns: 300 },
  );
});

Deno.test("storable() returns what needs nothing as it is, and never changes its input", () => {
  fc.assert(
    fc.property(nastyJson, (value) => {
      const before = JSON.stringify(value);
      const once = storable(value);
      assert.equal(JSON.stringify(value), before, "the input was changed");
      assert.equal(storable(once), once, "a storable value was copied again");
      if (strings(value).every(WELL_FORMED_NO_NUL)) assert.equal(once, value);
      else assert.notEqual(once, value);
    }),
    { numRuns: 300 },
  );
});

dbTest("Postgres accepts storable() of any JSON value as jsonb and as text", async ({ db }) => {
  const insert = async (value: unknown) => {
    const json = JSON.stringify(storable(value));
    await db.query(
      `insert into processing_errors (stage, code, message, payload, details)
       values ('test', 'TEST', 'storable', $1::text, $2::text::jsonb)`,
      [json, JSON.stringify({ v: storable(value) })],
    );
  };
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.jsonValue(), fc.string({ unit: "binary" }), nastyJson, nastyString),
      insert,
    ),
    { numRuns: 100 },
  );
  // A string comes back exactly as storable() made it.
  const s = 'a\u0000b\ud800c😀\\"';
  const [row] = await db.query<{ v: string }>("select ($1::text::jsonb) #>> '{}' as v", [
    JSON.stringify(storable(s)),
  ]);
  assert.equal(row.v, storable(s));
  // Nesting as deep as a 64 KiB body allows.
  let deep: unknown = 1;
  for (let i = 0; i < 30_000; i++) deep = [deep];
  await insert(deep);
});

// redactText ---------------------------------------------------------------------

Deno.test("redactText() blanks secret values in the shapes broken alert messages take", () => {
  const cases: [string, string][] = [
    ['{"secret": "hunter2-abc", "symbol": ', '{"secret": "[redacted]", "symbol": '],
    ['{"passphrase":"hunter2-abc', '{"passphrase":"[redacted]"'],
    ['{"Secret" : "hun\\"ter2-abc", "x"', '{"Secret" : "[redacted]", "x"'],
    ["{'secret': 'hunter2-abc', 'symbol': 'SPY'", "{'secret': '[redacted]', 'symbol': 'SPY'"],
    ["{secret: hunter2-abc, symbol: SPY", "{secret: [redacted], symbol: SPY"],
    ['{"secret": 123456789, "a": 1', '{"secret": [redacted], "a": 1'],
    ["secret=hunter2-abc&symbol=SPY", "secret=[redacted]&symbol=SPY"],
    // JSON inside a JSON string, as {{strategy.order.alert_message}} can produce.
    ['{"msg": "{\\"secret\\": \\"hunter2-abc\\"}"', '{"msg": "{\\"secret\\": \\"[redacted]\\"}"'],
  ];
  for (const [input, expected] of cases) {
    const out = redactText(input);
    assert.equal(out, expected);
    assert.ok(!out.includes("hunter2") && !out.includes("123456789"), out);
  }
  // Fields that only look alike are kept.
  const lookalike = '{"secret_note": "keep", "mysecret": "keep", "secrets": "keep"';
  assert.equal(redactText(lookalike), lookalike);
});

Deno.test("redactText() never keeps a secret placed in a broken JSON template", () => {
  const secret = fc.stringMatching(/^[A-Za-z0-9_\-.!@#$%^*()+]{4,40}$/).map((s) => `S3CR3T${s}`);
  const template = fc.record({
    key: fc.constantFrom(
      '"secret"',
      '"passphrase"',
      '"SECRET"',
      "'secret'",
      "secret",
      '\\"secret\\"',
    ),
    colon: fc.constantFrom(":", ": ", " : ", "=", ":\n\t"),
    quote: fc.constantFrom('"', "'", "", '\\"'),
    close: fc.boolean(),
    before: fc.constantFrom("{", '{"symbol": "SPY", ', "", '{"a": [1, 2], '),
    after: fc.constantFrom("", ", ", ', "symbol": ', "}", ',"direction":"buy"'),
  });
  fc.assert(
    fc.property(secret, template, (s, t) => {
      const value = `${t.quote}${s}${t.close ? t.quote : ""}`;
      const text = `${t.before}${t.key}${t.colon}${value}${t.after}`;
      const out = redactText(text);
      assert.ok(!out.includes(s), `${text} -> ${out}`);
      assert.ok(out.includes("[redacted]"));
    }),
    { numRuns: 300 },
  );
});

Deno.test("redactText() changes nothing else, and truncates without splitting a character", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (text) => {
      fc.pre(!/secret|passphrase/i.test(text));
      const out = redactText(text);
      assert.equal(out, text.replaceAll("\u0000", "\uFFFD"));
    }),
    { numRuns: 200 },
  );
  const long = "x".repeat(MAX_STORED_PAYLOAD + 500);
  assert.equal(redactText(long), `${"x".repeat(MAX_STORED_PAYLOAD)}…[truncated]`);
  assert.equal(redactText("abcdef", 3), "abc…[truncated]");
  // An emoji across the cut: the half left behind becomes U+FFFD, not a lone surrogate.
  const cut = redactText(`${"x".repeat(9)}😀😀`, 10);
  assert.equal(cut, `${"x".repeat(9)}\uFFFD…[truncated]`);
  assert.ok(cut.isWellFormed());
  // The secret is blanked before the cut, so no part of it survives.
  const atEdge = redactText(`${"x".repeat(20)}"secret": "hunter2-abc"`, 35);
  assert.ok(!atEdge.includes("hunter"), atEdge);
});

Deno.test("payloadText() shows a parsed body without its secret, nested ones blanked too", () => {
  const text = payloadText({ secret: "hunter2", symbol: "SPY", metadata: { passphrase: "p4ss" } });
  assert.equal(text, '{"symbol":"SPY","metadata":{"passphrase":"[redacted]"}}');
  assert.equal(payloadText({ note: "a\u0000b" }), '{"note":"a\uFFFDb"}');
  assert.equal(payloadText([1, 2]), "[1,2]");
  assert.equal(payloadText(undefined), "");
});

Deno.test("scrubSecret() leaves no copy of the secret in any key or string, and changes nothing else", () => {
  const secret = "s3cret-value-01";
  const withSecret = fc.oneof(
    fc.string(),
    fc.string().map((s) => `${s}${secret}${s}`),
  );
  fc.assert(
    fc.property(
      fc.jsonValue({ maxDepth: 5 }),
      fc.dictionary(withSecret, fc.oneof(withSecret, fc.integer())),
      (value, planted) => {
        const input = { value, planted };
        const before = JSON.stringify(input);
        const out = scrubSecret(input, secret);
        assert.ok(!JSON.stringify(out).includes(secret));
        assert.equal(JSON.stringify(input), before, "the input was changed");
        // Without the secret in it, a value comes back as it was.
        if (!JSON.stringify(value).includes(secret)) assert.equal(out.value, value);
        if (!JSON.stringify(planted).includes(secret)) assert.equal(out, input);
        assert.equal(scrubSecret(input, null), input);
      },
    ),
    { numRuns: 200 },
  );
  assert.deepEqual(scrubSecret({ a: `x${secret}y`, [secret]: [secret] }, secret), {
    a: "x[redacted]y",
    "[redacted]": ["[redacted]"],
  });
  // A short development secret would match ordinary text: left alone.
  assert.deepEqual(scrubSecret({ a: "abc" }, "b"), { a: "abc" });
});

Deno.test("parseAlertJson() reads a bare NaN or Infinity outside strings as null, nothing else", () => {
  assert.deepEqual(
    parseAlertJson('{"score": NaN, "a": [Infinity, -Infinity, 1], "note": "NaN, Infinity"}'),
    { score: null, a: [null, null, 1], note: "NaN, Infinity" },
  );
  assert.deepEqual(parseAlertJson('{"s": "say \\"NaN\\"", "x": NaN}'), { s: 'say "NaN"', x: null });
  for (const bad of ["{NaN: 1}", '{"x": NaNa}', '{"x": xNaN}', "{", '{"x": 1.NaN}']) {
    assert.throws(() => parseAlertJson(bad), SyntaxError, bad);
  }
  fc.assert(
    fc.property(
      fc.dictionary(
        fc.string(),
        fc.oneof(fc.string(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean()),
      ),
      fc.constantFrom("NaN", "Infinity", "-Infinity"),
      fc.constantFrom("", " ", "\n  "),
      (fields, token, space) => {
        const valid = JSON.stringify(fields, null, space);
        const expected = JSON.parse(valid);
        assert.deepEqual(parseAlertJson(valid), expected);
        const key = `plot_${Object.keys(fields).join("").length}`;
        const body = `{${space}"${key}":${space}${token}${
          Object.keys(fields).length > 0 ? `,${valid.slice(1)}` : "}"
        }`;
        assert.deepEqual(parseAlertJson(body), { [key]: null, ...expected });
      },
    ),
    { numRuns: 300 },
  );
});
