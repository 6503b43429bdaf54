/** Positions: the open book the pipeline decides against, and the changes a decision makes. */
import type { ClosedPosition, OpenPosition, PositionDirection } from "../core/book.ts";
import type { PositionClose, PositionOpen } from "../core/decision.ts";
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

function closedFromRow(row: PositionRow): ClosedPosition {
  return {
    ...openFromRow(row),
    exitPrice: Number(row.exit_price),
    closedAt: row.closed_at!.toISOString(),
    exitSignalId: row.exit_signal_id!,
    realizedPnl: Number(row.realized_pnl),
  };
}

export async function listOpenPositions(db: Queryable): Promise<OpenPosition[]> {
  const rows = await db.query<PositionRow>(
    `select ${COLUMNS} from positions where not is_closed order by opened_at, id`,
  );
  return rows.map(openFromRow);
}

export async function closePositions(
  tx: Queryable,
  closes: readonly PositionClose[],
  exit: { signalId: string; at: Date },
): Promise<ClosedPosition[]> {
  const closed: ClosedPosition[] = [];
  for (const c of closes) {
    const rows = await tx.query<PositionRow>(
      `update positions set is_closed = true, exit_price = $2::numeric, exit_signal_id = $3::uuid,
         closed_at = $4::timestamptz, realized_pnl = $5::numeric, updated_at = now()
       where id = $1::uuid and not is_closed
       returning ${COLUMNS}`,
      [c.positionId, c.exitPrice, exit.signalId, exit.at.toISOString(), c.realizedPnl],
    );
    if (rows.length !== 1) throw new Error(`Cannot close position ${c.positionId}: it is not open`);
    closed.push(closedFromRow(rows[0]));
  }
  return closed;
}

export async function openPosition(
  tx: Queryable,
  open: PositionOpen,
  entry: { signalId: string; at: Date },
): Promise<OpenPosition> {
  const [row] = await tx.query<PositionRow>(
    `insert into positions (symbol, direction, quantity, entry_price, entry_signal_id, opened_at)
     values ($1::text, $2::text, $3::numeric, $4::numeric, $5::uuid, $6::timestamptz)
     returning ${COLUMNS}`,
    [
      open.symbol,
      open.direction,
      open.quantity,
      open.entryPrice,
      entry.signalId,
      entry.at.toISOString(),
    ],
  );
  return openFromRow(row);
}
