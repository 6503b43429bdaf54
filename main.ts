/**
 * The process: reads the config once, opens and migrates the database,
 * composes the services and serves them until SIGTERM or SIGINT, then stops
 * taking webhooks, finishes what is in flight and exits 0.
 */
import { compose } from "./compose.ts";
import { ConfigError, loadConfig } from "./core/config.ts";
import { loadMigrations, migrate } from "./db/migrate.ts";
import { logger, setupLogging } from "./logging.ts";
import { openDatabase } from "./compose.ts";

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

  const db = await openDatabase(config);
  const { applied } = await migrate(db, await loadMigrations());
  log.info("Database ready ({driver}); migrations applied now: {applied}", {
    driver: db.driver,
    applied: applied.map((m) => `${m.version}_${m.name}`),
  });
  const services = await compose(config, { db });
  await services.worker.start();
  services.gex.start();

  const server = Deno.serve({
    port: config.port,
    hostname: "0.0.0.0",
    onListen: ({ hostname, port }) =>
      log.info("Listening on http://{hostname}:{port} ({env})", {
        hostname,
        port,
        env: config.env,
      }),
  }, services.app.fetch);

  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("{signal} received: draining", { signal });
    await services.stopAccepting();
    await server.shutdown();
    await services.close();
    log.info("Stopped cleanly");
    stopped.resolve();
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => void stop(signal));
  }
  await stopped.promise;
  return 0;
}

if (import.meta.main) Deno.exit(await main());
