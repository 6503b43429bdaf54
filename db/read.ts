/**
 * The operator read API's queries: newest first, paged by `seq` (a cursor
 * that never skips or repeats a row), filterable by symbol and time. Closed
 * positions are newest closed first; their cursor is a `seq` too.
 */
import type { Queryable } from "./port.ts";

export interface PageQuery {
  limit: number;
  /** Return rows with seq below this (the previous page's `next_cursor`). */
  cursor?: number;
  symbol?: string;
  since?: string;
  until?: string;
}

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  next_cursor: string | null;
}

type Row = Record<string, unknown>;

interface Columns {
  /** The paging column, unique and increasing with insertion. */
  seq: string;
  symbol?: string;
  time: string;
}

/** A list query being built: `where` clauses and their parameters. */
class Filter {
  readonly where: string[] = [];
  readonly params: unknown[] = [];
  /** A time window is set: its best plan depends on how many rows it holds. */
  timed = false;

  add(sql: string, value: unknown): void {
    this.params.push(value);
    this.where.push(sql.replace("?", `$${this.params.length}`));
  }

  /** Cursor, symbol and time window, the filters every list shares. */
  static common(q: PageQuery, c: Columns): Filter {
    const f = new Filter();
    if (q.cursor !== undefined) f.add(`${c.seq} < ?::bigint`, q.cursor);
    if (q.symbol !== undefined && c.symbol) f.add(`${c.symbol} = ?::text`, q.symbol);
    if (q.since !== undefined) f.add(`${c.time} >= ?::timestamptz`, q.since);
    if (q.until !== undefined) f.add(`${c.time} < ?::timestamptz`, q.until);
    f.timed = q.since !== undefined || q.until !== undefined;
    return f;
  }
}

async function page(
  db: Queryable,
  select: string,
  f: Filter,
  orderBy: string,
  limit: number,
): Promise<Page<Row>> {
  const params = [...f.params, limit + 1];
  const rows = await db.query<Row>(
    `${select} ${f.where.length ? `where ${f.where.join(" and ")}` : ""}
     order by ${orderBy} limit $${params.length}::integer`,
    params,
    // A plan kept for one window (a prepared statement's generic plan assumes a third of
    // the table) walks the whole table for a window that holds nothing.
    { replan: f.timed },
  );
  const items = rows.slice(0, limit).map(plain);
  return {
    items,
    next_cursor: rows.length > limit ? String(items[items.length - 1].seq) : null,
  };
}

/** Numbers as numbers (drivers hand bigint and numeric back as strings) and times as ISO. */
const NUMERIC = new Set([
  "seq",
  "price",
  "quantity",
  "notional",
  "size_multiplier",
  "entry_price",
  "exit_price",
  "realized_pnl",
  "mark",
]);
function plain(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = v instanceof Date ? v.toISOString() : NUMERIC.has(k) && v !== null ? Number(v) : v;
  }
  return out;
}

const SIGNAL_COLUMNS = `s.id, s.seq, s.received_at, s.source, s.symbol, s.exchange, s.direction,
  s.action, s.timeframe, s.signal_time, s.price, s.metadata, s.alert_id, s.auth_method,
  s.correlation_id`;

export function listSignals(db: Queryable, q: PageQuery): Promise<Page<Row>> {
  const f = Filter.common(q, { seq: "s.seq", symbol: "s.symbol", time: "s.received_at" });
  return page(
    db,
    `select ${SIGNAL_COLUMNS}, j.status as job_status, d.outcome, d.reason_code,
       d.message as decision_message
     from signals s
     left join pipeline_jobs j on j.signal_id = s.id
     left join decisions d on d.signal_id = s.id`,
    f,
    "s.seq desc",
    q.limit,
  );
}

export interface SignalDetail {
  signal: Row;
  job: Row | null;
  decision: Row | null;
  positions: Row[];
  errors: Row[];
}

/** The positions signal $1 opened or closed, through their signal indexes. */
export const SIGNAL_POSITIONS_SQL =
  `select id, seq, symbol, direction, quantity, entry_price, opened_at, is_closed, exit_price,
     closed_at, realized_pnl,
     case when entry_signal_id = $1::uuid then 'opened' else 'closed' end as change
   from positions where entry_signal_id = $1::uuid or exit_signal_id = $1::uuid
   order by seq`;

export async function getSignalDetail(db: Queryable, id: string): Promise<SignalDetail | null> {
  const [signal] = await db.query<Row>(
    `select ${SIGNAL_COLUMNS}, s.dedup_key, s.raw_payload, s.client_ip from signals s where s.id = $1::uuid`,
    [id],
  );
  if (!signal) return null;
  const [job] = await db.query<Row>(
    `select id::text as id, status, attempts, run_at, locked_by, last_error, created_at, finished_at
     from pipeline_jobs where signal_id = $1::uuid`,
    [id],
  );
  const [decision] = await db.query<Row>(
    `select id, seq, outcome, reason_code, message, price, quantity, notional, size_multiplier,
       degraded, notes, context_snapshot_id, gex_signal_id, timings, created_at
     from decisions where signal_id = $1::uuid`,
    [id],
  );
  const positions = await db.query<Row>(SIGNAL_POSITIONS_SQL, [id]);
  const errors = await db.query<Row>(
    `select id::text as id, stage, code, message, http_status, correlation_id, created_at
     from processing_errors where signal_id = $1::uuid order by processing_errors.id`,
    [id],
  );
  return {
    signal: plain(signal),
    job: job ? plain(job) : null,
    decision: decision ? plain(decision) : null,
    positions: positions.map(plain),
    errors: errors.map(plain),
  };
}

export function listDecisions(
  db: Queryable,
  q: PageQuery & { outcome?: string; reason?: string },
): Promise<Page<Row>> {
  const f = Filter.common(q, { seq: "d.seq", symbol: "s.symbol", time: "d.created_at" });
  if (q.outcome !== undefined) f.add("d.outcome = ?::text", q.outcome);
  if (q.reason !== undefined) f.add("d.reason_code = ?::text", q.reason);
  return page(
    db,
    `select d.id, d.seq, d.signal_id, s.symbol, s.direction, s.action, s.timeframe, d.outcome,
       d.reason_code, d.message, d.price, d.quantity, d.notional, d.degraded, d.notes, d.timings,
       d.created_at, s.received_at
     from decisions d join signals s on s.id = d.signal_id`,
    f,
    "d.seq desc",
    q.limit,
  );
}

/**
 * Null when a closed list's cursor names no closed position (one from another list, or
 * forged): its place in closing order is unknown, and paging on would answer an empty last page.
 */
export async function listPositions(
  db: Queryable,
  q: PageQuery & { status?: "open" | "closed" },
): Promise<Page<Row> | null> {
  const closed = q.status === "closed";
  if (closed && q.cursor !== undefined) {
    const [known] = await db.query(
      "select 1 as known from positions where seq = $1::bigint and is_closed",
      [q.cursor],
    );
    if (!known) return null;
  }
  const time = closed ? "p.closed_at" : "p.opened_at";
  const f = Filter.common(closed ? { ...q, cursor: undefined } : q, {
    seq: "p.seq",
    symbol: "p.symbol",
    time,
  });
  if (q.status !== undefined) f.where.push(closed ? "p.is_closed" : "not p.is_closed");
  // Closed ones by when they closed (seq opening order would leave a long-held position that
  // just closed out of the newest pages); the cursor stays the last row's seq, whose
  // closed_at, which never changes, places the next page.
  if (closed && q.cursor !== undefined) {
    f.add(
      "(p.closed_at, p.seq) < (select closed_at, seq from positions where seq = ?::bigint)",
      q.cursor,
    );
  }
  return await page(
    db,
    `select p.id, p.seq, p.symbol, p.direction, p.quantity, p.entry_price, p.entry_signal_id,
       p.opened_at, p.is_closed, p.exit_price, p.exit_signal_id, p.closed_at, p.realized_pnl,
       c.spot as mark, c.as_of as mark_as_of
     from positions p
     left join lateral (
       select spot, as_of from context_snapshots cs
       where cs.symbol = p.symbol and not p.is_closed
       order by as_of desc, created_at desc limit 1
     ) c on true`,
    f,
    closed ? "p.closed_at desc, p.seq desc" : "p.seq desc",
    q.limit,
  );
}

/**
 * Errors newest first. An error's symbol is its signal's (duplicates, pipeline
 * failures): a refused webhook has no signal, so `symbol` never matches it.
 */
export function listErrors(db: Queryable, q: PageQuery & { code?: string }): Promise<Page<Row>> {
  const f = Filter.common(q, { seq: "e.id", symbol: "s.symbol", time: "e.created_at" });
  if (q.code !== undefined) f.add("e.code = ?::text", q.code);
  return page(
    db,
    `select e.id as seq, e.signal_id, s.symbol, e.correlation_id, e.stage, e.code, e.message,
       e.http_status, e.client_ip, e.payload, e.details, e.created_at
     from processing_errors e left join signals s on s.id = e.signal_id`,
    f,
    "e.id desc",
    q.limit,
  );
}
