/**
 * Configuration: every setting from the environment, validated once at
 * start-up. `loadConfig(env)` is pure (the caller passes `Deno.env.toObject()`),
 * returns the typed config plus warnings, or throws `ConfigError` naming each
 * bad variable. Defaults follow the deployment guide
 * (`cache.contextTTLSeconds: 60`, `cache.deduplicationTTLSeconds: 60`).
 */
import { z } from "zod";
import { ipInCidrs, parseCidrs } from "./net.ts";
import {
  pipelineConfigFromEnv,
  type ProvidersConfig,
  type WorkerConfig,
} from "./pipeline_config.ts";
import type { Rules } from "./rules.ts";

export type AppEnv = "development" | "production" | "test";
export type LogLevel = "debug" | "info" | "warning" | "error";

export interface Config {
  env: AppEnv;
  port: number;
  /** Postgres server; null means the embedded PGlite database under `dataDir`. */
  databaseUrl: string | null;
  dataDir: string;
  databasePoolSize: number;
  /**
   * The operator reads' own pool (read API, /metrics, /events), so that slow or
   * stuck reads never hold the connections webhooks commit through (Postgres only).
   */
  reads: { poolSize: number; queryTimeoutMs: number };
  /** How long start-up keeps trying to reach and migrate the database before it exits 1. */
  databaseStartupTimeoutSeconds: number;
  /** Name of this instance in job claims and logs (Fly sets FLY_MACHINE_ID). */
  instanceId: string;
  logLevel: LogLevel;
  operatorToken: string | null;
  cache: {
    contextTTLSeconds: number;
    deduplicationTTLSeconds: number;
  };
  webhook: {
    secret: string | null;
    /** The secret being rotated out, still accepted (logged when used). */
    previousSecret: string | null;
    maxBodyBytes: number;
    /** Longest a webhook's body may take to arrive before 408 (TradingView sends it at once). */
    bodyTimeoutMs: number;
    signatureToleranceSeconds: number;
    /** Longest a webhook waits for its commit before answering 503 (inside TradingView's 3 s). */
    ingestDeadlineMs: number;
    /** CIDRs allowed to post; null when the allowlist is off. */
    ipAllowlist: string[] | null;
    /**
     * The allowlist is a gate every request must pass (true whenever a secret
     * is set); without a secret a listed address alone is let in.
     */
    ipAllowlistRequired: boolean;
    /** Header carrying the client address (Fly: fly-client-ip); null to use the socket address. */
    clientIpHeader: string | null;
    rateLimitPerMinute: number;
  };
  rules: Rules;
  worker: WorkerConfig;
  providers: ProvidersConfig;
}

/** TradingView's published webhook sender addresses. */
export const TRADINGVIEW_IPS = ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

export interface LoadedConfig {
  config: Config;
  warnings: string[];
}

const int = (min: number, max: number) =>
  z.string().regex(/^\d+$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be a whole number from ${min} to ${max}`);

/** An HTTP header name (RFC 9110 token): exactly what `Headers.get()` accepts. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** RFC 3986's unreserved characters: what a URL path carries unchanged. */
const URL_SAFE_SECRET = /^[A-Za-z0-9._~-]+$/;

const optionalText = z.string().transform((v) => v.trim()).transform((v) => v === "" ? null : v);

const POSTGRES_SCHEME = /^postgres(ql)?:\/\//;
const NOT_POSTGRES = "must be a postgres:// or postgresql:// URL";
// Never quoting the URL: its password would go with it.
const UNREADABLE_URL = "is not a URL the driver can read: percent-encode / ? # and % in the " +
  'user name and password ("/" as %2F, "#" as %23, "%" as %25); one host only';

/**
 * What is wrong with `url` as a DATABASE_URL, never quoting it, or null: for
 * the tools that take one beside the service (`deno task bench`, `bench:ladder`).
 */
export function databaseUrlProblem(url: string): string | null {
  if (!POSTGRES_SCHEME.test(url)) return `DATABASE_URL ${NOT_POSTGRES}`;
  return readableUrl(url) ? null : `DATABASE_URL ${UNREADABLE_URL}`;
}

const EnvSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"], {
    error: "must be development, production or test",
  }).default("development"),
  PORT: int(1, 65535).default(8080),
  DATABASE_URL: optionalText.refine(
    (v) => v === null || POSTGRES_SCHEME.test(v),
    NOT_POSTGRES,
  ).refine(
    (v) => v === null || !POSTGRES_SCHEME.test(v) || readableUrl(v),
    UNREADABLE_URL,
  ).default(null),
  DATA_DIR: z.string().min(1, "must not be empty").default("./data"),
  DATABASE_POOL_SIZE: int(1, 100).default(10),
  DATABASE_READ_POOL_SIZE: int(1, 100).default(3),
  READ_QUERY_TIMEOUT_MS: int(100, 600_000).default(10_000),
  DATABASE_STARTUP_TIMEOUT_SECONDS: int(0, 3600).default(300),
  // It names this instance's database sessions, by which the others tell it is
  // alive (db/jobs.ts connectionName): Postgres mangles non-ASCII there and keeps
  // 63 bytes, of which the prefix and the per-process suffix take 29.
  INSTANCE_ID: optionalText.refine(
    (v) => v === null || /^[A-Za-z0-9._-]{1,32}$/.test(v),
    "must be 1 to 32 ASCII letters, digits, dots, dashes or underscores",
  ).default(null),
  FLY_MACHINE_ID: optionalText.default(null),
  FLY_APP_NAME: optionalText.default(null),
  LOG_LEVEL: z.enum(["debug", "info", "warning", "error"], {
    error: "must be debug, info, warning or error",
  }).default("info"),
  // Hono's bearerAuth takes only RFC 6750's token68 in the header: with any other character
  // every request would be refused 400 and nobody could sign in.
  OPERATOR_TOKEN: optionalText.refine(
    (v) => v === null || /^[A-Za-z0-9._~+/-]+=*$/.test(v),
    "may contain only A-Z a-z 0-9 . _ ~ + / - (and = at the end): an Authorization: Bearer " +
      "header carries nothing else (openssl rand -hex 32 makes one)",
  ).default(null),
  CONTEXT_TTL_SECONDS: int(1, 86_400).default(60),
  DEDUP_TTL_SECONDS: int(1, 7 * 86_400).default(60),
  WEBHOOK_SECRET: optionalText.default(null),
  WEBHOOK_SECRET_PREVIOUS: optionalText.default(null),
  WEBHOOK_MAX_BODY_BYTES: int(256, 10 * 1024 * 1024).default(64 * 1024),
  WEBHOOK_BODY_TIMEOUT_MS: int(100, 60_000).default(10_000),
  SIGNATURE_TOLERANCE_SECONDS: int(1, 3600).default(300),
  INGEST_DEADLINE_MS: int(100, 2900).default(2000),
  WEBHOOK_IP_ALLOWLIST: optionalText.default(null),
  // Read on every request: a name no header can have (a space, a colon) made Headers.get
  // throw there, and every request, /health included, answered 500.
  CLIENT_IP_HEADER: optionalText.refine(
    (v) => v === null || HEADER_NAME.test(v),
    "must be an HTTP header name such as fly-client-ip (letters, digits and !#$%&'*+.^_`|~-)",
  ).default(null),
  RATE_LIMIT_PER_MINUTE: int(1, 10_000_000).default(1200),
  // The deployment guide's database settings, read only to say they are not used: set on
  // their own they left the service on the embedded database without a word about them.
  SUPABASE_URL: optionalText.default(null),
  SUPABASE_SERVICE_ROLE_KEY: optionalText.default(null),
});

/**
 * The name of every variable `loadConfig()` reads, found by letting the
 * pipeline's reader run on an environment that records each name asked for
 * (its variables are read one by one, not listed). The README's
 * Configuration table lists exactly these, bar the two Fly sets itself
 * (tests/readme_test.ts).
 */
export function configVariables(): string[] {
  const read = new Set<string>(Object.keys(EnvSchema.shape));
  const recording = new Proxy({} as Record<string, string>, {
    get(_, name) {
      if (typeof name === "string") read.add(name);
      return undefined;
    },
  });
  pipelineConfigFromEnv(recording);
  return [...read].sort();
}

/**
 * Whether `url` reads as the operator meant it. A bare "#", "/" or "?" in the
 * password ends the host part early: the URL is then invalid (and Deno's
 * error quotes it whole, password included) or names another host, with the
 * rest of the password in its path; a bare "%" makes percent-decoding throw.
 */
function readableUrl(url: string): boolean {
  try {
    const parsed = new URL(url);
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
    return !`${parsed.pathname}${parsed.search}${parsed.hash}`.includes("@");
  } catch {
    return false;
  }
}

/** Reads and checks the environment. Throws `ConfigError` listing every bad variable. */
export function loadConfig(raw: Record<string, string | undefined>): LoadedConfig {
  // Values trimmed, and a blank one means "not set" (`KEY=` in a .env file or `-e KEY=`).
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value !== undefined && value.trim() !== "") env[name] = value.trim();
  }
  const parsed = EnvSchema.safeParse(env);
  const pipeline = pipelineConfigFromEnv(env);
  if (!parsed.success) {
    // Every problem at once, the pipeline's too, so one restart fixes them all.
    throw new ConfigError([
      ...parsed.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? "environment");
        const value = env[name];
        const shown = value === undefined || /SECRET|TOKEN|PASSWORD|URL/.test(name)
          ? ""
          : ` (got "${value.slice(0, 60)}")`;
        return `${name} ${issue.message}${shown}`;
      }),
      ...pipeline.problems,
    ]);
  }
  const e = parsed.data;
  const supabase = supabaseNote(e);
  const problems: string[] = [];
  const warnings: string[] = [];

  if (e.NODE_ENV === "production") {
    if (e.WEBHOOK_SECRET === null) {
      problems.push("WEBHOOK_SECRET is required when NODE_ENV=production");
    } else if (e.WEBHOOK_SECRET.length < 16) {
      problems.push("WEBHOOK_SECRET must be at least 16 characters when NODE_ENV=production");
    }
    if (e.WEBHOOK_SECRET_PREVIOUS !== null && e.WEBHOOK_SECRET_PREVIOUS.length < 16) {
      problems.push(
        "WEBHOOK_SECRET_PREVIOUS must be at least 16 characters when NODE_ENV=production",
      );
    }
    if (e.DATABASE_URL === null) {
      // The embedded database would live on one machine's disk, lost on redeploy.
      problems.push(
        ["DATABASE_URL is required when NODE_ENV=production", supabase]
          .filter((part) => part !== "").join("; "),
      );
    }
    if (e.OPERATOR_TOKEN === null) {
      problems.push("OPERATOR_TOKEN is required when NODE_ENV=production");
    } else if (e.OPERATOR_TOKEN.length < 16) {
      problems.push("OPERATOR_TOKEN must be at least 16 characters when NODE_ENV=production");
    }
  }

  if (e.WEBHOOK_SECRET_PREVIOUS !== null && e.WEBHOOK_SECRET === null) {
    problems.push("WEBHOOK_SECRET_PREVIOUS needs WEBHOOK_SECRET: it is the secret being replaced");
  }
  problems.push(...pipeline.problems);
  if (!pipeline.config.worker.enabled && e.DATABASE_URL === null) {
    // No other process can open the embedded database: its signals would never be decided.
    problems.push(
      "WORKER_ENABLED=false needs DATABASE_URL: on the embedded database no other instance " +
        "can decide this one's signals",
    );
  }

  const ipAllowlist = e.WEBHOOK_IP_ALLOWLIST === null
    ? null
    : parseAllowlist(e.WEBHOOK_IP_ALLOWLIST);
  if (typeof ipAllowlist === "string") problems.push(`WEBHOOK_IP_ALLOWLIST ${ipAllowlist}`);
  if (problems.length > 0) throw new ConfigError(problems);

  if (e.WEBHOOK_SECRET === null && ipAllowlist === null) {
    warnings.push(
      "WEBHOOK_SECRET is not set: webhooks are NOT authenticated and anyone who finds the URL " +
        "can post signals. Set WEBHOOK_SECRET before pointing TradingView at this service.",
    );
  }
  const secrets = [["WEBHOOK_SECRET", e.WEBHOOK_SECRET], [
    "WEBHOOK_SECRET_PREVIOUS",
    e.WEBHOOK_SECRET_PREVIOUS,
  ]];
  for (const [name, secret] of secrets) {
    // Typed raw into a URL, "/" splits the path (a 404 no one sees) and "?" "#" "%" cut or
    // change it; in the message's JSON a raw `"` or `\` breaks the body (400).
    if (secret !== null && !URL_SAFE_SECRET.test(secret)) {
      warnings.push(
        `${name} has characters other than letters, digits and . _ ~ -: in the URL-token form ` +
          'they must be percent-encoded (/ as %2F, % as %25), and in the message\'s "secret" a ' +
          '" or \\ must be escaped. A secret from `openssl rand -hex 32` needs neither.',
      );
    }
  }
  const cidrs = Array.isArray(ipAllowlist) ? parseCidrs(ipAllowlist) : null;
  const tradingViewListed = Array.isArray(cidrs) &&
    TRADINGVIEW_IPS.some((ip) => ipInCidrs(ip, cidrs));
  if (tradingViewListed && e.WEBHOOK_SECRET === null) {
    warnings.push(
      "WEBHOOK_IP_ALLOWLIST lists TradingView's senders, which every TradingView user shares, " +
        "and WEBHOOK_SECRET is not set: anyone with a TradingView account can post signals. " +
        "Set WEBHOOK_SECRET; the list then works as a gate beside it.",
    );
  }
  warnings.push(...pipeline.warnings);
  if (!pipeline.config.worker.enabled) {
    warnings.push(
      "WORKER_ENABLED=false: this instance acknowledges webhooks but decides nothing. Another " +
        "instance on the same DATABASE_URL must run with the worker on; /health shows the backlog.",
    );
  }
  if (e.OPERATOR_TOKEN === null) {
    warnings.push("OPERATOR_TOKEN is not set: the dashboard and read API are open to anyone.");
  }
  if (e.DATABASE_URL === null) {
    warnings.push(
      `Using the embedded PGlite database under ${e.DATA_DIR}: it does not fsync, so a commit ` +
        `survives a killed process but not a power loss. Set DATABASE_URL for production. ${supabase}`
          .trimEnd(),
    );
  } else if (supabase !== "") {
    warnings.push(supabase);
  }

  return {
    warnings,
    config: {
      env: e.NODE_ENV,
      port: e.PORT,
      databaseUrl: e.DATABASE_URL,
      dataDir: e.DATA_DIR,
      databasePoolSize: e.DATABASE_POOL_SIZE,
      reads: { poolSize: e.DATABASE_READ_POOL_SIZE, queryTimeoutMs: e.READ_QUERY_TIMEOUT_MS },
      databaseStartupTimeoutSeconds: e.DATABASE_STARTUP_TIMEOUT_SECONDS,
      instanceId: e.INSTANCE_ID ?? e.FLY_MACHINE_ID ?? "local",
      logLevel: e.LOG_LEVEL,
      operatorToken: e.OPERATOR_TOKEN,
      cache: {
        contextTTLSeconds: e.CONTEXT_TTL_SECONDS,
        deduplicationTTLSeconds: e.DEDUP_TTL_SECONDS,
      },
      webhook: {
        secret: e.WEBHOOK_SECRET,
        previousSecret: e.WEBHOOK_SECRET_PREVIOUS,
        maxBodyBytes: e.WEBHOOK_MAX_BODY_BYTES,
        bodyTimeoutMs: e.WEBHOOK_BODY_TIMEOUT_MS,
        signatureToleranceSeconds: e.SIGNATURE_TOLERANCE_SECONDS,
        ingestDeadlineMs: e.INGEST_DEADLINE_MS,
        ipAllowlist: ipAllowlist as string[] | null,
        // TradingView's senders are shared by all its users: with a secret
        // set, a listed address is a condition, never a credential.
        ipAllowlistRequired: ipAllowlist !== null && e.WEBHOOK_SECRET !== null,
        // Behind Fly's proxy the socket address is the proxy; Fly-Client-IP is
        // set by Fly and cannot be forged by the client (X-Forwarded-For can).
        clientIpHeader: e.CLIENT_IP_HEADER?.toLowerCase() ??
          (e.FLY_APP_NAME !== null ? "fly-client-ip" : null),
        rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
      },
      ...pipeline.config,
    },
  };
}

/**
 * "SUPABASE_URL is not read: ..." when the guide's Supabase variables are set, else "". The
 * service speaks SQL to Postgres itself, through DATABASE_URL (a Supabase project's too).
 */
function supabaseNote(
  e: { SUPABASE_URL: string | null; SUPABASE_SERVICE_ROLE_KEY: string | null },
): string {
  const set = (["SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"] as const).filter((n) => e[n] !== null);
  if (set.length === 0) return "";
  return `${set.join(" and ")} ${set.length === 1 ? "is" : "are"} not read: the database is ` +
    "DATABASE_URL, a postgres:// URL (for Supabase, the project's direct or session-pooler " +
    "connection string).";
}

/** "tradingview" expands to TradingView's senders; other entries are IPs or CIDRs. */
function parseAllowlist(value: string): string[] | string {
  const entries = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const out: string[] = [];
  for (const entry of entries) {
    if (entry.toLowerCase() === "tradingview") {
      out.push(...TRADINGVIEW_IPS.map((ip) => `${ip}/32`));
    } else if (!("invalid" in parseCidrs([entry]))) {
      out.push(entry);
    } else {
      return `has "${entry.slice(0, 60)}", which is neither "tradingview" nor an IP or CIDR`;
    }
  }
  if (out.length === 0) return "is empty";
  return out;
}
