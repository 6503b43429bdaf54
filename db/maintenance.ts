/**
 * Housekeeping the worker runs every few minutes: dedup keys long past their
 * window and live events past their retention are deleted; on PGlite, which
 * has no autovacuum, the busy tables are vacuumed and analyzed (without fresh
 * statistics the planner picks bad plans for the job claim).
 */
import type { Database } from "./port.ts";

export interface MaintenanceResult {
  dedupKeysDeleted: number;
  eventsDeleted: number;
  vacuumed: boolean;
}

export async function runMaintenance(
  db: Database,
  options: { eventsRetentionDays: number },
): Promise<MaintenanceResult> {
  // An hour of slack: a key that expired is already dead; this only frees space.
  const dedup = await db.query<{ n: number }>(
    `with gone as (delete from signal_dedup where expires_at < now() - interval '1 hour' returning 1)
     select count(*)::integer as n from gone`,
  );
  const events = await db.query<{ n: number }>(
    `with gone as (
       delete from events where created_at < now() - make_interval(days => $1::integer) returning 1
     )
     select count(*)::integer as n from gone`,
    [options.eventsRetentionDays],
  );
  let vacuumed = false;
  if (db.driver === "pglite") {
    await db.exec("vacuum analyze pipeline_jobs, signal_dedup, events, positions, decisions");
    vacuumed = true;
  }
  return { dedupKeysDeleted: Number(dedup[0].n), eventsDeleted: Number(events[0].n), vacuumed };
}
