/** Positions: the open book the pipeline decides against (changes are written by decisions.ts). */
import type { OpenPosition, PositionDirection } from "../core/book.ts";
import type { Queryable } from "./port.ts";

interface PositionRow {
  id: string;
  symbol: string;
  direction: PositionDirection;
  quantity: string | number;
  entry_price: string | number;
  entry_signal_id: string;
  /** The entry signal's `signal_time`. */
  entry_signal_time: Date;
  opened_at: Date;
  is_closed: boolean;
  exit_price: string | number | null;
  exit_signal_id: string | null;
  closed_at: Date | null;
  realized_pnl: string | number | null;
}

const COLUMNS = `o.id, o.symbol, o.direction, o.quantity, o.entry_price, o.entry_signal_id,
  o.opened_at, o.is_closed, o.exit_price, o.exit_signal_id, o.closed_at, o.realized_pnl,
  s.signal_time as entry_signal_time`;

export function openFromRow(row: PositionRow): OpenPosition {
  return {
    id: row.id,
    symbol: row.symbol,
    direction: row.direction,
    quantity: Number(row.quantity),
    entryPrice: Number(row.entry_price),
    openedAt: row.opened_at.toISOString(),
    entrySignalId: row.entry_signal_id,
    entrySignalTime: row.entry_signal_time.toISOString(),
  };
}

/**
 * The open book and its version (the transaction that last changed
 * `positions`, kept by a trigger), read in one statement so the two agree.
 */
export async function readOpenBook(
  db: Queryable,
): Promise<{ writer: string; open: OpenPosition[] }> {
  const rows = await db.query<PositionRow & { book_writer: string }>(
    `select v.writer::text as book_writer, p.*
     from book_version v
     left join (
       select ${COLUMNS}
       from positions o join signals s on s.id = o.entry_signal_id
       where not o.is_closed
     ) p on true
     where v.id = 1
     order by p.opened_at, p.id`,
  );
  if (rows.length === 0) throw new Error("book_version has no row: the migrations are incomplete");
  return {
    writer: rows[0].book_writer,
    open: rows.filter((r) => r.id !== null).map(openFromRow),
  };
}

/** The order `readOpenBook()` gives: by opening time, then id (as Postgres orders uuids). */
export function byOpening(a: OpenPosition, b: OpenPosition): number {
  const t = Date.parse(a.openedAt) - Date.parse(b.openedAt);
  return t !== 0 ? t : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * `sorted` (in `byOpening` order) with `added` placed where `byOpening` puts
 * them, by binary search: the same book as sorting the lot, without parsing
 * every opening time of a large book on every batch.
 */
export function insertByOpening(
  sorted: readonly OpenPosition[],
  added: readonly OpenPosition[],
): OpenPosition[] {
  const out = [...sorted];
  for (const position of added) {
    let low = 0;
    let high = out.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (byOpening(out[mid], position) <= 0) low = mid + 1;
      else high = mid;
    }
    out.splice(low, 0, position);
  }
  return out;
}
