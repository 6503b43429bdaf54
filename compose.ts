/**
 * Wiring: builds every service from the config and a database, once. Used by
 * main.ts (the process) and by the tests (the same app on a throw-away
 * database), so what is tested is what runs.
 */
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import type { AppEnv } from "./app_env.ts";
import { type Authenticator, createAuthenticator } from "./core/auth.ts";
import type { Config } from "./core/config.ts";
import { type Cidr, parseCidrs } from "./core/net.ts";
import { createGroupCommit, type GroupCommit } from "./db/group_commit.ts";
import { connectionName } from "./db/jobs.ts";
import { openPglite } from "./db/pglite.ts";
import type { Database } from "./db/port.ts";
import { openPostgres } from "./db/postgres.ts";
import { type IngestOutcome, insertSignals, type SignalRecord } from "./db/signals.ts";
import { createWorker, type Worker } from "./pipeline/worker.ts";
import { type ContextProvider, createContextProvider } from "./providers/context.ts";
import { createGexProvider, type GexProvider } from "./providers/gex.ts";
import { EventHub } from "./handlers/events.ts";
import { LatencyWindow } from "./core/stats.ts";

export interface Services {
  config: Config;
  db: Database;
  app: Hono<AppEnv>;
  ingest: GroupCommit<SignalRecord, IngestOutcome>;
  context: ContextProvider;
  gex: GexProvider;
  /** The pipeline worker; main.ts starts it, tests drive it with runUntilIdle(). */
  worker: Worker;
  /** Stop taking webhooks (they get 503), end event streams, let in-flight ingests commit. */
  stopAccepting(): Promise<void>;
  /** Everything stopped and the database closed. */
  close(): Promise<void>;
}

export interface ComposeOptions {
  /** Use this database instead of opening one from the config (tests). */
  db?: Database;
  /**
   * The operator reads' database (openReadDatabase). Without it: opened from
   * the config when `db` is too, else the reads share `db`. Closed with the rest.
   */
  readDb?: Database;
  /** The clock, in epoch milliseconds. */
  now?: () => number;
  /** The pipeline worker's name; main.ts names the database sessions after it too. */
  workerId?: string;
  /** fetch for the context and GEX providers (tests pass a local server's). */
  fetch?: typeof fetch;
}

/** A pipeline worker's name, new for every process: a restarted instance is a new worker. */
export function newWorkerId(config: Config): string {
  return `${config.instanceId}:${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Opens the configured database. With `workerId`, every Postgres session is
 * named after that worker, which is how other instances tell it is alive
 * (db/jobs.ts reclaimStaleJobs).
 */
export function openDatabase(
  config: Config,
  options: { workerId?: string } = {},
): Promise<Database> {
  return config.databaseUrl !== null
    ? openPostgres(config.databaseUrl, {
      max: config.databasePoolSize,
      applicationName: options.workerId === undefined
        ? undefined
        : connectionName(options.workerId),
    })
    : openPglite(pgliteDirectory(config));
}

/**
 * The operator reads' database: on Postgres a pool of its own (its sessions
 * named apart from the worker's), each query cancelled past
 * READ_QUERY_TIMEOUT_MS; null on PGlite, whose one thread every query shares
 * anyway (the reads then use the main database, without a deadline).
 */
export async function openReadDatabase(config: Config): Promise<Database | null> {
  if (config.databaseUrl === null) return null;
  return await openPostgres(config.databaseUrl, {
    max: config.reads.poolSize,
    applicationName: READS_APPLICATION_NAME,
    queryTimeoutMs: config.reads.queryTimeoutMs,
  });
}

/** application_name of the read pool's sessions (pg_stat_activity). */
export const READS_APPLICATION_NAME = "optionstrat-backend reads";

/** The embedded database's own directory, inside DATA_DIR. */
export function pgliteDirectory(config: Config): string {
  return `${config.dataDir.replace(/\/+$/, "")}/pglite`;
}

/** Where the database is, without credentials (for logs and messages). */
export function describeDatabase(config: Config): string {
  if (config.databaseUrl === null) {
    return `embedded PGlite at ${pgliteDirectory(config)}`;
  }
  const url = new URL(config.databaseUrl);
  return `postgres at ${url.host}${url.pathname}`;
}

/** The webhook authenticator the config describes (loadConfig has checked the allowlist). */
export function authenticatorFor(config: Config): Authenticator {
  const { webhook } = config;
  return createAuthenticator({
    secret: webhook.secret,
    previousSecret: webhook.previousSecret,
    toleranceSeconds: webhook.signatureToleranceSeconds,
    ipAllowlist: webhook.ipAllowlist === null ? null : parseCidrs(webhook.ipAllowlist) as Cidr[],
    ipAllowlistRequired: webhook.ipAllowlistRequired,
  });
}

export async function compose(config: Config, options: ComposeOptions = {}): Promise<Services> {
  const db = options.db ?? await openDatabase(config);
  const readDb = options.readDb ??
    (options.db === undefined ? await openReadDatabase(config) : null) ?? db;
  const now = options.now ?? Date.now;
  const authenticator = authenticatorFor(config);
  const ingest = createGroupCommit<SignalRecord, IngestOutcome>(
    (records) => insertSignals(db, records, config.cache.deduplicationTTLSeconds),
    // Each flush is one statement that queues on the ingest order lock: with
    // two in flight the lock never waits for a round trip, and what arrives
    // meanwhile gathers into the next batch (4 or 8 in flight cut batches
    // small and cost more Postgres time per signal, `deno task bench`).
    // PGlite runs one statement at a time, on its own thread: the second
    // flush waits there instead of behind a round trip to this one, which
    // left that thread idle a fifth of the time at saturation.
    // Two flushes race to the lock, so one symbol's signals never ride in both:
    // a close and the open behind it keep their order (the sequence numbers).
    { maxInFlight: 2, orderKey: (r) => r.signal.symbol },
  );
  const { providers } = config;
  const context = createContextProvider({
    db,
    ttlSeconds: config.cache.contextTTLSeconds,
    maxAgeSeconds: providers.contextMaxAgeSeconds,
    url: providers.contextUrl,
    timeoutMs: providers.timeoutMs,
    now,
    fetch: options.fetch,
  });
  const gex = createGexProvider({
    db,
    ttlSeconds: config.cache.contextTTLSeconds,
    maxAgeSeconds: providers.gexMaxAgeSeconds,
    url: providers.gexUrl,
    refreshSeconds: providers.gexRefreshSeconds,
    symbols: providers.gexSymbols,
    timeoutMs: providers.gexTimeoutMs,
    now,
    fetch: options.fetch,
  });
  const worker = createWorker({
    db,
    workerId: options.workerId ?? newWorkerId(config),
    config: config.worker,
    rules: config.rules,
    context,
    gex,
    now,
    ingest,
  });
  const events = new EventHub(db);
  let accepting = true;
  const app = createApp({
    config,
    db,
    readDb,
    authenticator,
    ingest,
    context,
    gex,
    events,
    ackLatency: new LatencyWindow(),
    worker: config.worker.enabled ? worker : undefined,
    isAccepting: () => accepting,
    now,
  });
  return {
    config,
    db,
    app,
    ingest,
    context,
    gex,
    worker,
    async stopAccepting() {
      accepting = false;
      events.endStreams();
      await ingest.drain();
    },
    async close() {
      accepting = false;
      await ingest.drain();
      // Before waiting for the worker: a job stuck on a context fetch ends it now
      // (falling back to the stored snapshot) instead of at the provider timeout.
      context.stop();
      await worker.stop();
      await gex.stop();
      await events.close();
      if (readDb !== db) await readDb.close();
      await db.close();
    },
  };
}
