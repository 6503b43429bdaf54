/**
 * Housekeeping the worker runs every few minutes: dedup keys long past their
 * window, and live events and refused webhooks past their retention, are
 * deleted (a pipeline stage's give-up is kept: it belongs to a signal); new
 * signals are added to the time filters' BRIN index; on PGlite, which has no
 * autovacuum, the busy tables are vacuumed and analyzed (without fresh
 * statistics the planner picks bad plans for the job claim), and signals analyzed.
 *
 * PGlite runs one statement at a time, and webhooks wait behind each one: in
 * a single statement the vacuum of five busy tables stalled ingest past its
 * 2 s deadline (503s at 1,000 alerts/s after 300,000 signals). So each table
 * is vacuumed, then analyzed, in statements of their own, each after
 * `beforeStep` (the worker waits there for the webhooks' commits to go
 * quiet). A table is analyzed only once enough of it changed since its last
 * analyze, by autovacuum's default rule (50 rows plus a tenth of the table):
 * an analyze samples up to 30,000 pages however little changed, and at half
 * a million decisions each run's analyze of decisions held webhooks for
 * 0.55-1.5 s, every five minutes, growing with the history.
 */
import type { Database } from "./port.ts";

export interface MaintenanceResult {
  dedupKeysDeleted: number;
  eventsDeleted: number;
  refusalsDeleted: number;
  vacuumed: boolean;
  /** The tables analyzed (PGlite: those changed enough since their last analyze). */
  analyzed: string[];
  /** The longest single vacuum or analyze statement, ms (0 when none ran). */
  longestStepMs: number;
  /** New page ranges of signals summarized for the time filters' index. */
  rangesSummarized: number;
}

/**
 * Whether `$1` changed enough since its last analyze to need another, by
 * autovacuum's defaults (autovacuum_analyze_threshold 50,
 * autovacuum_analyze_scale_factor 0.1); a table with rows and no statistics
 * always is. PGlite's activity counts (last_analyze, n_mod_since_analyze) are
 * lost at each restart, the statistics an analyze left are not: judged by the
 * counts alone, the first run after every start analyzed every table again
 * (638 ms for signals alone at 1 M rows), webhooks waiting behind each. What
 * changed between the last analyze and a restart is not counted; the next
 * tenth of growth is.
 */
const ANALYZE_DUE_SQL = `select
    coalesce(s.n_mod_since_analyze, 0) > 50 + 0.1 * greatest(c.reltuples, 0)
    or (s.last_analyze is null and c.reltuples <> 0
      and not exists (select 1 from pg_statistic where starelid = c.oid)) as due
  from pg_class c left join pg_stat_user_tables s on s.relid = c.oid
  where c.oid = $1::text::regclass`;

/**
 * The tables PGlite's maintenance vacuums: the ones updated or deleted from
 * all day (processing_errors loses only what turned 30 days old, left to the
 * next vacuum of the database).
 */
export const VACUUMED_TABLES = [
  "pipeline_jobs",
  "signal_dedup",
  "events",
  "positions",
  "decisions",
];

/**
 * The tables PGlite's maintenance only analyzes: append-only, nothing to
 * vacuum, but the read API's time filters are planned from their statistics.
 */
export const ANALYZED_ONLY_TABLES = ["signals"];

/**
 * Adds the page ranges of signals stored since the last run to the BRIN index
 * /signals' time filters read (migration 20261208020000): a range without a
 * summary is read by every such query. Autovacuum would summarize them only
 * after a fifth of the table is new, PGlite never.
 */
const SUMMARIZE_SIGNALS_SQL =
  "select brin_summarize_new_values('signals_received_at'::regclass)::integer as ranges";

export async function runMaintenance(
  db: Database,
  options: {
    eventsRetentionDays: number;
    refusalsRetentionDays: number;
    beforeStep?: () => Promise<void>;
  },
): Promise<MaintenanceResult> {
  // An hour of slack: a key that expired is already dead; this only frees space.
  const dedupKeysDeleted = await deleted(
    db,
    "delete from signal_dedup where expires_at < now() - interval '1 hour'",
  );
  const eventsDeleted = await deleted(
    db,
    "delete from events where created_at < now() - make_interval(days => $1::integer)",
    [options.eventsRetentionDays],
  );
  const refusalsDeleted = await deleted(
    db,
    `delete from processing_errors
     where stage = 'ingest' and created_at < now() - make_interval(days => $1::integer)`,
    [options.refusalsRetentionDays],
  );
  let vacuumed = false;
  const analyzed: string[] = [];
  let longestStepMs = 0;
  if (db.driver === "pglite") {
    // The session's own changes reach pg_stat_user_tables only once it has been idle a second.
    await db.query("select pg_stat_force_next_flush()");
    const tables = [...VACUUMED_TABLES, ...ANALYZED_ONLY_TABLES];
    for (const table of tables) {
      const steps = ANALYZED_ONLY_TABLES.includes(table) ? ["analyze"] : ["vacuum", "analyze"];
      for (const step of steps) {
        if (step === "analyze") {
          const [{ due }] = await db.query<{ due: boolean }>(ANALYZE_DUE_SQL, [table]);
          if (!due) continue;
          analyzed.push(table);
        }
        await options.beforeStep?.();
        const started = performance.now();
        await db.exec(`${step} ${table}`);
        longestStepMs = Math.max(longestStepMs, performance.now() - started);
      }
    }
    vacuumed = true;
    await options.beforeStep?.();
  }
  const started = performance.now();
  const [{ ranges }] = await db.query<{ ranges: number }>(SUMMARIZE_SIGNALS_SQL);
  if (db.driver === "pglite") longestStepMs = Math.max(longestStepMs, performance.now() - started);
  return {
    dedupKeysDeleted,
    eventsDeleted,
    refusalsDeleted,
    vacuumed,
    analyzed,
    longestStepMs: Math.round(longestStepMs),
    rangesSummarized: Number(ranges),
  };
}

/** Runs `deleteSql` (a DELETE without RETURNING) and returns how many rows it deleted. */
async function deleted(db: Database, deleteSql: string, params?: unknown[]): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `with gone as (${deleteSql} returning 1) select count(*)::integer as n from gone`,
    params,
  );
  return Number(row.n);
}
