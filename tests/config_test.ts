/**
 * loadConfig(): the guide's defaults, a ConfigError naming each bad variable
 * (never echoing a secret), what production insists on, the warnings a
 * development set-up earns, and the allowlist and client-address settings.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { describeDatabase, newWorkerId } from "../compose.ts";
import { ConfigError, loadConfig, TRADINGVIEW_IPS } from "../core/config.ts";
import { ruleWarnings, VIX_ALL_TIME_LOW } from "../core/pipeline_config.ts";
import { DEFAULT_RULES } from "../core/rules.ts";
import { connectionName } from "../db/jobs.ts";

const PRODUCTION = {
  NODE_ENV: "production",
  WEBHOOK_SECRET: "a-production-secret-0123",
  OPERATOR_TOKEN: "an-operator-token-0123",
  DATABASE_URL: "postgres://app@db.internal:5432/optionstrat",
};

/** The ConfigError that loading `env` throws. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

Deno.test("loadConfig() with an empty environment gives the guide's defaults", () => {
  const { config } = loadConfig({});
  assert.equal(config.env, "development");
  assert.equal(config.port, 8080);
  assert.equal(config.cache.contextTTLSeconds, 60);
  assert.equal(config.cache.deduplicationTTLSeconds, 60);
  assert.equal(config.webhook.maxBodyBytes, 64 * 1024);
  assert.equal(config.webhook.signatureToleranceSeconds, 300);
  assert.equal(config.webhook.secret, null);
  assert.equal(config.webhook.ipAllowlist, null);
  assert.equal(config.webhook.ipAllowlistRequired, false);
  assert.equal(config.webhook.clientIpHeader, null);
  assert.equal(config.databaseUrl, null);
  assert.equal(config.dataDir, "./data");
  assert.equal(config.operatorToken, null);
  assert.equal(config.instanceId, "local");
  assert.equal(config.logLevel, "info");
});

Deno.test("loadConfig() reads good values", () => {
  const { config } = loadConfig({
    PORT: "3000",
    CONTEXT_TTL_SECONDS: "30",
    DEDUP_TTL_SECONDS: "600",
    WEBHOOK_MAX_BODY_BYTES: "1024",
    SIGNATURE_TOLERANCE_SECONDS: "120",
    WEBHOOK_SECRET: "  dev-secret  ",
    WEBHOOK_IP_ALLOWLIST: "10.0.0.0/8",
    DATABASE_URL: "postgresql://u@h/db",
    LOG_LEVEL: "debug",
  });
  assert.equal(config.port, 3000);
  assert.equal(config.cache.contextTTLSeconds, 30);
  assert.equal(config.cache.deduplicationTTLSeconds, 600);
  assert.equal(config.webhook.maxBodyBytes, 1024);
  assert.equal(config.webhook.signatureToleranceSeconds, 120);
  // Surrounding whitespace (a common .env slip) is not part of the secret.
  assert.equal(config.webhook.secret, "dev-secret");
  // With a secret set the allowlist is a gate beside it, never a credential alone.
  assert.equal(config.webhook.ipAllowlistRequired, true);
  assert.deepEqual(config.webhook.ipAllowlist, ["10.0.0.0/8"]);
  assert.equal(
    loadConfig({ WEBHOOK_IP_ALLOWLIST: "10.0.0.0/8" }).config.webhook.ipAllowlistRequired,
    false,
  );
  assert.equal(config.databaseUrl, "postgresql://u@h/db");
  assert.equal(config.logLevel, "debug");
});

Deno.test("loadConfig() refuses each bad value with a ConfigError naming the variable", () => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: "abc" }, "PORT"],
    [{ PORT: "0" }, "PORT"],
    [{ PORT: "65536" }, "PORT"],
    [{ PORT: "80.5" }, "PORT"],
    [{ NODE_ENV: "prod" }, "NODE_ENV"],
    [{ DEDUP_TTL_SECONDS: "-1" }, "DEDUP_TTL_SECONDS"],
    [{ DEDUP_TTL_SECONDS: "0" }, "DEDUP_TTL_SECONDS"],
    [{ CONTEXT_TTL_SECONDS: "a minute" }, "CONTEXT_TTL_SECONDS"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ DATABASE_POOL_SIZE: "0" }, "DATABASE_POOL_SIZE"],
    [{ LOG_LEVEL: "verbose" }, "LOG_LEVEL"],
    [{ WEBHOOK_MAX_BODY_BYTES: "10" }, "WEBHOOK_MAX_BODY_BYTES"],
    [{ SIGNATURE_TOLERANCE_SECONDS: "5m" }, "SIGNATURE_TOLERANCE_SECONDS"],
    [{ RATE_LIMIT_PER_MINUTE: "0" }, "RATE_LIMIT_PER_MINUTE"],
    [{ WEBHOOK_IP_ALLOWLIST: "nonsense" }, "WEBHOOK_IP_ALLOWLIST"],
    [{ WEBHOOK_IP_ALLOWLIST: "tradingview, 10.0.0.0/33" }, "WEBHOOK_IP_ALLOWLIST"],
    // A zero-padded part would be read as octal: "010.0.0.0/8" is not 10.0.0.0/8.
    [{ WEBHOOK_IP_ALLOWLIST: "010.0.0.0/8" }, "WEBHOOK_IP_ALLOWLIST"],
    [{ WEBHOOK_IP_ALLOWLIST: " , " }, "WEBHOOK_IP_ALLOWLIST"],
    [{ CLIENT_IP_HEADER: "x forwarded" }, "CLIENT_IP_HEADER"],
    [{ CLIENT_IP_HEADER: "fly-client-ip:" }, "CLIENT_IP_HEADER"],
  ];
  for (const [env, name] of cases) {
    const error = configError(env);
    assert.equal(error.name, "ConfigError");
    assert.ok(
      error.problems.some((p) => p.startsWith(`${name} `) || p.startsWith(`${name}=`)),
      `${JSON.stringify(env)}: ${error.message}`,
    );
    assert.ok(error.message.includes(name));
  }
});

Deno.test("loadConfig() names every bad variable of the same kind at once", () => {
  const error = configError({ PORT: "abc", NODE_ENV: "prod", DEDUP_TTL_SECONDS: "-1" });
  for (const name of ["PORT", "NODE_ENV", "DEDUP_TTL_SECONDS"]) {
    assert.ok(error.problems.some((p) => p.startsWith(`${name} `)), error.message);
  }
  // Non-secret values are shown, to make the mistake obvious.
  assert.ok(error.message.includes('"abc"'), error.message);
  assert.ok(error.message.includes('"prod"'), error.message);
});

Deno.test("loadConfig() in production requires WEBHOOK_SECRET and OPERATOR_TOKEN of 16+ characters", () => {
  assert.equal(loadConfig(PRODUCTION).config.env, "production");
  const cases: [Record<string, string>, string][] = [
    [{ WEBHOOK_SECRET: "" }, "WEBHOOK_SECRET"],
    [{ WEBHOOK_SECRET: "   " }, "WEBHOOK_SECRET"],
    [{ WEBHOOK_SECRET: "fifteen-chars15" }, "WEBHOOK_SECRET"],
    [{ OPERATOR_TOKEN: "" }, "OPERATOR_TOKEN"],
    [{ OPERATOR_TOKEN: "short" }, "OPERATOR_TOKEN"],
    [{ WEBHOOK_SECRET_PREVIOUS: "fifteen-chars15" }, "WEBHOOK_SECRET_PREVIOUS"],
  ];
  for (const [override, name] of cases) {
    const error = configError({ ...PRODUCTION, ...override });
    assert.ok(error.problems.some((p) => p.startsWith(`${name} `)), error.message);
  }
  const { WEBHOOK_SECRET: _, OPERATOR_TOKEN: __, ...neither } = PRODUCTION;
  const both = configError(neither);
  assert.ok(both.message.includes("WEBHOOK_SECRET") && both.message.includes("OPERATOR_TOKEN"));
  // Exactly 16 is enough.
  loadConfig({ ...PRODUCTION, WEBHOOK_SECRET: "x".repeat(16), OPERATOR_TOKEN: "y".repeat(16) });
  const rotating = loadConfig({ ...PRODUCTION, WEBHOOK_SECRET_PREVIOUS: "z".repeat(16) }).config;
  assert.equal(rotating.webhook.previousSecret, "z".repeat(16));
  // A previous secret with no current one is a mistake, in any environment.
  const alone = configError({ WEBHOOK_SECRET_PREVIOUS: "z".repeat(16) });
  assert.ok(alone.problems.some((p) => p.startsWith("WEBHOOK_SECRET_PREVIOUS needs")));
});

Deno.test("loadConfig() in development without a secret warns loudly that webhooks are open", () => {
  const { config, warnings } = loadConfig({ NODE_ENV: "development" });
  assert.equal(config.webhook.secret, null);
  const warning = warnings.find((w) => w.startsWith("WEBHOOK_SECRET"));
  assert.ok(warning, warnings.join("\n"));
  assert.match(warning, /NOT authenticated/);
  assert.match(warning, /anyone/);
  assert.ok(warnings.some((w) => w.includes("OPERATOR_TOKEN")));
  assert.ok(warnings.some((w) => w.includes("PGlite") && w.includes("fsync")));
  // With a secret, a token and Postgres, nothing to warn about.
  assert.deepEqual(loadConfig(PRODUCTION).warnings, []);
});

Deno.test("loadConfig() warns about rules that refuse every entry, and only about those", () => {
  const warned = (env: Record<string, string>) => loadConfig({ ...PRODUCTION, ...env }).warnings;
  assert.deepEqual(warned({ MAX_OPEN_POSITIONS: "0" }), [
    "MAX_OPEN_POSITIONS=0: no entry will ever be approved (MAX_POSITIONS)",
  ]);
  assert.deepEqual(warned({ MAX_EXPOSURE: "100", BASE_NOTIONAL: "10000" }), [
    "MAX_EXPOSURE (100) is below BASE_NOTIONAL (10000): a full-size entry can never pass " +
    "MAX_EXPOSURE",
  ]);
  assert.deepEqual(warned({ VIX_CAUTION_MULTIPLIER: "0", DEGRADED_MULTIPLIER: "0" }), [
    "VIX_CAUTION_MULTIPLIER=0: every entry in the VIX caution band is refused as SIZE_TOO_SMALL",
    "DEGRADED_MULTIPLIER=0: every entry on degraded data is refused as SIZE_TOO_SMALL",
  ]);
  assert.deepEqual(warned({ MAX_OPEN_POSITIONS: "1", MAX_EXPOSURE: "10000" }), []);
  // A VIX level the VIX is always above: every entry refused, or every entry cut.
  assert.deepEqual(warned({ VIX_CAUTION_LEVEL: "0", VIX_NO_TRADE_LEVEL: "0" }), [
    "VIX_NO_TRADE_LEVEL (0) is below the VIX's all-time low (8.56): every entry with a known " +
    "VIX is refused as HIGH_VOLATILITY",
  ]);
  assert.deepEqual(warned({ VIX_CAUTION_LEVEL: "0" }), [
    "VIX_CAUTION_LEVEL (0) is below the VIX's all-time low (8.56): every entry with a known VIX " +
    "is sized x0.5 (VIX_CAUTION_MULTIPLIER)",
  ]);
  // A caution band that does not change the size, or levels the VIX has printed, say nothing.
  assert.deepEqual(warned({ VIX_CAUTION_LEVEL: "0", VIX_CAUTION_MULTIPLIER: "1" }), []);
  assert.deepEqual(warned({ VIX_CAUTION_LEVEL: "8.56", VIX_NO_TRADE_LEVEL: "8.56" }), []);
});

Deno.test("ruleWarnings() warns about a VIX level exactly when the VIX is always at or above it", () => {
  const level = fc.oneof(fc.double({ min: 0, max: 60, noNaN: true }), fc.constantFrom(0, 8.56, 9));
  fc.assert(
    fc.property(level, level, fc.constantFrom(0.25, 0.5, 1), (a, b, multiplier) => {
      const [cautionLevel, noTradeLevel] = a <= b ? [a, b] : [b, a];
      const rules = {
        ...DEFAULT_RULES,
        vix: { cautionLevel, cautionMultiplier: multiplier, noTradeLevel },
      };
      const warnings = ruleWarnings(rules);
      const noTrade = warnings.some((w) => w.startsWith("VIX_NO_TRADE_LEVEL"));
      const caution = warnings.some((w) => w.startsWith("VIX_CAUTION_LEVEL"));
      assert.equal(noTrade, noTradeLevel < VIX_ALL_TIME_LOW);
      assert.equal(caution, !noTrade && cautionLevel < VIX_ALL_TIME_LOW && multiplier !== 1);
    }),
    { numRuns: 300 },
  );
});

Deno.test("loadConfig() warns when a webhook secret needs escaping in a URL or the message", () => {
  const warned = (env: Record<string, string>) =>
    loadConfig({ ...PRODUCTION, ...env }).warnings.filter((w) => w.includes("percent-encoded"));
  for (const secret of ["Tr0ub4dor/horse-battery", "has space-0123456789", 'quote"in-it-0123456']) {
    const [warning, ...more] = warned({ WEBHOOK_SECRET: secret });
    assert.equal(more.length, 0);
    assert.match(warning, /^WEBHOOK_SECRET has characters other than letters, digits and \. _ ~ -/);
    assert.ok(!warning.includes(secret));
    const previous = warned({ WEBHOOK_SECRET_PREVIOUS: secret });
    assert.match(previous[0], /^WEBHOOK_SECRET_PREVIOUS has/);
  }
  for (const secret of ["0123456789abcdef".repeat(4), "a-secret_with.tilde~0123"]) {
    assert.deepEqual(warned({ WEBHOOK_SECRET: secret, WEBHOOK_SECRET_PREVIOUS: secret }), []);
  }
});

Deno.test("loadConfig() refuses an OPERATOR_TOKEN no Bearer header can carry, in every environment", () => {
  const unusable = [
    "Tr0ub4dor&3!horse#battery",
    "a passphrase with spaces",
    "padding=in-the-middle-0123",
    "smart\u2019quote-token-0123",
  ];
  for (const env of [{}, PRODUCTION]) {
    for (const token of unusable) {
      const error = configError({ ...env, OPERATOR_TOKEN: token });
      const problem = error.problems.find((p) => p.startsWith("OPERATOR_TOKEN "));
      assert.ok(problem, error.message);
      assert.match(problem, /A-Z a-z 0-9 \. _ ~ \+ \/ -/);
      assert.ok(!error.message.includes(token));
    }
  }
  // What the README generates, and base64 with its padding, are fine.
  for (const token of ["0123456789abcdef".repeat(4), "b3BlcmF0b3ItdG9rZW4/+_-.~=="]) {
    assert.equal(loadConfig({ ...PRODUCTION, OPERATOR_TOKEN: token }).config.operatorToken, token);
  }
});

Deno.test("loadConfig() never echoes a secret, a token or a URL in its errors or warnings", () => {
  const secret = fc.stringMatching(/^[A-Za-z0-9]{4,13}$/).map((s) => `Zq${s}`);
  fc.assert(
    fc.property(secret, (s) => {
      const envs: Record<string, string>[] = [
        { ...PRODUCTION, WEBHOOK_SECRET: s },
        { ...PRODUCTION, OPERATOR_TOKEN: s },
        { DATABASE_URL: `mysql://admin:${s}@db.internal/app` },
        { DATABASE_URL: `postgres://admin:${s}@db.internal/app`, PORT: "abc" },
        { WEBHOOK_SECRET: s, OPERATOR_TOKEN: s, NODE_ENV: "prod" },
        { WEBHOOK_SECRET: s, WEBHOOK_IP_ALLOWLIST: "nonsense" },
      ];
      for (const env of envs) {
        const error = configError(env);
        assert.ok(!error.message.includes(s), error.message);
        assert.ok(!error.problems.join("\n").includes(s));
      }
      const loaded = loadConfig({
        WEBHOOK_SECRET: s,
        DATABASE_URL: `postgres://admin:${s}@db.internal/app`,
      });
      assert.ok(!loaded.warnings.join("\n").includes(s));
    }),
    { numRuns: 100 },
  );
});

Deno.test('loadConfig() expands the "tradingview" allowlist to its 4 published sender addresses', () => {
  assert.deepEqual(TRADINGVIEW_IPS, [
    "52.89.214.238",
    "34.212.75.30",
    "54.218.53.128",
    "52.32.178.7",
  ]);
  const tv = TRADINGVIEW_IPS.map((ip) => `${ip}/32`);
  assert.deepEqual(
    loadConfig({ WEBHOOK_IP_ALLOWLIST: "tradingview" }).config.webhook.ipAllowlist,
    tv,
  );
  assert.deepEqual(
    loadConfig({ WEBHOOK_IP_ALLOWLIST: " TradingView , 10.0.0.0/8,2001:db8::1 " }).config.webhook
      .ipAllowlist,
    [...tv, "10.0.0.0/8", "2001:db8::1"],
  );
  // An allowlist is an authentication method of its own: no "unauthenticated" warning.
  const { warnings } = loadConfig({ WEBHOOK_IP_ALLOWLIST: "tradingview" });
  assert.ok(!warnings.some((w) => w.startsWith("WEBHOOK_SECRET")), warnings.join("\n"));
});

Deno.test("loadConfig() warns that TradingView's shared senders alone let any TradingView user in", () => {
  const shared = (env: Record<string, string>) =>
    loadConfig(env).warnings.filter((w) => w.startsWith("WEBHOOK_IP_ALLOWLIST"));
  assert.equal(shared({ WEBHOOK_IP_ALLOWLIST: "tradingview" }).length, 1);
  assert.match(shared({ WEBHOOK_IP_ALLOWLIST: "tradingview" })[0], /every TradingView user/);
  assert.equal(shared({ WEBHOOK_IP_ALLOWLIST: "52.89.214.238" }).length, 1);
  // As a gate beside the secret (production), or with addresses of one's own, nothing to warn about.
  assert.deepEqual(
    loadConfig({ ...PRODUCTION, WEBHOOK_IP_ALLOWLIST: "tradingview" }).warnings.filter((w) =>
      w.startsWith("WEBHOOK_IP_ALLOWLIST")
    ),
    [],
  );
  assert.deepEqual(shared({ WEBHOOK_IP_ALLOWLIST: "10.0.0.0/8" }), []);
});

Deno.test("loadConfig() on Fly reads the client address from fly-client-ip", () => {
  assert.equal(
    loadConfig({ FLY_APP_NAME: "optionstrat" }).config.webhook.clientIpHeader,
    "fly-client-ip",
  );
  assert.equal(
    loadConfig({ FLY_APP_NAME: "optionstrat", CLIENT_IP_HEADER: "X-Real-IP" }).config.webhook
      .clientIpHeader,
    "x-real-ip",
  );
  assert.equal(
    loadConfig({ CLIENT_IP_HEADER: "Fly-Client-IP" }).config.webhook.clientIpHeader,
    "fly-client-ip",
  );
  assert.equal(loadConfig({ FLY_APP_NAME: "" }).config.webhook.clientIpHeader, null);
  assert.equal(loadConfig({ FLY_MACHINE_ID: "e784079b" }).config.instanceId, "e784079b");
  assert.equal(
    loadConfig({ FLY_MACHINE_ID: "e784079b", INSTANCE_ID: "worker-1" }).config.instanceId,
    "worker-1",
  );
});

Deno.test("CLIENT_IP_HEADER is taken exactly when a request's headers can be read by that name", () => {
  // The address is read on every request: a name Headers.get() refuses made each one, /health
  // and every alert included, a 500 on a service that had started without a word.
  const readable = (name: string) => {
    try {
      new Headers().get(name);
      return true;
    } catch {
      return false;
    }
  };
  const chars = [..."aZ09-_.!#$%&'*+^`|~ :;\"(),/<=>?@[\\]{}\té\u0000\u007f"];
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: 12 }),
      (s) => {
        let header: string | null;
        try {
          header = loadConfig({ CLIENT_IP_HEADER: s }).config.webhook.clientIpHeader;
        } catch (error) {
          assert.ok(error instanceof ConfigError);
          assert.ok(error.problems.some((p) => p.startsWith("CLIENT_IP_HEADER ")), error.message);
          assert.ok(!readable(s.trim()) && s.trim() !== "", JSON.stringify(s));
          return;
        }
        assert.ok(header === null ? s.trim() === "" : readable(header), JSON.stringify(s));
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("the guide's SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are named as not read", () => {
  // The guide lists them as required; set alone, they left the service on the embedded
  // database (or refused in production for want of DATABASE_URL) without a word about them.
  const guide = {
    SUPABASE_URL: "https://abcd.supabase.co",
    SUPABASE_SERVICE_ROLE_KEY: "eyJhb.x.y",
  };
  const note =
    /SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are not read: the database is DATABASE_URL/;
  const embedded = loadConfig(guide);
  assert.equal(embedded.config.databaseUrl, null);
  assert.ok(embedded.warnings.some((w) => /^Using the embedded PGlite/.test(w) && note.test(w)));
  const postgres = loadConfig({ ...guide, DATABASE_URL: PRODUCTION.DATABASE_URL }).warnings;
  assert.ok(postgres.some((w) => note.test(w)), postgres.join("\n"));
  const { DATABASE_URL: _, ...withoutUrl } = PRODUCTION;
  const refused = configError({ ...withoutUrl, SUPABASE_URL: guide.SUPABASE_URL });
  assert.ok(
    refused.problems.some((p) =>
      /^DATABASE_URL is required when NODE_ENV=production; SUPABASE_URL is not read/.test(p)
    ),
    refused.message,
  );
  // The key is a secret: never shown.
  assert.ok(!JSON.stringify([embedded.warnings, postgres, refused.message]).includes("eyJhb"));
  // Unset, nothing is said about them.
  assert.ok(!loadConfig({}).warnings.join("\n").includes("SUPABASE"));
});

Deno.test("loadConfig() takes a blank variable as unset and booleans in any case", () => {
  const { config } = loadConfig({
    PORT: "",
    DATA_DIR: "  ",
    FLIP: "TRUE",
    EXTENDED_HOURS: " Yes ",
  });
  assert.equal(config.port, 8080);
  assert.equal(config.dataDir, "./data");
  assert.equal(config.rules.flip, true);
  assert.equal(config.rules.marketHours.extendedHours, true);
});

Deno.test("loadConfig() lists every bad variable at once, the pipeline's too", () => {
  const error = configError({ PORT: "abc", MIN_CONFIDENCE: "2", WORKER_CONCURRENCY: "0" });
  assert.deepEqual(error.problems.map((p) => p.split(" ")[0]).sort(), [
    "MIN_CONFIDENCE",
    "PORT",
    "WORKER_CONCURRENCY",
  ]);
});

Deno.test("loadConfig() in production refuses the embedded database", () => {
  const { DATABASE_URL: _, ...withoutUrl } = PRODUCTION;
  const error = configError(withoutUrl);
  assert.ok(error.problems.some((p) => p.startsWith("DATABASE_URL is required")), error.message);
});

Deno.test("WORKER_ENABLED: on by default; off only beside DATABASE_URL, with a warning", () => {
  assert.equal(loadConfig({}).config.worker.enabled, true);
  assert.equal(loadConfig(PRODUCTION).config.worker.enabled, true);
  const off = loadConfig({ ...PRODUCTION, WORKER_ENABLED: "false" });
  assert.equal(off.config.worker.enabled, false);
  assert.ok(
    off.warnings.some((w) => w.startsWith("WORKER_ENABLED=false")),
    off.warnings.join("\n"),
  );
  assert.equal(loadConfig({ ...PRODUCTION, WORKER_ENABLED: " Off " }).config.worker.enabled, false);
  assert.equal(loadConfig({ ...PRODUCTION, WORKER_ENABLED: "1" }).config.worker.enabled, true);
  // The embedded database has one process: nobody else could decide its signals.
  const embedded = configError({ WORKER_ENABLED: "false" });
  assert.ok(
    embedded.problems.some((p) => p.startsWith("WORKER_ENABLED=false needs DATABASE_URL")),
    embedded.message,
  );
  const bad = configError({ ...PRODUCTION, WORKER_ENABLED: "sometimes" });
  assert.deepEqual(bad.problems, ['WORKER_ENABLED must be true or false (got "sometimes")']);
});

Deno.test("INSTANCE_ID: ASCII and short enough that its sessions' name keeps the per-process suffix", () => {
  for (const bad of ["zürich-1", "a b", "x".repeat(33), "ab/cd", "a:b"]) {
    const error = configError({ INSTANCE_ID: bad });
    assert.match(error.message, /INSTANCE_ID must be 1 to 32 ASCII letters/, bad);
  }
  const longest = "machine-01.iad_" + "x".repeat(17);
  assert.equal(longest.length, 32);
  const { config } = loadConfig({ INSTANCE_ID: longest });
  assert.equal(config.instanceId, longest);
  const workerId = newWorkerId(config);
  // The whole worker id survives: two processes of one instance never share a name.
  assert.equal(connectionName(workerId), `optionstrat-backend/${workerId}`);
  assert.ok(new TextEncoder().encode(connectionName(workerId)).length <= 63);
  assert.equal(
    loadConfig({ FLY_MACHINE_ID: "e784079b449483" }).config.instanceId,
    "e784079b449483",
  );
});

Deno.test("DATABASE_URL: a password that would end the URL early is refused, never quoted", () => {
  // What an operator pastes from a password manager: any printable ASCII, bare or encoded.
  const password = fc.stringMatching(/^[ -~]{4,16}$/).map((s) => `Zq${s}`);
  fc.assert(
    fc.property(password, (p) => {
      const bare = `postgres://app:${p}@db.internal:5432/optionstrat`;
      let config;
      try {
        config = loadConfig({ DATABASE_URL: bare }).config;
      } catch (error) {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /^ {2}DATABASE_URL /m);
        assert.ok(!error.message.includes(p), error.message);
        return;
      }
      // Accepted: start-up can name the database (no uncaught TypeError quoting the URL).
      assert.equal(describeDatabase(config), "postgres at db.internal:5432/optionstrat");
      assert.equal(decodeURIComponent(new URL(bare).password), decodeURIComponent(p));
    }),
    { numRuns: 300 },
  );
  // The encoded form of any password is always accepted, and decodes back to it.
  fc.assert(
    fc.property(password, (p) => {
      const url = `postgres://app:${encodeURIComponent(p)}@db.internal:5432/optionstrat`;
      const { config } = loadConfig({ DATABASE_URL: url });
      assert.equal(decodeURIComponent(new URL(config.databaseUrl!).password), p);
    }),
    { numRuns: 100 },
  );
  for (const p of ["pa#ss", "pa/ss", "pa?ss", "100%sure"]) {
    const error = configError({ DATABASE_URL: `postgres://app:${p}@db.internal/optionstrat` });
    assert.ok(!error.message.includes(p), error.message);
  }
  // A bare "@" is read as the password's own (the last "@" ends it), as the driver does.
  assert.equal(
    describeDatabase(loadConfig({ DATABASE_URL: "postgres://app:p@ss@db.internal/x" }).config),
    "postgres at db.internal/x",
  );
});

Deno.test("CONTEXT_URL and GEX_URL must say where the ticker goes, or every symbol gets one answer", () => {
  const path = fc.stringMatching(/^[a-z0-9/_.{}-]{0,24}$/);
  fc.assert(
    fc.property(fc.constantFrom("CONTEXT_URL", "GEX_URL"), path, path, (name, a, b) => {
      for (
        const template of [`https://feed.example/${a}${b}`, `https://feed.example/${a}{symbol}${b}`]
      ) {
        const named = template.includes("{symbol}");
        try {
          const { providers } = loadConfig({ [name]: template }).config;
          assert.ok(named, `${template} accepted`);
          assert.equal(name === "CONTEXT_URL" ? providers.contextUrl : providers.gexUrl, template);
        } catch (error) {
          assert.ok(error instanceof ConfigError, String(error));
          assert.ok(!named || /[{}]/.test(`${a}${b}`), `${template}: ${error.message}`);
          assert.match(
            error.message,
            new RegExp(`${name} must be an http\\(s\\) URL, with {symbol}`),
          );
        }
      }
    }),
    { numRuns: 200 },
  );
  assert.match(
    configError({ CONTEXT_URL: "https://feed.example/context/{SYMBOL}" }).message,
    /CONTEXT_URL/,
  );
});

Deno.test("VIX levels out of order are refused naming both variables, whichever was set", () => {
  const level = fc.integer({ min: 0, max: 100 }).map(String);
  fc.assert(
    fc.property(fc.option(level), fc.option(level), (caution, noTrade) => {
      const env: Record<string, string> = {};
      if (caution !== null) env.VIX_CAUTION_LEVEL = caution;
      if (noTrade !== null) env.VIX_NO_TRADE_LEVEL = noTrade;
      const [c, n] = [Number(caution ?? 20), Number(noTrade ?? 30)];
      if (c <= n) {
        assert.deepEqual(loadConfig(env).config.rules.vix.noTradeLevel, n);
        return;
      }
      const message = configError(env).message;
      // "VIX_CAUTION_LEVEL cautionLevel must not be above noTradeLevel" told someone who had set
      // only VIX_NO_TRADE_LEVEL=5 of a variable they never set, in the code's own names.
      assert.match(message, /VIX_CAUTION_LEVEL must not be above VIX_NO_TRADE_LEVEL/, message);
    }),
    { numRuns: 200 },
  );
});

Deno.test("GEX_SYMBOLS: tickers as a signal names them, or refused naming the entry", () => {
  const entry = fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9]{1,6}$/),
    fc.stringMatching(/^[A-Za-z]{2,6}:[A-Za-z]{1,5}$/),
    fc.string({ maxLength: 10 }),
  );
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 5 }), (entries) => {
      const value = entries.join(",");
      let symbols: string[];
      try {
        symbols = loadConfig({ GEX_SYMBOLS: value }).config.providers.gexSymbols;
      } catch (error) {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /GEX_SYMBOLS has ".*", which is not a ticker/s);
        return;
      }
      // Each one a symbol a signal can carry: fetched on schedule, and the one signals ask for.
      for (const s of symbols) assert.match(s, /^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/, value);
      assert.equal(new Set(symbols).size, symbols.length);
    }),
    { numRuns: 300 },
  );
  assert.deepEqual(
    loadConfig({ GEX_SYMBOLS: " spy, AMEX:SPY ,qqq,, " }).config.providers.gexSymbols,
    ["SPY", "QQQ"],
  );
  assert.match(configError({ GEX_SYMBOLS: "SPY QQQ" }).message, /GEX_SYMBOLS has "SPY QQQ"/);
});

Deno.test("entry windows that cover the whole session are a kill switch, and start-up says so", () => {
  fc.assert(
    fc.property(fc.nat(390), fc.nat(390), fc.boolean(), fc.boolean(), (a, b, extended, off) => {
      const { warnings } = loadConfig({
        ...PRODUCTION,
        NO_ENTRY_MINUTES_AFTER_OPEN: String(a),
        NO_ENTRY_MINUTES_BEFORE_CLOSE: String(b),
        EXTENDED_HOURS: String(extended),
        ...(off ? { ENFORCE_MARKET_HOURS: "false" } : {}),
      });
      const said = warnings.filter((w) => w.startsWith("NO_ENTRY_MINUTES_AFTER_OPEN"));
      // An entry passes between open + a and close - b of the 09:30-16:00 session (entry_checks.ts).
      // Market hours not enforced: no window applies (core/decide.ts).
      assert.equal(said.length, !off && a + b >= 390 ? 1 : 0, `${a} + ${b}: ${warnings}`);
      if (said.length === 1) {
        assert.match(
          said[0],
          extended ? /entries only before the open and after the close/ : /no entry will ever/,
        );
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("start-up warns when fetched GEX would go stale before the next fetch, and only then", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 10, max: 86_400 }),
      fc.integer({ min: 1, max: 7 * 86_400 }),
      fc.boolean(),
      (refresh, maxAge, fetched) => {
        const { warnings } = loadConfig({
          GEX_REFRESH_SECONDS: String(refresh),
          GEX_MAX_AGE_SECONDS: String(maxAge),
          ...(fetched ? { GEX_URL: "https://cdn.cboe.com/api/{symbol}.json" } : {}),
        });
        const warned = warnings.some((w) => w.startsWith("GEX_REFRESH_SECONDS"));
        assert.equal(warned, fetched && refresh >= maxAge, warnings.join("\n"));
      },
    ),
    { numRuns: 300 },
  );
  // The defaults (300 s against an hour) say nothing.
  const { warnings } = loadConfig({ GEX_URL: "https://cdn.cboe.com/api/{symbol}.json" });
  assert.ok(!warnings.some((w) => w.includes("GEX_REFRESH_SECONDS")));
});
