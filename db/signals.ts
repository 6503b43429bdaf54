/**
 * Signal storage: the durable ingest (dedup claim, signal, pipeline job and
 * live event, all in one transaction) and the reads the API needs.
 */
import { redactText } from "../core/payload.ts";
import type { ReceivedSignal, Signal } from "../core/signal.ts";
import type { Database, Queryable } from "./port.ts";
import { jsonKeys } from "./sql.ts";

export interface SignalRecord {
  id: string;
  receivedAt: Date;
  signal: Signal;
  dedupKey: string;
  /** Keep the dedup key at least until then (end of a signed timestamp's replay window). */
  dedupUntil: Date | null;
  /** The body as received, secret removed, safe for jsonb. */
  rawPayload: unknown;
  authMethod: string;
  clientIp: string | null;
  correlationId: string;
}

export type IngestOutcome =
  | { status: "accepted"; signalId: string }
  | { status: "duplicate"; signalId: string };

export const JOBS_CHANNEL = "optionstrat_jobs";
// Any constant; every instance must use the same one.
const INGEST_ORDER_LOCK = 727_003;
export const EVENTS_CHANNEL = "optionstrat_events";
const MAX_DUPLICATE_PAYLOAD = 8 * 1024;

/**
 * Stores a batch of signals and says, per record, whether it was accepted or
 * duplicates one already inside the dedup window (the database's clock
 * decides the window, so all instances agree). Repeats within the batch
 * resolve to the first of them.
 *
 * The write is one statement, so one round trip and its own transaction:
 * dedup claim, signals, jobs, live events and NOTIFY commit together or not
 * at all. It first takes the ingest order lock (held to the commit), so on
 * every instance signals draw their sequence numbers in commit order: a
 * worker that sees job n has seen every job before it, and a close and an
 * open of one symbol are never decided out of order (the group commit keeps
 * a symbol's records out of two flushes at once, compose.ts). Duplicates are recorded
 * after the commit (their originals are committed by then).
 */
export async function insertSignals(
  db: Database,
  records: readonly SignalRecord[],
  dedupTtlSeconds: number,
): Promise<IngestOutcome[]> {
  // One candidate per key, in arrival order; keys claimed in sorted order so
  // concurrent batches lock them in the same order and cannot deadlock.
  const firstByKey = new Map<string, SignalRecord>();
  for (const r of records) if (!firstByKey.has(r.dedupKey)) firstByKey.set(r.dedupKey, r);
  const candidates = [...firstByKey.values()];

  const claimed = await db.query<{ dedup_key: string; signal_id: string }>(
    `with input as (
       select * from jsonb_to_recordset($1::text::jsonb) as x(
         ord integer, id uuid, received_at timestamptz, source text, symbol text, exchange text,
         direction text, action text, timeframe text, signal_time timestamptz, price numeric,
         metadata jsonb, alert_id text, dedup_key text, dedup_until timestamptz, raw_payload jsonb,
         auth_method text, client_ip text, correlation_id text)
     ), order_lock as materialized (
       select pg_advisory_xact_lock($3::bigint)
     ), claimed as (
       insert into signal_dedup (dedup_key, signal_id, expires_at)
       select i.dedup_key, i.id,
         greatest(now() + make_interval(secs => $2::double precision), i.dedup_until)
       from input i, order_lock
       order by i.dedup_key
       on conflict (dedup_key) do update
         set signal_id = excluded.signal_id, expires_at = excluded.expires_at
         where signal_dedup.expires_at <= now()
       returning dedup_key, signal_id
     ), inserted as (
       insert into signals (id, received_at, source, symbol, exchange, direction, action,
         timeframe, signal_time, price, metadata, alert_id, dedup_key, raw_payload, auth_method,
         client_ip, correlation_id)
       select i.id, i.received_at, i.source, i.symbol, i.exchange, i.direction, i.action,
         i.timeframe, i.signal_time, i.price, i.metadata, i.alert_id, i.dedup_key, i.raw_payload,
         i.auth_method, i.client_ip, i.correlation_id
       from input i join claimed c on c.signal_id = i.id
       order by i.ord
       returning id, seq, symbol, direction, action, timeframe, price, source, signal_time,
         received_at, correlation_id, metadata
     ), jobs as (
       insert into pipeline_jobs (signal_id, symbol)
       select id, symbol from inserted order by seq
     ), live as (
       insert into events (kind, symbol, payload)
       select 'signal', symbol, jsonb_build_object(
         'id', id, 'seq', seq, 'symbol', symbol, 'direction', direction, 'action', action,
         'timeframe', timeframe, 'price', price, 'source', source, 'signal_time', signal_time,
         'received_at', received_at, 'correlation_id', correlation_id, 'metadata', metadata)
       from inserted order by seq
     ), notified as (
       select pg_notify($4::text, ''), pg_notify($5::text, '')
       from (select 1 from inserted limit 1) any_inserted
     )
     -- notified is read in the select list: an unreferenced plain CTE is skipped, and a
     -- left join that uses none of its columns may be removed by the planner.
     select c.dedup_key, c.signal_id, (select count(*) from notified) as notified
     from claimed c`,
    [
      JSON.stringify(candidates.map((r, ord) => ({
        ord,
        id: r.id,
        received_at: r.receivedAt.toISOString(),
        source: r.signal.source,
        symbol: r.signal.symbol,
        exchange: r.signal.exchange,
        direction: r.signal.direction,
        action: r.signal.action,
        timeframe: r.signal.timeframe,
        signal_time: r.signal.timestamp,
        price: r.signal.price,
        metadata: r.signal.metadata,
        alert_id: r.signal.alertId,
        dedup_key: r.dedupKey,
        dedup_until: r.dedupUntil?.toISOString() ?? null,
        raw_payload: r.rawPayload,
        auth_method: r.authMethod,
        client_ip: r.clientIp,
        correlation_id: r.correlationId,
      }))),
      dedupTtlSeconds,
      INGEST_ORDER_LOCK,
      JOBS_CHANNEL,
      EVENTS_CHANNEL,
    ],
  );

  const owner = new Map<string, string>(claimed.map((row) => [row.dedup_key, row.signal_id]));
  const duplicates = records.filter((r) => owner.get(r.dedupKey) !== r.id);
  if (duplicates.length > 0) {
    for (const [key, signalId] of await recordDuplicates(db, duplicates)) owner.set(key, signalId);
  }
  return records.map((r): IngestOutcome => {
    const signalId = owner.get(r.dedupKey)!;
    return signalId === r.id ? { status: "accepted", signalId } : { status: "duplicate", signalId };
  });
}

/**
 * A duplicate delivery is worth seeing (retries, double alerts), so each is
 * recorded against the signal that owns its key; returns those owners by key.
 */
async function recordDuplicates(
  db: Queryable,
  duplicates: readonly SignalRecord[],
): Promise<Map<string, string>> {
  const rows = await db.query<{ dedup_key: string; signal_id: string }>(
    RECORD_DUPLICATES_SQL,
    [JSON.stringify(duplicates.map((r, n) => ({
      n,
      dedup_key: r.dedupKey,
      correlation_id: r.correlationId,
      client_ip: r.clientIp,
      // Truncated whole characters only: a cut surrogate pair would fail the insert.
      payload: redactText(JSON.stringify(r.rawPayload), MAX_DUPLICATE_PAYLOAD),
      details: { dedup_key: r.dedupKey, auth_method: r.authMethod },
    })))],
  );
  return new Map(rows.map((r) => [r.dedup_key, r.signal_id]));
}

/** Records duplicate deliveries against the signals that own their keys; returns the owners. */
export const RECORD_DUPLICATES_SQL = `with dup as (
     select x.*, d.signal_id from jsonb_to_recordset($1::text::jsonb) as x(n integer,
       dedup_key text, correlation_id text, client_ip text, payload text, details jsonb)
     join signal_dedup d on d.dedup_key = x.dedup_key
     where d.dedup_key = any (${jsonKeys("$1", "text", "dedup_key")}) -- by index: db/sql.ts
   ), recorded as (
     insert into processing_errors
       (signal_id, correlation_id, stage, code, message, http_status, client_ip, payload, details)
     select signal_id, correlation_id, 'ingest', 'DUPLICATE',
       'Duplicate delivery within the dedup window; answered with the original signal', 200,
       client_ip, payload, details
     from dup order by n
   )
   select distinct dedup_key, signal_id from dup`;

/** The columns of a signal the pipeline reads, for queries that join `signals s`. */
export const SIGNAL_COLUMNS = `s.id, s.received_at, s.source, s.symbol, s.exchange, s.direction,
  s.action, s.timeframe, s.signal_time, s.price, s.metadata, s.alert_id`;

export interface SignalRow {
  id: string;
  received_at: Date;
  source: string;
  symbol: string;
  exchange: string | null;
  direction: Signal["direction"];
  action: Signal["action"];
  timeframe: string;
  signal_time: Date;
  price: string | number | null;
  metadata: Record<string, unknown>;
  alert_id: string | null;
}

/** A stored signal in its canonical form, as the pipeline decides on it. */
export function receivedSignalFromRow(row: SignalRow): ReceivedSignal {
  return {
    id: row.id,
    receivedAt: row.received_at.toISOString(),
    source: row.source,
    symbol: row.symbol,
    exchange: row.exchange,
    direction: row.direction,
    action: row.action,
    timeframe: row.timeframe,
    timestamp: row.signal_time.toISOString(),
    price: row.price === null ? null : Number(row.price),
    metadata: row.metadata,
    alertId: row.alert_id,
  };
}
