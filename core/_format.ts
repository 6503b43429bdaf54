/** Number and time formatting for decision messages. Private to `core/`. */
import { zonedParts } from "./time_zone.ts";

const USD = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

/** Dollars as "$1,234.56" ("-$12.00" when negative). */
export function money(n: number): string {
  return Number.isFinite(n) ? USD.format(n) : String(n);
}

/** A number rounded to at most 4 decimals, without trailing zeros. */
export function num(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 1e4) / 1e4) : String(n);
}

/** New York wall-clock time as "HH:MM ET". */
export function nyTime(at: Date): string {
  const { hour, minute } = zonedParts(at);
  return `${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")} ET`;
}
