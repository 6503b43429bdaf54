/**
 * US equity market hours: which session an instant falls in and whether a
 * signal received then may trade. Times are New York wall-clock times, read
 * through the time-zone database (`time_zone.ts`), so DST is always right.
 *
 * On a trading day: pre-market 04:00-09:30, regular 09:30-16:00, after-hours
 * 16:00-20:00. Every interval is half-open, [start, end): 09:30:00 is
 * REGULAR, 16:00:00 is POST. On a 13:00 early-close day the regular session
 * ends at 13:00 and after-hours runs 13:00-17:00, four hours as on a normal
 * day, following NYSE's practice. Weekends, holidays and extra closed dates
 * have no sessions at all.
 */

import { NEW_YORK, zonedParts, zonedTimeToUtc } from "./time_zone.ts";
import { earlyCloses, nyseHolidays } from "./nyse_calendar.ts";

export { earlyCloses, easterSunday, nyseHolidays } from "./nyse_calendar.ts";
export type { Holiday } from "./nyse_calendar.ts";

export type Session = "PRE" | "REGULAR" | "POST" | "CLOSED";

export interface MarketHoursOptions {
  /** Count pre-market (04:00-09:30) and after-hours (16:00-20:00) as open. Default false. */
  extendedHours?: boolean;
  /**
   * Extra full-day closures, `YYYY-MM-DD` (unscheduled, e.g. "2025-01-09").
   * Compared as strings: an entry in any other shape never matches, so
   * validate the list where it is configured.
   */
  extraClosedDates?: readonly string[];
}

export interface MarketStatus {
  /** Whether a signal received at this instant may trade under the options. */
  open: boolean;
  /** The session the instant is in ("CLOSED" on holidays, weekends and overnight). */
  session: Session;
  /** New York calendar date, `YYYY-MM-DD`. */
  date: string;
  /** A weekday that is neither an NYSE holiday nor an extra closed date. */
  tradingDay: boolean;
  /** Holiday name when a weekday is an NYSE full-day holiday, or "Unscheduled closure". */
  holiday: string | null;
  /** A trading day whose regular session closes at 13:00. */
  earlyClose: boolean;
  /** Regular session open for this date (null when not a trading day). */
  regularOpen: Date | null;
  /** Regular session close: 16:00, or 13:00 on early-close days (null when not a trading day). */
  regularClose: Date | null;
}

/** The `holiday` of a weekday listed in `extraClosedDates`. */
export const UNSCHEDULED_CLOSURE = "Unscheduled closure";

/** Minutes after New York midnight. */
export const PRE_MARKET_OPEN = 4 * 60;
export const REGULAR_OPEN = 9 * 60 + 30;
export const REGULAR_CLOSE = 16 * 60;
export const EARLY_CLOSE = 13 * 60;
/** After-hours lasts four hours after the regular close: to 20:00, or 17:00 on early-close days. */
export const AFTER_HOURS_MINUTES = 4 * 60;

/** The market status at instant `at`. Throws a RangeError for an invalid Date. */
export function marketStatus(at: Date, options: MarketHoursOptions = {}): MarketStatus {
  const time = at.getTime();
  if (Number.isNaN(time)) {
    throw new RangeError("Cannot compute market status: the instant is an invalid Date");
  }
  const { date, year, weekday } = zonedParts(at, NEW_YORK);
  const calendar = yearCalendar(year);
  const weekend = weekday === 0 || weekday === 6;
  const holiday = weekend ? null : calendar.holidays.get(date) ??
    (options.extraClosedDates?.includes(date) ? UNSCHEDULED_CLOSURE : null);

  if (weekend || holiday !== null) {
    return {
      open: false,
      session: "CLOSED",
      date,
      tradingDay: false,
      holiday,
      earlyClose: false,
      regularOpen: null,
      regularClose: null,
    };
  }

  const earlyClose = calendar.earlyCloses.has(date);
  const day = daySchedule(date, earlyClose);
  const session = sessionAt(time, day);
  const open = session === "REGULAR" ||
    (options.extendedHours === true && (session === "PRE" || session === "POST"));
  return {
    open,
    session,
    date,
    tradingDay: true,
    holiday: null,
    earlyClose,
    regularOpen: new Date(day.regularOpen),
    regularClose: new Date(day.regularClose),
  };
}

/** The session containing `time` on a trading day; each interval is [start, end). */
function sessionAt(time: number, day: DaySchedule): Session {
  if (time < day.preOpen) return "CLOSED";
  if (time < day.regularOpen) return "PRE";
  if (time < day.regularClose) return "REGULAR";
  if (time < day.postClose) return "POST";
  return "CLOSED";
}

// Memoized calendar lookups. Plain caches of pure results (one entry per year
// and per trading date seen), cleared when they grow large, so the answers do
// not depend on what was asked before.

interface YearCalendar {
  holidays: Map<string, string>;
  earlyCloses: Set<string>;
}

/** Session boundaries of one trading date, epoch milliseconds. */
interface DaySchedule {
  preOpen: number;
  regularOpen: number;
  regularClose: number;
  postClose: number;
}

const CACHE_LIMIT = 4096;
const years = new Map<number, YearCalendar>();
const days = new Map<string, DaySchedule>();

function yearCalendar(year: number): YearCalendar {
  let calendar = years.get(year);
  if (!calendar) {
    calendar = {
      holidays: new Map(nyseHolidays(year).map(({ date, name }) => [date, name])),
      earlyCloses: new Set(earlyCloses(year)),
    };
    remember(years, year, calendar);
  }
  return calendar;
}

function daySchedule(date: string, earlyClose: boolean): DaySchedule {
  let day = days.get(date);
  if (!day) {
    const close = earlyClose ? EARLY_CLOSE : REGULAR_CLOSE;
    const instant = (minuteOfDay: number) => zonedTimeToUtc(date, minuteOfDay, NEW_YORK).getTime();
    day = {
      preOpen: instant(PRE_MARKET_OPEN),
      regularOpen: instant(REGULAR_OPEN),
      regularClose: instant(close),
      postClose: instant(close + AFTER_HOURS_MINUTES),
    };
    remember(days, date, day);
  }
  return day;
}

function remember<K, V>(cache: Map<K, V>, key: K, value: V): void {
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, value);
}
