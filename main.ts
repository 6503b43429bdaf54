/**
 * The process: reads the config once, opens and migrates the database
 * (waiting for it while it cannot be reached, see openAndMigrate), composes
 * the services and serves them until SIGTERM or SIGINT, then stops taking
 * webhooks, finishes what is in flight and exits 0, or 1 when that
 * did not finish within SHUTDOWN_DEADLINE_MS (below fly.toml's kill_timeout,
 * so the process ends on its own before Fly sends SIGKILL).
 */
import { type Config, ConfigError, loadConfig } from "./core/config.ts";
import {
  loadMigrations,
  migrate,
  type Migration,
  MigrationLockTimeoutError,
} from "./db/migrate.ts";
import { logger, setupLogging } from "./logging.ts";
import {
  compose,
  describeDatabase,
  newWorkerId,
  openDatabase,
  openReadDatabase,
} from "./compose.ts";
import { type Database, isUnavailable } from "./db/port.ts";
import { isClosedSocketWriteRace, isOrphanedConnectFailure } from "./db/postgres.ts";

/**
 * How long a graceful stop may take. It normally takes well under a second:
 * in-flight webhooks commit in milliseconds, a decision takes a few seconds
 * at most (provider requests time out after 2 s). fly.toml's kill_timeout
 * (30 s) must stay above it; tests/deploy_files_test.ts checks that.
 */
export const SHUTDOWN_DEADLINE_MS = 20_000;

/** A repeat of the stop signal sooner than this is the same signal delivered twice. */
const REPEAT_SIGNAL_MS = 1_000;

/** What a graceful stop goes through, in this order. */
export interface Stoppable {
  /** New webhooks get 503 SHUTTING_DOWN + Retry-After; submitted ingests commit. */
  stopAccepting(): Promise<void>;
  /** Lets the requests being handled finish, ends event streams, closes the listener. */
  shutdownServer(): Promise<void>;
  /** Finishes the jobs being decided, releases claims not started, closes the database. */
  close(): Promise<void>;
  /** Jobs being decided right now, for the log when the deadline passes. */
  activeJobs(): number;
}

/**
 * Runs the stop steps in order; resolves to the exit code: 0 when all of them
 * finished within `deadlineMs`, 1 when one failed or the deadline passed
 * (logged with what was abandoned). Nothing is half-written either way: each
 * signal and each decision commits in one transaction or not at all, and an
 * abandoned job's claim expires so another instance decides it.
 */
export async function shutDown(
  parts: Stoppable,
  options: { deadlineMs?: number } = {},
): Promise<number> {
  const log = logger("main");
  const deadlineMs = options.deadlineMs ?? SHUTDOWN_DEADLINE_MS;
  const started = performance.now();
  const steps: [string, () => Promise<void>][] = [
    ["stop accepting webhooks", () => parts.stopAccepting()],
    ["finish in-flight requests", () => parts.shutdownServer()],
    ["finish the jobs being decided and close the database", () => parts.close()],
  ];
  let step = steps[0][0];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<number>((resolve) => {
    timer = setTimeout(() => {
      log.error(
        "Shutdown deadline of {deadline_ms} ms passed while waiting to {step}; abandoning " +
          "{jobs} jobs being decided (their claims expire and they are decided again)",
        { deadline_ms: deadlineMs, step, jobs: parts.activeJobs() },
      );
      resolve(1);
    }, deadlineMs);
  });
  // A failed step is logged and the next one still runs: a server that will
  // not shut down cleanly is no reason to abandon the job being decided.
  const run = async () => {
    let code = 0;
    for (const [name, fn] of steps) {
      step = name;
      try {
        await fn();
      } catch (error) {
        log.error("Shutdown step failed: {step}: {error}", { step, error: String(error) });
        code = 1;
      }
    }
    if (code === 0) {
      log.info("Stopped cleanly in {ms} ms", { ms: Math.round(performance.now() - started) });
    }
    return code;
  };
  try {
    return await Promise.race([run(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Keeps the process alive through the two driver errors that reach the top
 * uncaught during an outage (db/postgres.ts): postgres.js's write on a
 * closed connection, and a connect refused on a socket the driver has
 * already dropped. Only through those: anything else still ends the process.
 */
export function guardDriverRace(): void {
  const log = logger("main");
  const survive = (event: Event, error: unknown) => {
    if (isClosedSocketWriteRace(error)) {
      event.preventDefault();
      log.warn("Ignored a postgres.js write on an already closed connection: {error}", {
        error: String(error),
      });
    } else if (isOrphanedConnectFailure(error)) {
      event.preventDefault();
      log.warn("Ignored a refused connect on a connection postgres.js had dropped: {error}", {
        error: String(error),
      });
    }
  };
  globalThis.addEventListener("error", (event) => survive(event, event.error));
  // Deno reports the refused connect as an unhandled rejection when its op's promise carries it.
  globalThis.addEventListener("unhandledrejection", (event) => survive(event, event.reason));
}

/** Longest pause between two start-up attempts at the database. */
const STARTUP_MAX_BACKOFF_MS = 15_000;

/**
 * Opens and migrates the database, trying again with growing pauses while it
 * cannot be reached (or a migration cannot take its locks) for up to
 * DATABASE_STARTUP_TIMEOUT_SECONDS: a database that is restarting, or not
 * up yet when the machine boots, would otherwise end the process at once,
 * and Fly gives up restarting a machine after a few quick failures. Each
 * attempt is logged, naming the database without its credentials. Resolves
 * to null, the failure logged, once the time is up or on an error a retry
 * cannot mend (a refused password, a failing migration).
 */
export async function openAndMigrate(
  config: Config,
  options: { workerId: string; migrations: readonly Migration[] },
): Promise<{ db: Database; applied: Migration[] } | null> {
  const log = logger("main");
  const database = describeDatabase(config);
  const timeoutMs = config.databaseStartupTimeoutSeconds * 1000;
  const started = performance.now();
  let db: Database;
  try {
    db = await openDatabase(config, { workerId: options.workerId });
  } catch (error) {
    // PGlite opens here: a damaged or unwritable data directory, which waiting will not mend.
    log.error("Cannot open the database: {error} ({database})", {
      error: withoutCredentials(error, config),
      database,
    });
    return null;
  }
  // One pool throughout: while the server is away it probes every 250 ms and
  // refuses calls at once, so the next attempt works as soon as it is back.
  // (Closing a pool that never connected would wait 5 s for its probe.)
  for (let attempt = 1;; attempt++) {
    try {
      const { applied } = await migrate(db, options.migrations);
      return { db, applied };
    } catch (error) {
      const message = withoutCredentials(error, config);
      if (!isUnavailable(error) && !(error instanceof MigrationLockTimeoutError)) {
        log.error("Cannot start: {error} ({database})", { error: message, database });
        return null;
      }
      const elapsedMs = performance.now() - started;
      // The last pause ends at the deadline, for one last attempt there.
      const waitMs = Math.min(
        1000 * 2 ** (attempt - 1),
        STARTUP_MAX_BACKOFF_MS,
        timeoutMs - elapsedMs,
      );
      if (waitMs <= 0) {
        log.error(
          "Gave up on the database after {attempts} attempts in {seconds} s ({database}): " +
            "{error}. Check DATABASE_URL and that the server is up; exiting",
          { attempts: attempt, seconds: Math.round(elapsedMs / 1000), database, error: message },
        );
        return null;
      }
      log.warn(
        "Database not ready ({database}): {error}; attempt {attempt}, trying again in " +
          "{wait_ms} ms (giving up after {timeout_s} s)",
        { database, error: message, attempt, wait_ms: waitMs, timeout_s: timeoutMs / 1000 },
      );
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/** Why the service cannot listen on `port` (taken, or not allowed), or null when it can. */
export function portUnavailable(port: number): string | null {
  try {
    Deno.listen({ hostname: "0.0.0.0", port }).close();
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** An error's message with DATABASE_URL's password, should a driver ever quote it, masked. */
function withoutCredentials(error: unknown, config: Config): string {
  const message = error instanceof Error ? error.message : String(error);
  const encoded = config.databaseUrl === null ? "" : new URL(config.databaseUrl).password;
  if (encoded === "") return message;
  return message.replaceAll(encoded, "***").replaceAll(decodeURIComponent(encoded), "***");
}

async function main(): Promise<number> {
  let loaded;
  try {
    loaded = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 78; // EX_CONFIG
    }
    throw error;
  }
  const { config, warnings } = loaded;
  await setupLogging({ level: config.logLevel });
  const log = logger("main");
  for (const warning of warnings) log.warn("{warning}", { warning });
  guardDriverRace();

  // Before the database: a second instance started by mistake on a busy port would
  // otherwise open it (PGlite: the running one's files) and start deciding, then die.
  const portProblem = portUnavailable(config.port);
  if (portProblem !== null) {
    log.error("Cannot listen on PORT {port}: {error}; exiting", {
      port: config.port,
      error: portProblem,
    });
    return 1;
  }

  const workerId = newWorkerId(config);
  const opened = await openAndMigrate(config, { workerId, migrations: await loadMigrations() });
  if (opened === null) return 1;
  const { db, applied } = opened;
  log.info("Database ready ({driver}); migrations applied now: {applied}", {
    driver: db.driver,
    applied: applied.map((m) => `${m.version}_${m.name}`),
  });
  // The operator's reads get connections of their own (Postgres): a slow one never holds
  // those the webhooks commit through.
  const readDb = await openReadDatabase(config) ?? undefined;
  const services = await compose(config, { db, readDb, workerId });
  if (config.worker.enabled) await services.worker.start();
  services.gex.start();

  // Deno.serve's shutdown() breaks the reading of a request body still
  // arriving (the webhook would fail), so the stop first waits for the
  // requests being handled. Event streams, which never end by themselves, are
  // ended by stopAccepting().
  const handling = new Set<Promise<Response>>();
  const server = Deno.serve({
    port: config.port,
    hostname: "0.0.0.0",
    onListen: ({ hostname, port }) =>
      log.info("Listening on http://{hostname}:{port} ({env})", {
        hostname,
        port,
        env: config.env,
      }),
  }, (request, info) => {
    const handled = Promise.resolve(services.app.fetch(request, info));
    handling.add(handled);
    handled.finally(() => handling.delete(handled)).catch(() => {});
    return handled;
  });

  const stopped = Promise.withResolvers<number>();
  let stoppingSince: number | null = null;
  const stop = async (signal: string) => {
    if (stoppingSince !== null) {
      // The same stop delivered twice: a signal to the process group reaches this process
      // both directly and through `deno task`, which passes it on.
      if (performance.now() - stoppingSince < REPEAT_SIGNAL_MS) return;
      // A second signal (Ctrl-C twice) means now; the transactions keep the data whole.
      log.warn("{signal} received again: exiting without waiting", { signal });
      stopped.resolve(1);
      return;
    }
    stoppingSince = performance.now();
    log.info("{signal} received: draining (deadline {deadline_ms} ms)", {
      signal,
      deadline_ms: SHUTDOWN_DEADLINE_MS,
    });
    stopped.resolve(
      await shutDown({
        stopAccepting: () => services.stopAccepting(),
        shutdownServer: async () => {
          await Promise.allSettled([...handling]);
          await server.shutdown();
        },
        close: () => services.close(),
        activeJobs: () => services.worker.active,
      }),
    );
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => void stop(signal));
  }
  return await stopped.promise;
}

if (import.meta.main) Deno.exit(await main());
