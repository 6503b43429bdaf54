/**
 * The live-event outbox. Writers add events inside their own transaction;
 * readers page through them in (txid, id) order, only up to the oldest
 * transaction still running, so a late commit can never land behind a
 * reader's cursor. The cursor is `<txid>-<id>`, used as the SSE event id.
 * The queries order by `events.txid, events.id`, qualified: they select both
 * as text under the same names, and a bare `order by txid, id` sorted those
 * texts ("1000" before "998", event 10 before event 9), which skipped and
 * repeated events once the numbers grew a digit.
 */
import type { Queryable } from "./port.ts";

export type EventKind = "signal" | "decision" | "position" | "failure";

export interface NewEvent {
  kind: EventKind;
  symbol: string | null;
  payload: Record<string, unknown>;
}

export interface StoredEvent extends NewEvent {
  cursor: string;
  createdAt: string;
}

export async function insertEvents(tx: Queryable, events: readonly NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.query(
    `insert into events (kind, symbol, payload)
     select kind, symbol, payload
     from jsonb_to_recordset($1::text::jsonb) as x(n integer, kind text, symbol text, payload jsonb)
     order by n`,
    [JSON.stringify(events.map((e, n) => ({ n, ...e })))],
  );
}

/**
 * The txid below which every transaction has ended, for this database:
 * pg_snapshot_xmin, but passing over transactions of sessions in other
 * databases of the server, which cannot write these events. xids are
 * server-wide, so an unrelated application's long write transaction (or an
 * idle-in-transaction session elsewhere) otherwise held every live event
 * back for as long as it stayed open. A session's `backend_xid` is the
 * 32-bit form of the xid8 in the snapshot. One of this database's own
 * transactions left open still holds events back: see docs/operations.md.
 */
const EVENTS_BOUND = `(
  with snap as (select pg_current_snapshot() as s),
  elsewhere as (
    select backend_xid::text::numeric as xid from pg_stat_activity
    where backend_xid is not null and datname is distinct from current_database()
  )
  select coalesce(
    (select min(x) from snap, pg_snapshot_xip(snap.s) as x
     where (x::text::numeric % 4294967296) not in (select xid from elsewhere)),
    (select pg_snapshot_xmax(s) from snap)
  )
)`;

/** Events after the cursor ($1 txid, $2 id) that every running transaction has passed, $3 at most. */
export const READ_EVENTS_SQL =
  `select txid::text as txid, id::text as id, kind, symbol, payload, created_at from events
   where (events.txid, events.id) > ($1::text::xid8, $2::bigint)
     and events.txid < ${EVENTS_BOUND}
   order by events.txid, events.id
   limit $3::integer`;

/** The newest event readEvents could deliver now. */
export const LATEST_CURSOR_SQL = `select txid::text as txid, id::text as id from events
   where events.txid < ${EVENTS_BOUND}
   order by events.txid desc, events.id desc limit 1`;

/** A cursor before every event. */
export const START = "0-0";

/** Largest values of the cursor's columns: txid is xid8 (unsigned 64-bit), id a bigint. */
const MAX_TXID = 2n ** 64n - 1n;
const MAX_ID = 2n ** 63n - 1n;

/**
 * `<txid>-<id>` with both parts in their columns' range, or null. Past it, a
 * bigint id failed every read and an xid8 txid saturated, following nothing.
 */
export function parseCursor(value: string | null | undefined): { txid: string; id: string } | null {
  const m = /^(\d{1,20})-(\d{1,20})$/.exec(value ?? "");
  if (!m || BigInt(m[1]) > MAX_TXID || BigInt(m[2]) > MAX_ID) return null;
  return { txid: m[1], id: m[2] };
}

/**
 * Whether `cursor` could have come from this database: its transaction has
 * begun. One that has not would have readEvents deliver nothing until txids
 * reach it.
 */
export async function cursorIssued(db: Queryable, cursor: string): Promise<boolean> {
  const c = parseCursor(cursor);
  if (c === null) return false;
  const [row] = await db.query<{ issued: boolean }>(
    `select $1::text::xid8 < pg_snapshot_xmax(pg_current_snapshot()) as issued`,
    [c.txid],
  );
  return row.issued;
}

/** Events after `cursor` that every running transaction of this database has already passed. */
export async function readEvents(
  db: Queryable,
  cursor: string,
  limit = 500,
): Promise<StoredEvent[]> {
  const c = parseCursor(cursor) ?? parseCursor(START)!;
  const rows = await db.query<
    {
      txid: string;
      id: string;
      kind: EventKind;
      symbol: string | null;
      payload: Record<string, unknown>;
      created_at: Date;
    }
  >(
    READ_EVENTS_SQL,
    [c.txid, c.id, limit],
  );
  return rows.map((r) => ({
    cursor: `${r.txid}-${r.id}`,
    kind: r.kind,
    symbol: r.symbol,
    payload: r.payload,
    createdAt: r.created_at.toISOString(),
  }));
}

/**
 * Where a client that wants only new events starts: just past the newest event
 * readEvents could deliver now. Not the newest committed one: a transaction
 * still running may hold an older txid, and its events would land behind that
 * cursor when it commits, never delivered. Events committed past this bound
 * reach the client as new: a few it may have seen in the history, none skipped.
 */
export async function latestCursor(db: Queryable): Promise<string> {
  const [row] = await db.query<{ txid: string | null; id: string | null }>(
    LATEST_CURSOR_SQL,
  );
  return row?.txid ? `${row.txid}-${row.id}` : START;
}
