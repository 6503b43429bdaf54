/**
 * The option chain model behind the GEX computation, its zod schema (the
 * body of `POST /gex/chain`) and `parseCboeChain()`, which reads Cboe's
 * delayed-quotes JSON into it. Total: any input gives a chain or an error
 * message, never a throw.
 *
 * The schema bounds are physical sanity limits, far above real quotes, chosen
 * so that every GEX sum over a valid chain stays a finite number.
 */
import { z } from "zod";
import { marketTime } from "./context.ts";
import { zonedTimeToUtc } from "./time_zone.ts";

/** Largest spot or strike accepted (BRK.A trades near 10^6). */
export const MAX_PRICE = 1e7;
/** Largest implied volatility accepted, as a fraction (100 = 10,000%). */
export const MAX_IV = 100;
/** Largest provider gamma per share accepted. */
export const MAX_GAMMA = 1e6;
/** Largest open interest accepted for one contract. */
export const MAX_OPEN_INTEREST = 1e9;
/** Most contracts in one chain (a full SPX chain is about this size). */
export const MAX_CONTRACTS = 20_000;

/** Uppercase ticker: `SPY`, `SPX`, `BRK.B`. */
const TICKER = /^[A-Z][A-Z0-9.]{0,15}$/;

export const OptionContractSchema = z.object({
  type: z.enum(["CALL", "PUT"]),
  strike: z.number().positive().max(MAX_PRICE),
  expiry: z.iso.date(),
  /** Implied volatility as a fraction (0.15 = 15%); null when the provider has none. */
  iv: z.number().min(0).max(MAX_IV).nullable().optional(),
  openInterest: z.number().int().min(0).max(MAX_OPEN_INTEREST),
  /** The provider's per-share gamma; used instead of Black-Scholes when present. */
  gamma: z.number().min(0).max(MAX_GAMMA).nullable().optional(),
  /**
   * "AM": settled at the open of the expiry date (monthly SPX, NDX, RUT);
   * "PM" (the default): alive until that day's close.
   */
  settlement: z.enum(["AM", "PM"]).optional(),
});
export type OptionContract = z.infer<typeof OptionContractSchema>;

export const OptionChainSchema = z.object({
  symbol: z.string().regex(TICKER),
  spot: z.number().positive().max(MAX_PRICE),
  /** When the quotes were taken; any ISO 8601 offset, stored as UTC. */
  asOf: marketTime().transform((s) => new Date(s).toISOString()),
  contracts: z.array(OptionContractSchema).max(MAX_CONTRACTS),
});
export type OptionChain = z.infer<typeof OptionChainSchema>;

export type CboeParseResult = { ok: true; chain: OptionChain } | { ok: false; error: string };

const OCC_SYMBOL = /^([A-Z]+)(\d{6})([CP])(\d{8})$/;
/**
 * Option roots settled at the open of their expiry date (their last trading
 * day is the one before). The same chain lists the PM-settled weeklies under
 * their own roots (SPXW, NDXP, RUTW), which stay PM; VIX weeklies (VIXW)
 * settle on Wednesday's opening quotation like the monthlies.
 */
export const AM_SETTLED_ROOTS: ReadonlySet<string> = new Set([
  "SPX",
  "NDX",
  "RUT",
  "DJX",
  "VIX",
  "VIXW",
]);
const CBOE_TIMESTAMP = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/;

type Fields = Record<string, unknown>;

/**
 * Reads Cboe's `delayed_quotes/options/{SYM}.json` body. Options whose OCC
 * symbol, strike, expiry or open interest does not parse are skipped; a
 * missing or invalid `iv` or `gamma` becomes null. Contracts of the AM-settled
 * roots are marked `settlement: "AM"`. When more than `MAX_CONTRACTS` remain,
 * zero open interest and already expired ones are dropped (they carry no GEX),
 * then the farthest expiries.
 */
export function parseCboeChain(json: unknown): CboeParseResult {
  try {
    return parseCboe(json);
  } catch {
    // Only a hostile object (a throwing getter or Proxy) gets here; JSON cannot.
    return fail("body could not be read as plain JSON");
  }
}

function parseCboe(json: unknown): CboeParseResult {
  if (!isObject(json)) return fail("body must be a JSON object");
  const data = json.data;
  if (!isObject(data)) return fail('field "data" must be an object');
  if (!Array.isArray(data.options)) return fail('field "data.options" must be an array');

  const symbol = normalizeSymbol(json.symbol) ?? normalizeSymbol(data.symbol);
  if (symbol === null) return fail('field "symbol" must be a ticker such as "SPY" or "_SPX"');
  const spot = [data.current_price, data.close].find(isPrice);
  if (spot === undefined) {
    return fail(`field "data.current_price" must be a positive number up to ${MAX_PRICE}`);
  }
  const asOf = parseTimestamp(json.timestamp);
  if (asOf === null) {
    return fail('field "timestamp" must be "YYYY-MM-DD HH:MM:SS" in New York time');
  }

  let contracts = data.options.map(parseCboeOption).filter((c) => c !== null);
  if (contracts.length === 0) {
    return fail(
      `none of the ${data.options.length} options has a valid OCC symbol and open interest`,
    );
  }
  if (contracts.length > MAX_CONTRACTS) {
    // The timestamp's New York date: contracts expiring before it carry no GEX.
    contracts = trimContracts(contracts, (json.timestamp as string).trim().slice(0, 10));
  }

  const parsed = OptionChainSchema.safeParse({ symbol, spot, asOf, contracts });
  if (!parsed.success) return fail(parsed.error.issues[0]?.message ?? "invalid chain");
  return { ok: true, chain: parsed.data };
}

function parseCboeOption(raw: unknown): OptionContract | null {
  if (!isObject(raw) || typeof raw.option !== "string") return null;
  const match = OCC_SYMBOL.exec(raw.option);
  if (!match) return null;
  const [, root, yymmdd, callPut, strikeMilli] = match;
  const expiry = `20${yymmdd.slice(0, 2)}-${yymmdd.slice(2, 4)}-${yymmdd.slice(4, 6)}`;
  const strike = Number(strikeMilli) / 1000;
  const openInterest = raw.open_interest;
  if (!isRealDate(expiry) || !(strike > 0 && strike <= MAX_PRICE)) return null;
  if (typeof openInterest !== "number" || !(openInterest >= 0)) return null;
  if (!(openInterest <= MAX_OPEN_INTEREST)) return null;
  return {
    type: callPut === "C" ? "CALL" : "PUT",
    strike,
    expiry,
    iv: inRange(raw.iv, MAX_IV),
    openInterest: Math.round(openInterest),
    gamma: inRange(raw.gamma, MAX_GAMMA),
    ...(AM_SETTLED_ROOTS.has(root) ? { settlement: "AM" as const } : {}),
  };
}

function trimContracts(contracts: OptionContract[], today: string): OptionContract[] {
  const open = contracts.filter((c) => c.openInterest > 0 && c.expiry >= today);
  if (open.length <= MAX_CONTRACTS) return open;
  return open
    .map((c, i) => ({ c, i }))
    .sort((a, b) => (a.c.expiry < b.c.expiry ? -1 : a.c.expiry > b.c.expiry ? 1 : a.i - b.i))
    .slice(0, MAX_CONTRACTS)
    .sort((a, b) => a.i - b.i)
    .map(({ c }) => c);
}

/** `"_SPX"` -> `"SPX"`, `"spy"` -> `"SPY"`; null when it is not a ticker. */
function normalizeSymbol(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const symbol = value.trim().replace(/^_/, "").toUpperCase();
  return TICKER.test(symbol) ? symbol : null;
}

/** New York wall time `YYYY-MM-DD HH:MM:SS` -> ISO 8601 UTC; null when it is not a real time. */
function parseTimestamp(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const match = CBOE_TIMESTAMP.exec(value.trim());
  if (!match) return null;
  const [, date, hh, mm, ss] = match;
  const [hour, minute, second] = [Number(hh), Number(mm), Number(ss)];
  if (!isRealDate(date) || hour > 23 || minute > 59 || second > 59) return null;
  const instant = zonedTimeToUtc(date, hour * 60 + minute).getTime() + second * 1000;
  return Number.isFinite(instant) ? new Date(instant).toISOString() : null;
}

function isRealDate(date: string): boolean {
  const [year, month, day] = date.split("-").map(Number);
  const d = new Date(Date.UTC(year, month - 1, day));
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

function isPrice(value: unknown): value is number {
  return typeof value === "number" && value > 0 && value <= MAX_PRICE;
}

function inRange(value: unknown, max: number): number | null {
  return typeof value === "number" && value >= 0 && value <= max ? value : null;
}

function isObject(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(reason: string): CboeParseResult {
  return { ok: false, error: `Cannot parse Cboe chain: ${reason}` };
}
