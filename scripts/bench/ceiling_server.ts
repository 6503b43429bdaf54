/**
 * The no-database ceiling: the service's real HTTP app (createApp from
 * app.ts: request id, correlation and logging middleware, secure headers,
 * rate limiter, body read (size and time limits), then webhookHandler with the real
 * createAuthenticator, HMAC check, JSON parse, zod normalization and dedup
 * key) with one thing swapped: the ingest's submit() answers ACCEPTED at
 * once instead of committing. Everything else the webhook touches is the
 * same code, so "service / ceiling" isolates what durability costs.
 *
 * Run as its own process, like the service (`deno run --allow-all
 * scripts/bench/ceiling_server.ts`), configured by the same environment
 * (PORT, WEBHOOK_SECRET, LOG_LEVEL, RATE_LIMIT_PER_MINUTE); exits on SIGTERM.
 * Any route that needs the database fails loudly: the bench only posts
 * /webhook and reads GET /webhook to know it is up.
 */
import { createApp } from "../../app.ts";
import { EventHub } from "../../handlers/events.ts";
import { authenticatorFor } from "../../compose.ts";
import { loadConfig } from "../../core/config.ts";
import { LatencyWindow } from "../../core/stats.ts";
import type { GroupCommit } from "../../db/group_commit.ts";
import type { Database } from "../../db/port.ts";
import type { IngestOutcome, SignalRecord } from "../../db/signals.ts";
import { setupLogging } from "../../logging.ts";
import { createContextProvider } from "../../providers/context.ts";
import { createGexProvider } from "../../providers/gex.ts";

/** A Database whose every call fails: proof that the ceiling's webhook path never uses one. */
export function noDatabase(): Database {
  const refuse = () => Promise.reject(new Error("The ceiling server has no database"));
  return {
    driver: "postgres",
    query: refuse,
    exec: refuse,
    transaction: refuse,
    listen: refuse,
    close: () => Promise.resolve(),
  };
}

/** An ingest that accepts every record at once: the store the ceiling leaves out. */
export function instantIngest(): GroupCommit<SignalRecord, IngestOutcome> {
  return {
    submit: (record) => Promise.resolve({ status: "accepted", signalId: record.id }),
    drain: () => Promise.resolve(),
    busy: () => false,
    whenIdle: () => Promise.resolve(),
    whenNoneWaiting: () => Promise.resolve(),
  };
}

async function main(): Promise<void> {
  // It has no worker and no database: WORKER_ENABLED (which needs DATABASE_URL) means nothing here.
  const { WORKER_ENABLED: _, ...env } = Deno.env.toObject();
  const { config } = loadConfig(env);
  await setupLogging({ level: config.logLevel });
  const db = noDatabase();
  const authenticator = authenticatorFor(config);
  const { providers } = config;
  const common = { db, ttlSeconds: config.cache.contextTTLSeconds, timeoutMs: providers.timeoutMs };
  const app = createApp({
    config,
    db,
    authenticator,
    ingest: instantIngest(),
    context: createContextProvider({
      ...common,
      maxAgeSeconds: providers.contextMaxAgeSeconds,
      url: providers.contextUrl,
      now: Date.now,
    }),
    gex: createGexProvider({
      ...common,
      maxAgeSeconds: providers.gexMaxAgeSeconds,
      url: providers.gexUrl,
      refreshSeconds: providers.gexRefreshSeconds,
      symbols: providers.gexSymbols,
      now: Date.now,
    }),
    events: new EventHub(db),
    ackLatency: new LatencyWindow(),
    isAccepting: () => true,
    now: Date.now,
  });
  const server = Deno.serve(
    { port: config.port, hostname: "127.0.0.1", onListen: () => {} },
    app.fetch,
  );
  Deno.addSignalListener("SIGTERM", () => {
    server.shutdown().then(() => Deno.exit(0));
  });
  await server.finished;
}

if (import.meta.main) await main();
