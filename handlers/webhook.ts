/**
 * `POST /webhook` and `POST /webhook/:token`: a TradingView alert in, a
 * durable signal out. Before it, app.ts's middleware checks that the service
 * is still accepting (else 503 SHUTTING_DOWN, TradingView re-sends) and reads
 * the body within its size and time limits (413, 408). Then, in order:
 *  1. authentication, by any enabled method (else 401, no hint which failed);
 *  2. the body is JSON (else 400 INVALID_JSON);
 *  3. it normalizes to a canonical signal (else 422 VALIDATION_FAILED);
 *  4. dedup + signal + job committed in one transaction (503 if the database
 *     is unreachable or has not committed within `ingestDeadlineMs`: nothing
 *     was written, except when the connection died after the commit and
 *     before its answer, or a commit queued in the driver lands late; then
 *     the re-send is answered DUPLICATE);
 * then 200 ACCEPTED, or 200 DUPLICATE with the original signal's id.
 * Every refusal is recorded in processing_errors with the secret removed.
 */
import type { Context } from "hono";
import type { Authenticator } from "../core/auth.ts";
import { LATEST_STORABLE_MS } from "../core/context.ts";
import { dedupKey } from "../core/dedup.ts";
import { ApiError } from "../core/errors.ts";
import {
  extractSecret,
  parseAlertJson,
  payloadText,
  redactText,
  scrubSecret,
  secretFromText,
  storable,
} from "../core/payload.ts";
import { normalizeSignal, type Signal } from "../core/signal.ts";
import type { GroupCommit } from "../db/group_commit.ts";
import { DatabaseUnavailableError, isTransient } from "../db/port.ts";
import type { IngestOutcome, SignalRecord } from "../db/signals.ts";
import type { AppEnv } from "../app_env.ts";
import { withinMs } from "../deadline.ts";
import { logger } from "../logging.ts";

/** What the guide's clients expect in `system`. */
export const SYSTEM = "REFACTORED";
/** Body kept for an unauthenticated refusal: enough to recognise it, little to abuse. */
const UNAUTHENTICATED_PAYLOAD_LIMIT = 1024;
const decoder = new TextDecoder();
const log = logger("webhook");

export interface WebhookDeps {
  authenticator: Authenticator;
  ingest: GroupCommit<SignalRecord, IngestOutcome>;
  /**
   * Counts a refused request from the client's address; past the limit, the
   * RATE_LIMITED error to answer instead (the first one over it recorded).
   */
  limitRefusal: (c: Context<AppEnv>) => Promise<ApiError | null>;
  /** Records a refused request; must not throw. */
  recordRejection: (c: Context<AppEnv>, error: ApiError, payload: string | null) => Promise<void>;
  /** Why the database is known to be down, or null (db/port.ts Database.unavailable). */
  databaseUnavailable: () => string | null;
  now: () => number;
  /** The webhook secrets (current, previous), scrubbed from whatever is stored or logged of a body. */
  secrets: readonly string[];
  /** How long a signature's timestamp stays valid; dedup must outlast it. */
  signatureToleranceSeconds: number;
  /** Until when a re-delivery of `signal` would still be fresh (epoch ms); dedup must outlast it. */
  freshUntilMs: (signal: Signal) => number;
  /** Called with the acknowledgement time of every ACCEPTED or DUPLICATE answer. */
  onAck?: (ms: number) => void;
  /**
   * Longest a webhook waits for its commit before answering 503: inside
   * TradingView's 3 s, so it re-sends instead of giving up. A commit still
   * queued in the driver (a connection that broke as it was sent waits for
   * the next one) may land later; its re-send is then answered DUPLICATE.
   */
  ingestDeadlineMs: number;
}

export function webhookHandler(deps: WebhookDeps) {
  return async function webhook(c: Context<AppEnv>) {
    const started = performance.now();
    const correlationId = c.get("requestId");
    const raw = c.get("body");
    const text = decoder.decode(raw).replace(/^\uFEFF/, "");
    const clientIp = c.get("clientIp");

    let parsed: unknown;
    let isJson = true;
    try {
      parsed = parseAlertJson(text);
    } catch {
      isJson = false;
    }
    const extracted = isJson
      ? extractSecret(parsed)
      : { secret: secretFromText(text), payload: undefined };
    const bodySecret = extracted.secret;
    // From here on the alert never holds the secret, wherever the sender pasted it.
    const scrub = <T>(value: T) =>
      deps.secrets.reduce((v, secret) => scrubSecret(v, secret), value);
    const payload = scrub(extracted.payload);
    // Scrubbed before it is cut: a secret across the cut would leave its first part.
    const shown = (limit?: number) =>
      isJson ? payloadText(payload, limit) : redactText(scrub(text), limit);

    const auth = await deps.authenticator.verify({
      rawBody: raw,
      header: (name) => c.req.header(name),
      pathToken: c.req.param("token") ?? null,
      bodySecret,
      clientIp,
      nowMs: deps.now(),
    });
    if (!auth.ok) {
      const limited = await deps.limitRefusal(c);
      if (limited !== null) throw limited;
      log.warn("Webhook refused: {reason}", { reason: auth.reason, client_ip: clientIp });
      const error = new ApiError("UNAUTHORIZED", "Authentication failed");
      await deps.recordRejection(c, error, shown(UNAUTHENTICATED_PAYLOAD_LIMIT));
      throw error;
    }
    if (!isJson) {
      const error = new ApiError("INVALID_JSON", "Body is not valid JSON");
      await deps.recordRejection(c, error, shown());
      throw error;
    }

    const normalized = normalizeSignal(payload);
    if (!normalized.ok) {
      const error = new ApiError(
        "VALIDATION_FAILED",
        `Alert does not match the signal schema: ${normalized.issues[0].message}`,
        { issues: normalized.issues },
      );
      await deps.recordRejection(c, error, shown());
      throw error;
    }

    const signal = normalized.signal;
    if (auth.previousSecret) {
      log.warn(
        "Alert for {symbol} authenticated with WEBHOOK_SECRET_PREVIOUS: move it to the new secret",
        {
          symbol: signal.symbol,
          method: auth.method,
        },
      );
    }
    const record: SignalRecord = {
      id: crypto.randomUUID(),
      receivedAt: new Date(deps.now()),
      signal,
      // webhook-id is signed only under Standard Webhooks; elsewhere anyone could vary it.
      dedupKey: dedupKey(signal, {
        deliveryId: auth.method === "standard_webhooks" ? c.req.header("webhook-id") ?? null : null,
        idempotencyKey: normalized.idempotencyKey,
      }),
      // The key lives while a re-delivery could still open a position (a relay retries
      // for minutes; a stale one only closes what was entered before its time, which
      // the first delivery closed already), and while a signed timestamp still verifies.
      // Held to 9999, which Postgres stores: a "100000M" timeframe's freshness runs past it
      // (written "+010513-...", refused by the insert), and a MAX_SIGNAL_AGE_SECONDS meant as
      // "no limit" (1e14) past the last time a Date holds; either way a 500 for every alert.
      dedupUntil: new Date(Math.min(
        Math.max(
          deps.freshUntilMs(signal),
          auth.signedAtMs === undefined
            ? 0
            : auth.signedAtMs + deps.signatureToleranceSeconds * 1000,
        ),
        LATEST_STORABLE_MS,
      )),
      rawPayload: storable(payload),
      authMethod: auth.method,
      clientIp,
      correlationId,
    };
    let outcome: IngestOutcome;
    try {
      // Known down: answer now rather than queue behind flushes that hang (a partition).
      const down = deps.databaseUnavailable();
      if (down !== null) throw new DatabaseUnavailableError(down);
      const ms = deps.ingestDeadlineMs;
      outcome = await withinMs(
        deps.ingest.submit(record),
        ms,
        () => new DatabaseUnavailableError(`no commit within ${ms} ms`),
      );
    } catch (error) {
      if (!isTransient(error)) throw error;
      log.error("Database unavailable, signal not stored: {error}", { error: String(error) });
      throw new ApiError(
        "DATABASE_UNAVAILABLE",
        "Database unavailable; retry (a re-send of the same alert is deduplicated)",
        {
          retryAfterSeconds: 5,
        },
      );
    }

    const processingTimeMs = Math.round((performance.now() - started) * 100) / 100;
    c.set("signalOutcome", outcome.status);
    c.set("ackMs", processingTimeMs);
    deps.onAck?.(processingTimeMs);
    if (outcome.status === "duplicate") {
      log.info("Duplicate of signal {signal_id}", {
        signal_id: outcome.signalId,
        symbol: signal.symbol,
      });
      return c.json({
        status: "DUPLICATE",
        message: "Signal already received within the dedup window; not processed again",
        correlation_id: correlationId,
        processing_time_ms: processingTimeMs,
        system: SYSTEM,
        signal_id: outcome.signalId,
      });
    }
    log.info("Signal {signal_id} accepted: {symbol} {direction} {action}", {
      signal_id: outcome.signalId,
      symbol: signal.symbol,
      direction: signal.direction,
      action: signal.action,
      auth_method: auth.method,
      ms: processingTimeMs,
    });
    return c.json({
      status: "ACCEPTED",
      message: "Signal received and queued for processing",
      correlation_id: correlationId,
      processing_time_ms: processingTimeMs,
      system: SYSTEM,
      signal_id: outcome.signalId,
    });
  };
}
