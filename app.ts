/**
 * The HTTP app: middleware, routes and the one error mapper. Built from
 * injected services (`createApp(deps)`), so tests run the real app against a
 * real database with `app.request(...)`.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { getConnInfo } from "hono/deno";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { MemoryStore } from "hono-rate-limiter";
import type { AppEnv } from "./app_env.ts";
import type { Authenticator } from "./core/auth.ts";
import type { Config } from "./core/config.ts";
import { ApiError, codeToStatus, errorBody } from "./core/errors.ts";
import { freshUntilMs } from "./core/freshness.ts";
import { rateLimitKey } from "./core/net.ts";
import type { LatencyWindow } from "./core/stats.ts";
import type { GroupCommit } from "./db/group_commit.ts";
import { type Database, isTransient, QueryTimeoutError } from "./db/port.ts";
import { insertProcessingError } from "./db/processing_errors.ts";
import type { IngestOutcome, SignalRecord } from "./db/signals.ts";
import { dashboardRoutes } from "./handlers/dashboard.ts";
import { EventHub, eventRoutes } from "./handlers/events.ts";
import { healthRoutes } from "./handlers/health.ts";
import { marketDataRoutes } from "./handlers/market_data.ts";
import { metricsRoutes } from "./handlers/metrics.ts";
import { readApiRoutes } from "./handlers/read_api.ts";
import { webhookHandler } from "./handlers/webhook.ts";
import type { ContextProvider } from "./providers/context.ts";
import type { GexProvider } from "./providers/gex.ts";
import type { Worker } from "./pipeline/worker.ts";
import { logger, withContext } from "./logging.ts";
import { BodyTimeoutError, BodyTooLargeError, readBytesWithin } from "./read_body.ts";

export interface AppDeps {
  config: Config;
  db: Database;
  /**
   * The operator's reads (read API, /metrics, /events): a pool apart from the
   * webhooks' on Postgres (compose.ts openReadDatabase); `db` when left out.
   */
  readDb?: Database;
  authenticator: Authenticator;
  ingest: GroupCommit<SignalRecord, IngestOutcome>;
  context: ContextProvider;
  gex: GexProvider;
  events: EventHub;
  /** Webhook acknowledgement times on this instance, for /metrics. */
  ackLatency: LatencyWindow;
  /**
   * This instance's pipeline worker, for /metrics: none when it runs no worker
   * (WORKER_ENABLED=false, or the bench's no-database server).
   */
  worker?: Pick<Worker, "bookConflicts" | "bookLocks">;
  /** False once shutdown began: new webhooks get 503 so TradingView re-sends elsewhere. */
  isAccepting: () => boolean;
  now: () => number;
}

const log = logger("http");

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { config } = deps;
  const readDb = deps.readDb ?? deps.db;
  /** Operator reads answered 503 QUERY_TIMEOUT, for /metrics. */
  let readsTimedOut = 0;
  const app = new Hono<AppEnv>();

  app.use(requestId());
  app.use(async function correlate(c, next) {
    const started = performance.now();
    c.set("clientIp", clientAddress(c, config.webhook.clientIpHeader));
    await withContext({ correlation_id: c.get("requestId") }, async () => {
      await next();
      log.info("{method} {route} {status} in {ms} ms", {
        method: c.req.method,
        // The matched route, never the raw path: /webhook/:token must not log the token.
        route: c.req.routePath,
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 100) / 100,
        client_ip: c.get("clientIp"),
      });
    });
  });
  app.use(secureHeaders());

  // Refusal records across all senders: the per-address limit bounds one sender, not many
  // (a botnet, or anyone's misconfigured alerts through TradingView's four addresses), and
  // each record is a write on the pool the ingest commits through.
  // An authenticated sender's refusal (400, 422) is always recorded: it is the trader's own.
  const recording = new RefusalRecordBudget(deps.now);
  const recordRejection = async (c: Context<AppEnv>, error: ApiError, payload: string | null) => {
    if (UNAUTHENTICATED_CODES.has(error.code) && !recording.take()) return;
    try {
      await insertProcessingError(deps.db, {
        correlationId: c.get("requestId"),
        stage: "ingest",
        code: error.code,
        message: error.message,
        httpStatus: codeToStatus(error.code),
        clientIp: c.get("clientIp"),
        payload,
        details: error.extra.issues ? { issues: error.extra.issues } : {},
      });
    } catch (e) {
      // Recording is best effort: the client still gets its 4xx.
      log.warn("Could not record refused request: {error}", { error: String(e) });
    }
  };

  // Refused requests per address and minute. Only refusals count: TradingView's four
  // senders are shared by all its users, so counting every request would let anyone's
  // alerts aimed at this URL crowd out the genuine ones, which TradingView never re-sends.
  const refusals = new MemoryStore<AppEnv>();
  refusals.init({ windowMs: 60_000 } as Parameters<typeof refusals.init>[0]);
  const limitRefusal = async (c: Context<AppEnv>): Promise<ApiError | null> => {
    const { totalHits, resetTime } = refusals.increment(rateLimitKey(c.get("clientIp")));
    if (totalHits <= config.webhook.rateLimitPerMinute) return null;
    const left = (resetTime?.getTime() ?? Date.now() + 60_000) - Date.now();
    const error = new ApiError(
      "RATE_LIMITED",
      "Too many refused requests from this address; slow down",
      { retryAfterSeconds: Math.max(1, Math.ceil(left / 1000)) },
    );
    // One record per client per window, not one per refused request.
    if (totalHits === config.webhook.rateLimitPerMinute + 1) await recordRejection(c, error, null);
    return error;
  };

  const webhook = webhookHandler({
    limitRefusal,
    authenticator: deps.authenticator,
    ingest: deps.ingest,
    recordRejection,
    databaseUnavailable: () => deps.db.unavailable?.() ?? null,
    now: deps.now,
    secrets: [config.webhook.secret, config.webhook.previousSecret]
      .filter((x): x is string => x !== null),
    signatureToleranceSeconds: config.webhook.signatureToleranceSeconds,
    freshUntilMs: (signal) =>
      freshUntilMs(Date.parse(signal.timestamp), signal.timeframe, config.rules),
    ingestDeadlineMs: config.webhook.ingestDeadlineMs,
    onAck: (ms) => deps.ackLatency.record(ms),
  });
  /**
   * A refusal before any authentication, counted as one: the sender needs only a
   * Content-Length (or a stalled body) to send it, and a record for each would write
   * without limit. The rest of the body is unread, so the connection cannot carry another
   * request: the answer says Connection: close (a proxy in front closes it; Deno.serve itself
   * keeps the socket until the client closes it, but no handler waits on it any more).
   */
  const refuseUnread = async (c: Context<AppEnv>, error: ApiError) => {
    const limited = await limitRefusal(c);
    const answer = errorResponse(c, limited ?? error);
    if (limited === null) await recordRejection(c, error, null);
    answer.headers.set("Connection", "close");
    return answer;
  };
  const { maxBodyBytes, bodyTimeoutMs } = config.webhook;
  /**
   * The body, read before the handler (which finds it in `body`): at most
   * WEBHOOK_MAX_BODY_BYTES, within WEBHOOK_BODY_TIMEOUT_MS. Without a deadline a
   * sender that stalls mid-body held its request open for as long as it liked, and with it,
   * in Fly's proxy, one of the requests fly.toml's hard_limit counts.
   */
  const readWebhookBody: MiddlewareHandler<AppEnv> = async (c, next) => {
    // Checked as the request arrives: one whose body is still coming when the drain starts
    // is in flight, and answered.
    if (!deps.isAccepting()) {
      throw new ApiError("SHUTTING_DOWN", "This instance is shutting down; retry shortly", {
        retryAfterSeconds: 5,
      });
    }
    try {
      c.set("body", await readBytesWithin(c.req.raw, maxBodyBytes, bodyTimeoutMs));
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        return refuseUnread(
          c,
          new ApiError("PAYLOAD_TOO_LARGE", `Body is larger than ${maxBodyBytes} bytes`),
        );
      }
      if (error instanceof BodyTimeoutError) {
        return refuseUnread(
          c,
          new ApiError("REQUEST_TIMEOUT", `The body did not arrive within ${bodyTimeoutMs} ms`),
        );
      }
      // The client went away mid-body: its problem, not ours, and nothing was stored.
      throw new ApiError("BAD_REQUEST", "Request body could not be read");
    }
    await next();
  };
  const webhookGuards = [readWebhookBody] as const;
  // A trailing slash is the same address: a URL pasted into TradingView as
  // ".../webhook/<secret>/" was a 404, recorded nowhere, and TradingView never re-sends a 4xx:
  // every alert lost without a trace.
  app.on("POST", ["/webhook", "/webhook/"], ...webhookGuards, webhook);
  app.on("POST", ["/webhook/:token", "/webhook/:token/"], ...webhookGuards, webhook);
  app.on("GET", ["/webhook", "/webhook/"], (c) =>
    c.json({
      status: "READY",
      message: "POST TradingView alerts here (JSON or text/plain); see the README for the template",
      correlation_id: c.get("requestId"),
    }));

  app.route(
    "/",
    healthRoutes({
      db: deps.db,
      context: deps.context,
      gex: deps.gex,
      contextMaxAgeSeconds: config.providers.contextMaxAgeSeconds,
      gexMaxAgeSeconds: config.providers.gexMaxAgeSeconds,
      maxQueueAgeSeconds: 60,
      contextSource: sourceName(config.providers.contextUrl),
      contextPerSymbol: config.providers.contextUrl === null,
      gexSource: sourceName(config.providers.gexUrl),
      workerEnabled: config.worker.enabled,
      now: deps.now,
    }),
  );

  app.route("/", dashboardRoutes());

  // /webhook* and /health* never ask for the operator token (DESIGN.md). A method they do not
  // serve (a browser opening the token URL, a relay's PUT) is a 405 naming the ones they do,
  // not "Operator token required" from the check below, nor a 404 for an address that exists.
  const notServed = (allow: string) => (c: Context<AppEnv>) => {
    c.header("Allow", allow);
    return errorResponse(
      c,
      new ApiError("METHOD_NOT_ALLOWED", `${c.req.method} is not served here; use ${allow}`),
    );
  };
  for (const path of ["/webhook", "/webhook/"]) app.all(path, notServed("GET, POST"));
  for (const path of ["/webhook/:token", "/webhook/:token/"]) app.all(path, notServed("POST"));
  app.all("/health", notServed("GET"));
  app.all(
    "/health/:component",
    (c) =>
      c.req.method === "GET"
        ? errorResponse(
          c,
          new ApiError("NOT_FOUND", `No health component ${c.req.path.slice(8, 72)}`),
        )
        : notServed("GET")(c),
  );

  // Everything below needs the operator token when one is set.
  if (config.operatorToken !== null) {
    const refusal =
      (message: string, code: "UNAUTHORIZED" | "BAD_REQUEST" = "UNAUTHORIZED") => (c: Context) =>
        errorBody(new ApiError(code, message), c.get("requestId") ?? "");
    app.use(
      "*",
      bearerAuth({
        token: config.operatorToken,
        noAuthenticationHeader: {
          message: refusal("Operator token required (Authorization: Bearer <token>)"),
        },
        invalidAuthenticationHeader: {
          // Hono answers a malformed header 400 (RFC 6750 invalid_request): the code says so too.
          message: refusal("Authorization header must be: Bearer <token>", "BAD_REQUEST"),
        },
        invalidToken: { message: refusal("Operator token is not valid") },
      }),
    );
  }
  app.route(
    "/",
    marketDataRoutes({
      db: deps.db,
      context: deps.context,
      gex: deps.gex,
      contextMaxAgeSeconds: config.providers.contextMaxAgeSeconds,
      gexMaxAgeSeconds: config.providers.gexMaxAgeSeconds,
      now: deps.now,
    }),
  );

  app.route(
    "/",
    metricsRoutes({
      db: readDb,
      context: deps.context,
      gex: deps.gex,
      ackLatency: deps.ackLatency,
      instanceId: config.instanceId,
      now: deps.now,
      contextMaxAgeSeconds: config.providers.contextMaxAgeSeconds,
      worker: deps.worker,
      refusalsUnrecorded: () => recording.skipped,
      readsTimedOut: () => readsTimedOut,
    }),
  );
  app.route(
    "/",
    readApiRoutes({
      db: readDb,
      now: deps.now,
      contextMaxAgeSeconds: config.providers.contextMaxAgeSeconds,
    }),
  );
  app.route("/", eventRoutes({ db: readDb, hub: deps.events }));

  app.notFound((c) =>
    errorResponse(c, new ApiError("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}`))
  );
  app.onError((error, c) => {
    if (error instanceof ApiError) return errorResponse(c, error);
    if (error instanceof QueryTimeoutError) {
      readsTimedOut++;
      // Too slow a read, not an outage: its own code, and the query's owner is told to narrow it.
      log.warn("Read cancelled after {timeout_ms} ms on {method} {route}", {
        timeout_ms: error.timeoutMs,
        method: c.req.method,
        route: c.req.routePath,
      });
      return errorResponse(
        c,
        new ApiError(
          "QUERY_TIMEOUT",
          `The query did not finish within READ_QUERY_TIMEOUT_MS (${error.timeoutMs} ms) and was ` +
            "cancelled; narrow it (symbol, since, until, a smaller limit) or retry later",
          { retryAfterSeconds: 5 },
        ),
      );
    }
    // Hono middleware (bearerAuth) prepares its own response, already in our shape; rebuilt on
    // the context so it keeps the headers set before it (X-Request-Id) beside its own.
    if (error instanceof HTTPException && error.res) {
      const res = error.getResponse();
      return c.newResponse(res.body, res);
    }
    if (error instanceof HTTPException && error.status < 500) {
      const code = error.status === 413
        ? "PAYLOAD_TOO_LARGE"
        : error.status === 401
        ? "UNAUTHORIZED"
        : "BAD_REQUEST";
      return errorResponse(c, new ApiError(code, error.message || "Bad request"));
    }
    if (isTransient(error)) {
      // The database, not this request: say so, and when to come back.
      log.warn("Database unavailable on {method} {route}: {error}", {
        method: c.req.method,
        route: c.req.routePath,
        error: String(error),
      });
      return errorResponse(
        c,
        new ApiError("DATABASE_UNAVAILABLE", "Database unavailable; retry shortly", {
          retryAfterSeconds: 5,
        }),
      );
    }
    log.error("Unhandled error on {method} {route}: {error}", {
      method: c.req.method,
      route: c.req.routePath,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    return errorResponse(c, new ApiError("INTERNAL_ERROR", "Internal error; it has been logged"));
  });
  return app;
}

function errorResponse(c: Context<AppEnv>, error: ApiError): Response {
  if (error.extra.retryAfterSeconds !== undefined) {
    c.header("Retry-After", String(error.extra.retryAfterSeconds));
  }
  return c.json(errorBody(error, c.get("requestId") ?? ""), codeToStatus(error.code));
}

function sourceName(url: string | null): string {
  return url === null
    ? "push (POST /context, POST /gex/chain)"
    : `fetch ${new URL(url.replaceAll("{symbol}", "X")).host}`;
}

function clientAddress(c: Context<AppEnv>, header: string | null): string | null {
  if (header !== null) return c.req.header(header)?.trim() || null;
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    // app.request() in tests has no socket.
    return null;
  }
}

/**
 * At most `REFUSALS_RECORDED_PER_SECOND` records a second on this instance of
 * refusals anyone can send (bursts up to twice that): past it one is still answered,
 * counted in `skipped` (`/metrics`) and logged once in ten seconds, not
 * stored.
 */
export class RefusalRecordBudget {
  #tokens = REFUSAL_RECORD_BURST;
  #refilledAt: number;
  #warnedAt = -Infinity;
  skipped = 0;

  constructor(private readonly now: () => number) {
    this.#refilledAt = now();
  }

  take(): boolean {
    const now = this.now();
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#tokens = Math.min(
      REFUSAL_RECORD_BURST,
      this.#tokens + (elapsed / 1000) * REFUSALS_RECORDED_PER_SECOND,
    );
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    this.skipped++;
    if (now - this.#warnedAt >= 10_000) {
      this.#warnedAt = now;
      log.warn(
        "Over {limit} refused webhooks a second: not recording them ({skipped} so far)",
        { limit: REFUSALS_RECORDED_PER_SECOND, skipped: this.skipped },
      );
    }
    return false;
  }
}

export const REFUSALS_RECORDED_PER_SECOND = 50;
/** Refusals answered before a request is known to be authentic: anyone can send them. */
const UNAUTHENTICATED_CODES = new Set([
  "UNAUTHORIZED",
  "RATE_LIMITED",
  "PAYLOAD_TOO_LARGE",
  "REQUEST_TIMEOUT",
]);
const REFUSAL_RECORD_BURST = 2 * REFUSALS_RECORDED_PER_SECOND;
