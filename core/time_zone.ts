/**
 * Wall-clock time in a named time zone, from the platform's time-zone
 * database (Intl), never from fixed offsets, so DST is always right.
 */

export const NEW_YORK = "America/New_York";

export interface ZonedParts {
  /** Calendar date in the zone, `YYYY-MM-DD`. */
  date: string;
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 0 = Sunday ... 6 = Saturday. */
  weekday: number;
  /** Minutes since local midnight. */
  minuteOfDay: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/**
 * The wall-clock reading of `instant` in `timeZone`. Remembered per zone and
 * whole second (the reading has no finer field): Intl's formatToParts was the
 * largest single cost of deciding a batch, and the signals of a batch or a
 * bar-close burst mostly share their second. The result is frozen, as callers
 * share it.
 */
export function zonedParts(instant: Date, timeZone = NEW_YORK): ZonedParts {
  const key = `${timeZone} ${Math.floor(instant.getTime() / 1000)}`;
  let parts = readings.get(key);
  if (parts === undefined) {
    parts = Object.freeze(readParts(instant, timeZone));
    if (readings.size >= READINGS_LIMIT) readings.clear();
    readings.set(key, parts);
  }
  return parts;
}

const READINGS_LIMIT = 4096;
const readings = new Map<string, ZonedParts>();

function readParts(instant: Date, timeZone: string): ZonedParts {
  const values: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(instant)) {
    if (part.type !== "literal") values[part.type] = Number(part.value);
  }
  const { year, month, day, hour, minute, second } = values;
  return {
    date: isoDate(year, month, day),
    year,
    month,
    day,
    hour,
    minute,
    second,
    weekday: new Date(Date.UTC(year, month - 1, day)).getUTCDay(),
    minuteOfDay: hour * 60 + minute,
  };
}

/**
 * The instant at which the wall clock in `timeZone` reads `date` at
 * `minuteOfDay`. A wall time that does not exist (a spring-forward gap)
 * comes out an hour early; none of the market's times (04:00 to 20:00) fall
 * in a gap.
 */
export function zonedTimeToUtc(date: string, minuteOfDay: number, timeZone = NEW_YORK): Date {
  const [year, month, day] = date.split("-").map(Number);
  const wallAsUtc = Date.UTC(year, month - 1, day, 0, minuteOfDay);
  // Two passes converge because the offset is constant away from transitions.
  let guess = wallAsUtc - offsetMs(new Date(wallAsUtc), timeZone);
  guess = wallAsUtc - offsetMs(new Date(guess), timeZone);
  return new Date(guess);
}

/** Zone offset from UTC at `instant`, in milliseconds (New York: -5 h or -4 h). */
export function offsetMs(instant: Date, timeZone = NEW_YORK): number {
  const p = zonedParts(instant, timeZone);
  const wallAsUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return wallAsUtc - Math.floor(instant.getTime() / 1000) * 1000;
}

export function isoDate(year: number, month: number, day: number): string {
  return `${String(year).padStart(4, "0")}-${String(month).padStart(2, "0")}-${
    String(day).padStart(2, "0")
  }`;
}
