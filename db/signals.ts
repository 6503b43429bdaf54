/**
 * Signal storage: the durable ingest (dedup claim, signal, pipeline job and
 * live event, all in one transaction) and the reads the API needs.
 */
import { redactText } from "../core/payload.ts";
import type { ReceivedSignal, Signal } from "../core/signal.ts";
import type { Database, Queryable } from "./port.ts";

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
 * Stores a batch of signals in one transaction and says, per record, whether
 * it was accepted or duplicates one already inside the dedup window (the
 * database's clock decides the window, so all instances agree). Repeats
 * within the batch resolve to the first of them. Nothing is visible until
 * the commit; if it throws, nothing was written.
 */
export function insertSignals(
  db: Database,
  records: readonly SignalRecord[],
  dedupTtlSeconds: number,
): Promise<IngestOutcome[]> {
  // One candidate per key, in arrival order; keys claimed in sorted order so
  // concurrent batches lock them in the same order and cannot deadlock.
  const firstByKey = new Map<string, SignalRecord>();
  for (const r of records) if (!firstByKey.has(r.dedupKey)) firstByKey.set(r.dedupKey, r);
  const candidates = [...firstByKey.values()];
  const sortedKeys = [...firstByKey.keys()].sort();

  return db.transaction(async (tx) => {
    const claimed = await tx.query<{ dedup_key: string; signal_id: string }>(
      `insert into signal_dedup (dedup_key, signal_id, expires_at)
       select x.dedup_key, x.signal_id,
         greatest(now() + make_interval(secs => $2::double precision), x.dedup_until)
       from jsonb_to_recordset($1::text::jsonb) as x(dedup_key text, signal_id uuid,
         dedup_until timestamptz)
       on conflict (dedup_key) do update
         set signal_id = excluded.signal_id, expires_at = excluded.expires_at
         where signal_dedup.expires_at <= now()
       returning dedup_key, signal_id`,
      [
        JSON.stringify(sortedKeys.map((k) => {
          const r = firstByKey.get(k)!;
          return {
            dedup_key: k,
            signal_id: r.id,
            dedup_until: r.dedupUntil?.toISOString() ?? null,
          };
        })),
        dedupTtlSeconds,
      ],
    );
    const won = new Set(claimed.map((row) => row.dedup_key));
    const winners = candidates.filter((r) => won.has(r.dedupKey));
    if (winners.length > 0) {
      // Held from the first sequence number to the commit, so signals and jobs commit in
      // seq order on every instance: a worker that sees job n has seen every job before it,
      // and a close and an open of one symbol can never be decided out of order.
      await tx.query("select pg_advisory_xact_lock($1::bigint)", [INGEST_ORDER_LOCK]);
      await insertWinners(tx, winners);
    }

    const owner = new Map<string, string>(claimed.map((row) => [row.dedup_key, row.signal_id]));
    const lost = sortedKeys.filter((k) => !won.has(k));
    if (lost.length > 0) {
      const rows = await tx.query<{ dedup_key: string; signal_id: string }>(
        `select dedup_key, signal_id from signal_dedup
         where dedup_key in (select jsonb_array_elements_text($1::text::jsonb))`,
        [JSON.stringify(lost)],
      );
      for (const row of rows) owner.set(row.dedup_key, row.signal_id);
    }

    const outcomes = records.map((r): IngestOutcome => {
      const signalId = owner.get(r.dedupKey)!;
      return signalId === r.id
        ? { status: "accepted", signalId }
        : { status: "duplicate", signalId };
    });
    const duplicates = records.filter((_, i) => outcomes[i].status === "duplicate");
    if (duplicates.length > 0) {
      await recordDuplicates(tx, duplicates, duplicates.map((r) => owner.get(r.dedupKey)!));
    }
    if (winners.length > 0) {
      await tx.query("select pg_notify($1::text, ''), pg_notify($2::text, '')", [
        JOBS_CHANNEL,
        EVENTS_CHANNEL,
      ]);
    }
    return outcomes;
  });
}

/** Signals, their jobs and their live events; identity order follows arrival order. */
async function insertWinners(tx: Queryable, winners: readonly SignalRecord[]): Promise<void> {
  const rows = winners.map((r, ord) => ({
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
    raw_payload: r.rawPayload,
    auth_method: r.authMethod,
    client_ip: r.clientIp,
    correlation_id: r.correlationId,
  }));
  await tx.query(
    `with input as (
       select * from jsonb_to_recordset($1::text::jsonb) as x(
         ord integer, id uuid, received_at timestamptz, source text, symbol text, exchange text,
         direction text, action text, timeframe text, signal_time timestamptz, price numeric,
         metadata jsonb, alert_id text, dedup_key text, raw_payload jsonb, auth_method text,
         client_ip text, correlation_id text)
     ), inserted as (
       insert into signals (id, received_at, source, symbol, exchange, direction, action,
         timeframe, signal_time, price, metadata, alert_id, dedup_key, raw_payload, auth_method,
         client_ip, correlation_id)
       select id, received_at, source, symbol, exchange, direction, action, timeframe,
         signal_time, price, metadata, alert_id, dedup_key, raw_payload, auth_method, client_ip,
         correlation_id
       from input order by ord
       returning id, seq, symbol, direction, action, timeframe, price, source, signal_time,
         received_at, correlation_id, metadata
     ), jobs as (
       insert into pipeline_jobs (signal_id, symbol)
       select id, symbol from inserted order by seq
     )
     insert into events (kind, symbol, payload)
     select 'signal', symbol, jsonb_build_object(
       'id', id, 'seq', seq, 'symbol', symbol, 'direction', direction, 'action', action,
       'timeframe', timeframe, 'price', price, 'source', source, 'signal_time', signal_time,
       'received_at', received_at, 'correlation_id', correlation_id, 'metadata', metadata)
     from inserted order by seq`,
    [JSON.stringify(rows)],
  );
}

/** A duplicate delivery is worth seeing (retries, double alerts), so it is recorded. */
async function recordDuplicates(
  tx: Queryable,
  duplicates: readonly SignalRecord[],
  originals: readonly string[],
): Promise<void> {
  const rows = duplicates.map((r, i) => ({
    signal_id: originals[i],
    correlation_id: r.correlationId,
    client_ip: r.clientIp,
    // Truncated whole characters only: a cut surrogate pair would fail the batch.
    payload: redactText(JSON.stringify(r.rawPayload), MAX_DUPLICATE_PAYLOAD),
    details: { dedup_key: r.dedupKey, auth_method: r.authMethod },
  }));
  await tx.query(
    `insert into processing_errors
       (signal_id, correlation_id, stage, code, message, http_status, client_ip, payload, details)
     select signal_id, correlation_id, 'ingest', 'DUPLICATE',
       'Duplicate delivery within the dedup window; answered with the original signal', 200,
       client_ip, payload, details
     from jsonb_to_recordset($1::text::jsonb) as x(signal_id uuid, correlation_id text,
       client_ip text, payload text, details jsonb)`,
    [JSON.stringify(rows)],
  );
}

interface SignalRow {
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
export async function getReceivedSignal(db: Queryable, id: string): Promise<ReceivedSignal | null> {
  return (await getReceivedSignals(db, [id])).get(id) ?? null;
}

function receivedSignalFromRow(row: SignalRow): ReceivedSignal {
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

/** Several stored signals at once (a worker batch), by id. */
export async function getReceivedSignals(
  db: Queryable,
  ids: readonly string[],
): Promise<Map<string, ReceivedSignal>> {
  const rows = await db.query<SignalRow>(
    `select id, received_at, source, symbol, exchange, direction, action, timeframe, signal_time,
       price, metadata, alert_id
     from signals where id in (select jsonb_array_elements_text($1::text::jsonb)::uuid)`,
    [JSON.stringify(ids)],
  );
  return new Map(rows.map((row) => [row.id, receivedSignalFromRow(row)]));
}
