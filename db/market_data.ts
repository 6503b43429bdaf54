/** Market context snapshots and GEX levels: written when pushed or fetched, read per decision. */
import type { GexProfile } from "../core/gex.ts";
import type { GexLevels, MarketContext, Trend } from "../core/market_data.ts";
import type { Queryable } from "./port.ts";

export interface StoredContext {
  id: string;
  context: MarketContext;
}

export interface StoredGex {
  id: string;
  levels: GexLevels;
}

export async function insertContextSnapshot(db: Queryable, c: MarketContext): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into context_snapshots (symbol, spot, vix, trend, as_of, source)
     values ($1::text, $2::numeric, $3::numeric, $4::text, $5::timestamptz, $6::text)
     returning id`,
    [c.symbol, c.spot, c.vix, c.trend, c.asOf, c.source],
  );
  return row.id;
}

interface ContextRow {
  id: string;
  symbol: string;
  spot: string | number;
  vix: string | number | null;
  trend: Trend | null;
  as_of: Date;
  source: string;
}

export async function latestContext(db: Queryable, symbol: string): Promise<StoredContext | null> {
  const [row] = await db.query<ContextRow>(
    `select id, symbol, spot, vix, trend, as_of, source from context_snapshots
     where symbol = $1::text order by as_of desc, created_at desc limit 1`,
    [symbol],
  );
  return row ? { id: row.id, context: contextFromRow(row) } : null;
}

function contextFromRow(row: ContextRow): MarketContext {
  return {
    symbol: row.symbol,
    spot: Number(row.spot),
    vix: row.vix === null ? null : Number(row.vix),
    trend: row.trend,
    asOf: row.as_of.toISOString(),
    source: row.source,
  };
}

export async function insertGexSignal(
  db: Queryable,
  profile: GexProfile,
  options: { source: string; contracts: number },
): Promise<string> {
  const l = profile.levels;
  const [row] = await db.query<{ id: string }>(
    `insert into gex_signals (symbol, spot, net_gex, zero_gamma, call_wall, put_wall, regime, as_of,
       source, contracts, strikes)
     values ($1::text, $2::numeric, $3::float8, $4::float8, $5::numeric, $6::numeric, $7::text,
       $8::timestamptz, $9::text, $10::integer, $11::text::jsonb)
     returning id`,
    [
      l.symbol,
      l.spot,
      l.netGex,
      l.zeroGamma,
      l.callWall,
      l.putWall,
      l.regime,
      l.asOf,
      options.source,
      options.contracts,
      JSON.stringify(profile.strikes),
    ],
  );
  return row.id;
}

interface GexRow {
  id: string;
  symbol: string;
  spot: string | number;
  net_gex: number;
  zero_gamma: number | null;
  call_wall: string | number | null;
  put_wall: string | number | null;
  regime: "POSITIVE" | "NEGATIVE";
  as_of: Date;
}

export async function latestGex(db: Queryable, symbol: string): Promise<StoredGex | null> {
  const [row] = await db.query<GexRow>(
    `select id, symbol, spot, net_gex, zero_gamma, call_wall, put_wall, regime, as_of
     from gex_signals where symbol = $1::text order by as_of desc, created_at desc limit 1`,
    [symbol],
  );
  if (!row) return null;
  return {
    id: row.id,
    levels: {
      symbol: row.symbol,
      spot: Number(row.spot),
      netGex: Number(row.net_gex),
      zeroGamma: row.zero_gamma === null ? null : Number(row.zero_gamma),
      callWall: row.call_wall === null ? null : Number(row.call_wall),
      putWall: row.put_wall === null ? null : Number(row.put_wall),
      regime: row.regime,
      asOf: row.as_of.toISOString(),
    },
  };
}

/**
 * The newest stored time of each symbol, for /health: a skip scan over the
 * (symbol, as_of desc) index, one probe per symbol, recursively. `max(as_of)`
 * and `count(distinct symbol)` over the tables read every snapshot ever
 * stored (neither matches that index) on every health check, and the tables
 * are never pruned (tests/query_plans_test.ts).
 */
function latestPerSymbol(table: "context_snapshots" | "gex_signals", name: string): string {
  return `${name} as (
    (select symbol, as_of from ${table} order by symbol, as_of desc limit 1)
    union all
    select n.symbol, n.as_of from ${name} l cross join lateral (
      select symbol, as_of from ${table} where symbol > l.symbol
      order by symbol, as_of desc limit 1
    ) n
  )`;
}

/** The newest stored context and GEX time of each symbol. */
export const MARKET_DATA_FRESHNESS_SQL = `with recursive
  ${latestPerSymbol("context_snapshots", "context_latest")},
  ${latestPerSymbol("gex_signals", "gex_latest")}
  select 'context' as kind, symbol, as_of from context_latest
  union all
  select 'gex' as kind, symbol, as_of from gex_latest`;

export interface SymbolAsOf {
  symbol: string;
  asOf: Date;
}

/** The newest context and GEX time of each symbol, for /health. */
export async function marketDataFreshness(
  db: Queryable,
): Promise<{ context: SymbolAsOf[]; gex: SymbolAsOf[] }> {
  const rows = await db.query<{ kind: "context" | "gex"; symbol: string; as_of: Date }>(
    MARKET_DATA_FRESHNESS_SQL,
  );
  const of = (kind: "context" | "gex") =>
    rows.filter((r) => r.kind === kind).map((r) => ({ symbol: r.symbol, asOf: r.as_of }));
  return { context: of("context"), gex: of("gex") };
}
