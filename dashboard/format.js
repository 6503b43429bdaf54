/**
 * Formatting for the dashboard: pure functions, the clock passed in, so the
 * tests can call them with fixed inputs. Times are shown in New York time,
 * the exchange's clock, whatever the browser's time zone.
 */

const NY_TIME = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const NY_DATE = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York",
  month: "short",
  day: "numeric",
});
const NY_DATE_YEAR = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York",
  year: "numeric",
  month: "short",
  day: "numeric",
});
const NY_DAY = new Intl.DateTimeFormat("en-CA", { timeZone: "America/New_York" });

/** Epoch ms of an ISO string, a Date or a number; NaN when there is none. */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return NaN;
  return value instanceof Date
    ? value.getTime()
    : typeof value === "number"
    ? value
    : Date.parse(value);
}

/**
 * "10:30:05" when `at` is on the same New York day as `now`, "Mar 10 10:30:05"
 * in the same year, else "Dec 31, 2025 15:59:00"; "—" when there is no time.
 */
export function nyTime(at, now) {
  const t = toMs(at);
  if (!Number.isFinite(t)) return "—";
  const time = NY_TIME.format(t);
  const [day, today] = [NY_DAY.format(t), NY_DAY.format(now)];
  if (day === today) return time;
  // en-CA days are YYYY-MM-DD.
  return `${(day.slice(0, 4) === today.slice(0, 4) ? NY_DATE : NY_DATE_YEAR).format(t)} ${time}`;
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago" (or "in …" ahead of `now`). */
export function relativeTime(at, now) {
  const t = toMs(at);
  if (!Number.isFinite(t)) return "";
  const seconds = Math.round((now - t) / 1000);
  // A second or two ahead is only clock skew between browser and server.
  if (seconds < 5 && seconds > -5) return "just now";
  const span = duration(Math.abs(seconds));
  return seconds > 0 ? `${span} ago` : `in ${span}`;
}

/** A whole-second span, coarsely: "42 s", "5 min", "3 h", "2 d". */
export function duration(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

const MONEY = new Intl.NumberFormat("en-US", {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const WHOLE_MONEY = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** "$1,234.50"; with `signed`, "+$1,234.50" and "−$12.00" (a real minus sign). */
export function money(n, { signed = false, whole = false } = {}) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  const v = Number(n);
  const body = `$${(whole ? WHOLE_MONEY : MONEY).format(Math.abs(v))}`;
  if (v < 0 && body !== "$0.00" && body !== "$0") return `\u2212${body}`;
  return signed && v > 0 && body !== "$0.00" && body !== "$0" ? `+${body}` : body;
}

/** An underlying's price: two decimals, more only when the value has them (0.0125). */
export function price(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  const v = Number(n);
  const decimals = Math.abs(v) >= 1 ? 2 : 4;
  return v.toLocaleString("en-US", {
    minimumFractionDigits: 2,
    maximumFractionDigits: decimals,
  });
}

/** A count of units: "17", "1,250", "0.5". */
export function quantity(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 4 });
}

/** Milliseconds at a useful precision: "0.42 ms", "12.3 ms", "184 ms", "1.24 s". */
export function ms(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  const v = Number(n);
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 100) return `${Math.round(v)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

/** "85%" from 0.85; "—" when unknown. */
export function percent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(Number(ratio))) return "—";
  return `${Math.round(Number(ratio) * 1000) / 10}%`;
}

/** CSS class for a signed amount: "pos", "neg" or "flat". */
export function signClass(n) {
  const v = Number(n);
  if (!Number.isFinite(v) || Math.abs(v) < 0.005) return "flat";
  return v > 0 ? "pos" : "neg";
}

/** A stage key as a label: "market_hours" -> "market hours", "end_to_end" -> "end to end". */
export function stageLabel(key) {
  return String(key).replaceAll("_", " ");
}
