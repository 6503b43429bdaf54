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
  opened_at: Date;
  is_closed: boolean;
  exit_price: string | number | null;
  exit_signal_id: string | null;
  closed_at: Date | null;
  realized_pnl: string | number | null;
}

const COLUMNS =
  `id, symbol, direction, quantity, entry_price, entry_signal_id, opened_at, is_closed,
  exit_price, exit_signal_id, closed_at, realized_pnl`;

export function openFromRow(row: PositionRow): OpenPosition {
  return {
    id: row.id,
    symbol: row.symbol,
    direction: row.direction,
    quantity: Number(row.quantity),
    entryPrice: Number(row.entry_price),
    openedAt: row.opened_at.toISOString(),
    entrySignalId: row.entry_signal_id,
  };
}

export async function listOpenPositions(db: Queryable): Promise<OpenPosition[]> {
  const rows = await db.query<PositionRow>(
    `select ${COLUMNS} from positions where not is_closed order by opened_at, id`,
  );
  return rows.map(openFromRow);
}
