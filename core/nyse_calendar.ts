/**
 * NYSE calendar rules: full-day holidays and 13:00 early closes, computed
 * from the exchange's rules (NYSE Rule 7.2) for any Gregorian year. Pure
 * calendar arithmetic: no `Date`, no time zones.
 *
 * The current rules are applied to every year (only Juneteenth carries a
 * start year). Historical deviations, such as MLK Day before 1998 or
 * one-off closures, are not modelled: pass those as extra closed dates.
 */

import { isoDate } from "./time_zone.ts";

export interface Holiday {
  /** Observed date, `YYYY-MM-DD`. */
  date: string;
  name: string;
}

const SUNDAY = 0;
const MONDAY = 1;
const THURSDAY = 4;
const SATURDAY = 6;

/** First year the NYSE closed for Juneteenth. */
export const JUNETEENTH_FIRST_YEAR = 2022;

/** Day of the week of a Gregorian date, 0 = Sunday ... 6 = Saturday (Sakamoto's method). */
export function weekdayOf(year: number, month: number, day: number): number {
  const monthOffsets = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
  const y = month < 3 ? year - 1 : year;
  const leapDays = floorDiv(y, 4) - floorDiv(y, 100) + floorDiv(y, 400);
  const w = (y + leapDays + monthOffsets[month - 1] + day) % 7;
  return (w + 7) % 7;
}

/** Easter Sunday, `YYYY-MM-DD`, by the anonymous Gregorian algorithm (Meeus/Jones/Butcher). */
export function easterSunday(year: number): string {
  const { month, day } = easter(year);
  return isoDate(year, month, day);
}

/** NYSE full-day holidays of `year`, as observed (weekend shifts applied), sorted by date. */
export function nyseHolidays(year: number): Holiday[] {
  const holidays: Holiday[] = [];
  const add = (month: number, day: number, name: string) =>
    holidays.push({ date: isoDate(year, month, day), name });

  // New Year's Day on a Saturday is not moved back to Dec 31, which closes the
  // accounting year: that year simply has no New Year's holiday.
  const newYear = weekdayOf(year, 1, 1);
  if (newYear !== SATURDAY) add(1, newYear === SUNDAY ? 2 : 1, "New Year's Day");
  add(1, nthWeekday(year, 1, MONDAY, 3), "Martin Luther King Jr. Day");
  add(2, nthWeekday(year, 2, MONDAY, 3), "Washington's Birthday");
  // Easter falls Mar 22-Apr 25, so Good Friday is at worst pushed back into March.
  const e = easter(year);
  if (e.day > 2) add(e.month, e.day - 2, "Good Friday");
  else add(3, 29 + e.day, "Good Friday");
  add(5, lastWeekday(year, 5, MONDAY), "Memorial Day");
  if (year >= JUNETEENTH_FIRST_YEAR) add(6, observed(year, 6, 19), "Juneteenth");
  add(7, observed(year, 7, 4), "Independence Day");
  add(9, nthWeekday(year, 9, MONDAY, 1), "Labor Day");
  add(11, nthWeekday(year, 11, THURSDAY, 4), "Thanksgiving Day");
  add(12, observed(year, 12, 25), "Christmas Day");
  return holidays;
}

/**
 * Dates of `year` on which equities close at 13:00, sorted: Jul 3 when it
 * falls Monday-Thursday, the day after Thanksgiving, and Dec 24 when it falls
 * Monday-Thursday. Dec 31 is a normal day.
 */
export function earlyCloses(year: number): string[] {
  const dates: string[] = [];
  if (isMondayToThursday(weekdayOf(year, 7, 3))) dates.push(isoDate(year, 7, 3));
  dates.push(isoDate(year, 11, nthWeekday(year, 11, THURSDAY, 4) + 1));
  if (isMondayToThursday(weekdayOf(year, 12, 24))) dates.push(isoDate(year, 12, 24));
  return dates;
}

function easter(year: number): { month: number; day: number } {
  const a = year % 19;
  const b = Math.floor(year / 100);
  const c = year % 100;
  const d = Math.floor(b / 4);
  const e = b % 4;
  const f = Math.floor((b + 8) / 25);
  const g = Math.floor((b - f + 1) / 3);
  const h = (19 * a + b - d - g + 15) % 30;
  const i = Math.floor(c / 4);
  const k = c % 4;
  const l = (32 + 2 * e + 2 * i - h - k) % 7;
  const m = Math.floor((a + 11 * h + 22 * l) / 451);
  const month = Math.floor((h + l - 7 * m + 114) / 31);
  const day = ((h + l - 7 * m + 114) % 31) + 1;
  return { month, day };
}

/** Day of month of a fixed-date holiday as observed: Saturday -> Friday, Sunday -> Monday. */
function observed(year: number, month: number, day: number): number {
  const weekday = weekdayOf(year, month, day);
  if (weekday === SATURDAY) return day - 1;
  if (weekday === SUNDAY) return day + 1;
  return day;
}

/** Day of month of the `n`th `weekday` (1-based) of `month`. */
function nthWeekday(year: number, month: number, weekday: number, n: number): number {
  const first = weekdayOf(year, month, 1);
  return 1 + ((weekday - first + 7) % 7) + 7 * (n - 1);
}

/** Day of month of the last `weekday` of `month`. */
function lastWeekday(year: number, month: number, weekday: number): number {
  const last = daysInMonth(year, month);
  return last - ((weekdayOf(year, month, last) - weekday + 7) % 7);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function isMondayToThursday(weekday: number): boolean {
  return weekday >= MONDAY && weekday <= THURSDAY;
}

function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}
