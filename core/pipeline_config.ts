/**
 * Pipeline settings from the environment: the decision rules (each rule has
 * one variable, defaults in `DEFAULT_RULES`), the worker and the market data
 * providers. Pure; `loadConfig()` calls it and reports problems by variable.
 */
import { DEFAULT_RULES, type Rules, RulesSchema } from "./rules.ts";
import { tickerOf } from "./signal.ts";

export interface WorkerConfig {
  /**
   * Whether this instance decides signals. Off, it only acknowledges webhooks
   * and another instance on the same Postgres decides them (its own machine,
   * so decisions never share the webhooks' CPU).
   */
  enabled: boolean;
  /** Batches decided at once per instance (their writes queue on the book's version row). */
  concurrency: number;
  /** Most jobs claimed at once and decided in one write (per symbol in order). */
  batchSize: number;
  /** Attempts before a job is marked failed. */
  maxAttempts: number;
  /** A running job not finished after this long belongs to a dead instance and is reclaimed. */
  claimTimeoutSeconds: number;
  /** Fallback poll when no NOTIFY arrives. */
  pollMs: number;
  /**
   * Longest a claim waits for this instance's webhook commits to go quiet:
   * acknowledgements first (TradingView gives up after 3 s), decisions in
   * the gaps, but at least one claim this often while webhooks never stop.
   * 0 = never wait.
   */
  maxDeferMs: number;
  /**
   * Opt-in: once decisions run this far behind their signals (the oldest job
   * of the last batch, receipt to claim), claims wait only for webhooks
   * queued behind the commits in flight, not for those being written, until
   * they catch up, so sustained load cannot push decisions further and
   * further back. It costs webhook throughput at saturation (the
   * decisions take their share), so it is off by default. 0 = off.
   */
  maxLagMs: number;
  /** How often expired dedup keys and old events are deleted (and PGlite vacuumed). */
  maintenanceSeconds: number;
  /** Live events older than this are deleted (a reconnecting client can catch up this far). */
  eventsRetentionDays: number;
  /**
   * Refused and duplicate webhooks (processing_errors of the ingest stage) older
   * than this are deleted: anyone can send refusals, so they must not grow forever.
   */
  refusalsRetentionDays: number;
}

export interface ProvidersConfig {
  /** URL template for market context, `{symbol}` substituted; null = pushed only. */
  contextUrl: string | null;
  /** Context older than this counts as missing (degraded). */
  contextMaxAgeSeconds: number;
  /** URL template for a Cboe delayed-quotes chain, `{symbol}` substituted; null = pushed only. */
  gexUrl: string | null;
  /** GEX older than this counts as missing (degraded). */
  gexMaxAgeSeconds: number;
  /** How often the fetched chains are refreshed. */
  gexRefreshSeconds: number;
  /** Symbols whose chains are fetched on a schedule (besides those seen in signals). */
  gexSymbols: string[];
  /** Time limit for a context request (on a decision's path). */
  timeoutMs: number;
  /** Time limit for a chain fetch (in the background; a full chain is megabytes). */
  gexTimeoutMs: number;
}

/** PROVIDER_TIMEOUT_MS's ceiling; tests/shutdown_test.ts keeps it below the shutdown deadline. */
export const PROVIDER_TIMEOUT_MAX_MS = 10_000;

export interface PipelineConfig {
  rules: Rules;
  worker: WorkerConfig;
  providers: ProvidersConfig;
}

type Parse = (raw: string) => unknown;
const number: Parse = (raw) => /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
const boolean: Parse = (raw) => {
  const v = raw.toLowerCase();
  return ["true", "1", "yes", "on"].includes(v)
    ? true
    : ["false", "0", "no", "off"].includes(v)
    ? false
    : raw;
};
const list: Parse = (raw) => raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
const nullableNumber: Parse = (raw) => raw.toLowerCase() === "none" ? null : number(raw);
const upper: Parse = (raw) => raw.toUpperCase();

/** Each rule's variable, where it goes in `Rules`, and how to read it. */
export const RULE_VARIABLES: readonly { name: string; path: string[]; parse: Parse }[] = [
  { name: "MIN_CONFIDENCE", path: ["minConfidence"], parse: number },
  { name: "DEFAULT_CONFIDENCE", path: ["confidenceWhenMissing"], parse: nullableNumber },
  { name: "SIZE_BY_CONFIDENCE", path: ["sizeByConfidence"], parse: boolean },
  { name: "MIN_SCORE", path: ["minScore"], parse: number },
  { name: "MAX_SIGNAL_AGE_SECONDS", path: ["maxSignalAgeSeconds"], parse: number },
  { name: "MAX_FUTURE_SKEW_SECONDS", path: ["maxFutureSkewSeconds"], parse: number },
  { name: "MAX_PRICE_DEVIATION_PCT", path: ["maxPriceDeviationPct"], parse: number },
  { name: "ENFORCE_MARKET_HOURS", path: ["marketHours", "enforce"], parse: boolean },
  { name: "EXTENDED_HOURS", path: ["marketHours", "extendedHours"], parse: boolean },
  { name: "EXTRA_CLOSED_DATES", path: ["marketHours", "extraClosedDates"], parse: list },
  {
    name: "NO_ENTRY_MINUTES_AFTER_OPEN",
    path: ["marketHours", "noEntryMinutesAfterOpen"],
    parse: number,
  },
  {
    name: "NO_ENTRY_MINUTES_BEFORE_CLOSE",
    path: ["marketHours", "noEntryMinutesBeforeClose"],
    parse: number,
  },
  {
    name: "EXIT_MINUTES_AFTER_CLOSE",
    path: ["marketHours", "exitMinutesAfterClose"],
    parse: number,
  },
  { name: "MAX_OPEN_POSITIONS", path: ["maxOpenPositions"], parse: number },
  { name: "MAX_EXPOSURE", path: ["maxExposure"], parse: number },
  { name: "BASE_NOTIONAL", path: ["baseNotional"], parse: number },
  { name: "FLIP", path: ["flip"], parse: boolean },
  { name: "GEX_WALL_PROXIMITY_PCT", path: ["gex", "wallProximityPct"], parse: number },
  {
    name: "GEX_NEGATIVE_REGIME_MULTIPLIER",
    path: ["gex", "negativeRegimeMultiplier"],
    parse: number,
  },
  { name: "VIX_CAUTION_LEVEL", path: ["vix", "cautionLevel"], parse: number },
  { name: "VIX_CAUTION_MULTIPLIER", path: ["vix", "cautionMultiplier"], parse: number },
  { name: "VIX_NO_TRADE_LEVEL", path: ["vix", "noTradeLevel"], parse: number },
  { name: "DEGRADED_POLICY", path: ["degraded", "policy"], parse: upper },
  { name: "DEGRADED_MULTIPLIER", path: ["degraded", "multiplier"], parse: number },
];

export function pipelineConfigFromEnv(
  env: Record<string, string | undefined>,
): { config: PipelineConfig; problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const rules = structuredClone(DEFAULT_RULES) as unknown as Record<string, unknown>;
  for (const v of RULE_VARIABLES) {
    const raw = env[v.name]?.trim();
    if (raw === undefined || raw === "") continue;
    let target = rules;
    for (const key of v.path.slice(0, -1)) target = target[key] as Record<string, unknown>;
    target[v.path.at(-1)!] = v.parse(raw);
  }
  const checked = RulesSchema.safeParse(rules);
  if (!checked.success) {
    for (const issue of checked.error.issues) {
      const path = issue.path.map(String);
      const variable = RULE_VARIABLES.find((v) =>
        v.path.length <= path.length && v.path.every((p, i) => p === path[i])
      );
      const name = variable?.name ?? `rule ${path.join(".")}`;
      const got = variable && env[variable.name] !== undefined
        ? ` (got "${env[variable.name]!.slice(0, 60)}")`
        : "";
      problems.push(`${name} ${issue.message.replace(/^Invalid input: /, "")}${got}`);
    }
  }

  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(
        `${name} must be a whole number from ${min} to ${max} (got "${raw.slice(0, 60)}")`,
      );
      return fallback;
    }
    return n;
  };
  const flag = (name: string, fallback: boolean): boolean => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") return fallback;
    const parsed = boolean(raw);
    if (typeof parsed === "boolean") return parsed;
    problems.push(`${name} must be true or false (got "${raw.slice(0, 60)}")`);
    return fallback;
  };
  const url = (name: string): string | null => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") return null;
    try {
      const parsed = new URL(raw.replaceAll("{symbol}", "SPY"));
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error();
      // Without it every symbol is asked the same URL, and an answer that names no symbol
      // is stored as each one's (QQQ's spot would be SPY's: closes priced at it).
      if (!raw.includes("{symbol}")) throw new Error();
      return raw;
    } catch {
      problems.push(`${name} must be an http(s) URL, with {symbol} where the ticker goes`);
      return null;
    }
  };

  // As a signal's symbol reads (tickerOf): "AMEX:SPY" is SPY. Anything else was fetched
  // as is on every refresh and failed ("SPY QQQ", space-separated, is one "symbol").
  const tickers = (name: string): string[] => {
    const out: string[] = [];
    for (const entry of (env[name] ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
      const symbol = tickerOf(entry);
      if (symbol === null) {
        problems.push(
          `${name} has "${entry.slice(0, 40)}", which is not a ticker (separate them with commas)`,
        );
      } else if (!out.includes(symbol)) out.push(symbol);
    }
    return out;
  };

  const config: PipelineConfig = {
    rules: checked.success ? checked.data : DEFAULT_RULES,
    worker: {
      enabled: flag("WORKER_ENABLED", true),
      concurrency: int("WORKER_CONCURRENCY", 1, 1, 64),
      batchSize: int("WORKER_BATCH_SIZE", 100, 1, 1000),
      maxAttempts: int("JOB_MAX_ATTEMPTS", 5, 1, 100),
      claimTimeoutSeconds: int("JOB_CLAIM_TIMEOUT_SECONDS", 60, 5, 3600),
      pollMs: int("WORKER_POLL_MS", 500, 10, 60_000),
      maxDeferMs: int("WORKER_MAX_DEFER_MS", 100, 0, 5_000),
      maxLagMs: int("WORKER_MAX_LAG_MS", 0, 0, 600_000),
      maintenanceSeconds: int("MAINTENANCE_INTERVAL_SECONDS", 300, 10, 86_400),
      eventsRetentionDays: int("EVENTS_RETENTION_DAYS", 7, 1, 3650),
      refusalsRetentionDays: int("REFUSALS_RETENTION_DAYS", 30, 1, 3650),
    },
    providers: {
      contextUrl: url("CONTEXT_URL"),
      contextMaxAgeSeconds: int("CONTEXT_MAX_AGE_SECONDS", 900, 1, 7 * 86_400),
      gexUrl: url("GEX_URL"),
      gexMaxAgeSeconds: int("GEX_MAX_AGE_SECONDS", 3600, 1, 7 * 86_400),
      gexRefreshSeconds: int("GEX_REFRESH_SECONDS", 300, 10, 86_400),
      gexSymbols: tickers("GEX_SYMBOLS"),
      // A decision waits for its context lookup: at most half of main.ts's
      // SHUTDOWN_DEADLINE_MS (20 s), so one round of them cannot outlast a stop.
      timeoutMs: int("PROVIDER_TIMEOUT_MS", 2000, 100, PROVIDER_TIMEOUT_MAX_MS),
      gexTimeoutMs: int("GEX_TIMEOUT_MS", 30_000, 100, 300_000),
    },
  };
  const warnings = checked.success ? ruleWarnings(checked.data) : [];
  const { gexUrl, gexRefreshSeconds, gexMaxAgeSeconds } = config.providers;
  if (gexUrl !== null && gexRefreshSeconds >= gexMaxAgeSeconds) {
    // A fetched chain goes stale before the next one comes: between them every decision
    // reads "GEX missing" (degraded: DEGRADED_POLICY) though the feed is up.
    warnings.push(
      `GEX_REFRESH_SECONDS (${gexRefreshSeconds}) is not below GEX_MAX_AGE_SECONDS ` +
        `(${gexMaxAgeSeconds}): fetched GEX goes stale before the next fetch, and decisions ` +
        "in between run without it (DEGRADED_POLICY: half size, or NO_GEX)",
    );
  }
  return { config, problems, warnings };
}

/** The VIX's lowest print ever (intraday, 24 November 2017). */
export const VIX_ALL_TIME_LOW = 8.56;

/** 09:30 to 16:00 in New York. */
const REGULAR_SESSION_MINUTES = 390;

/**
 * Valid rules that refuse every entry, or every entry in some condition,
 * under a reason that reads like a market condition: a kill switch must be
 * meant, so start-up says so.
 */
export function ruleWarnings(rules: Rules): string[] {
  const warnings: string[] = [];
  const never = "no entry will ever be approved";
  if (rules.maxOpenPositions === 0) warnings.push(`MAX_OPEN_POSITIONS=0: ${never} (MAX_POSITIONS)`);
  // An entry passes only between open + the one and close - the other (core/entry_checks.ts),
  // when market hours are enforced at all.
  const { noEntryMinutesAfterOpen: afterOpen, noEntryMinutesBeforeClose: beforeClose } =
    rules.marketHours;
  if (rules.marketHours.enforce && afterOpen + beforeClose >= REGULAR_SESSION_MINUTES) {
    warnings.push(
      `NO_ENTRY_MINUTES_AFTER_OPEN (${afterOpen}) and NO_ENTRY_MINUTES_BEFORE_CLOSE ` +
        `(${beforeClose}) cover the whole ${REGULAR_SESSION_MINUTES}-minute session: ` +
        (rules.marketHours.extendedHours
          ? "entries only before the open and after the close"
          : never) +
        " (OPENING_WINDOW, CLOSING_WINDOW)",
    );
  }
  if (rules.maxExposure < rules.baseNotional) {
    warnings.push(
      `MAX_EXPOSURE (${rules.maxExposure}) is below BASE_NOTIONAL (${rules.baseNotional}): ` +
        "a full-size entry can never pass MAX_EXPOSURE",
    );
  }
  // The VIX has never traded below 8.56 (24 November 2017): a level under that is always reached.
  const { cautionLevel, cautionMultiplier, noTradeLevel } = rules.vix;
  if (noTradeLevel < VIX_ALL_TIME_LOW) {
    warnings.push(
      `VIX_NO_TRADE_LEVEL (${noTradeLevel}) is below the VIX's all-time low (${VIX_ALL_TIME_LOW}): ` +
        "every entry with a known VIX is refused as HIGH_VOLATILITY",
    );
  } else if (cautionLevel < VIX_ALL_TIME_LOW && cautionMultiplier !== 1) {
    warnings.push(
      `VIX_CAUTION_LEVEL (${cautionLevel}) is below the VIX's all-time low (${VIX_ALL_TIME_LOW}): ` +
        `every entry with a known VIX is sized x${cautionMultiplier} (VIX_CAUTION_MULTIPLIER)`,
    );
  }
  const multipliers: [string, number, string][] = [
    ["VIX_CAUTION_MULTIPLIER", rules.vix.cautionMultiplier, "in the VIX caution band"],
    ["GEX_NEGATIVE_REGIME_MULTIPLIER", rules.gex.negativeRegimeMultiplier, "in a negative regime"],
    ["DEGRADED_MULTIPLIER", rules.degraded.multiplier, "on degraded data"],
  ];
  for (const [name, value, when] of multipliers) {
    if (value === 0) warnings.push(`${name}=0: every entry ${when} is refused as SIZE_TOO_SMALL`);
  }
  return warnings;
}
