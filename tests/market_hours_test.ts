import assert from "node:assert/strict";
import fc from "fast-check";
import {
  earlyCloses,
  easterSunday,
  type MarketStatus,
  marketStatus,
  nyseHolidays,
  UNSCHEDULED_CLOSURE,
} from "../core/market_hours.ts";
import { zonedParts, zonedTimeToUtc } from "../core/time_zone.ts";

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
/** Days from 1970-01-01 to 2200-12-31. */
const LAST_DAY = Date.UTC(2200, 11, 31) / DAY_MS;

const at = (iso: string) => new Date(iso);
const dayToDate = (day: number) => new Date(day * DAY_MS).toISOString().slice(0, 10);
const holidayDates = (year: number) => new Set(nyseHolidays(year).map((h) => h.date));

/** Counts, minute by minute from New York midnight to the next, the minutes in each session. */
function countMinutes(date: string, extendedHours: boolean) {
  const counts = { open: 0, PRE: 0, REGULAR: 0, POST: 0, CLOSED: 0 };
  const start = zonedTimeToUtc(date, 0).getTime();
  const end = zonedTimeToUtc(dayToDate(Date.parse(date) / DAY_MS + 1), 0).getTime();
  for (let t = start; t < end; t += MINUTE_MS) {
    const status = marketStatus(new Date(t), { extendedHours });
    if (status.open) counts.open++;
    counts[status.session]++;
  }
  return counts;
}

/** The first date on or after `day` that is a weekday, not a holiday and not an early close. */
function normalWeekdayFrom(day: number): string {
  for (let d = day;; d++) {
    const date = dayToDate(d);
    const year = Number(date.slice(0, 4));
    const weekday = new Date(d * DAY_MS).getUTCDay();
    const special = holidayDates(year).has(date) || earlyCloses(year).includes(date);
    if (weekday !== 0 && weekday !== 6 && !special) return date;
  }
}

const instantArb = fc.date({
  min: new Date("1970-01-01T00:00:00.000Z"),
  max: new Date("2200-12-31T23:59:59.999Z"),
  noInvalidDate: true,
});

const optionsArb = fc.record({
  extendedHours: fc.boolean(),
  extraClosedDates: fc.array(fc.integer({ min: 0, max: LAST_DAY }).map(dayToDate), {
    maxLength: 3,
  }),
}, { requiredKeys: [] });

Deno.test("nyseHolidays() matches the published NYSE holidays for 2025, 2026 and 2027", () => {
  const names = [
    "New Year's Day",
    "Martin Luther King Jr. Day",
    "Washington's Birthday",
    "Good Friday",
    "Memorial Day",
    "Juneteenth",
    "Independence Day",
    "Labor Day",
    "Thanksgiving Day",
    "Christmas Day",
  ];
  // Month-day of each holiday above, in that order.
  const published: Record<number, string> = {
    2025: "01-01 01-20 02-17 04-18 05-26 06-19 07-04 09-01 11-27 12-25",
    2026: "01-01 01-19 02-16 04-03 05-25 06-19 07-03 09-07 11-26 12-25",
    2027: "01-01 01-18 02-15 03-26 05-31 06-18 07-05 09-06 11-25 12-24",
  };
  for (const [year, days] of Object.entries(published)) {
    const expected = days.split(" ").map((day, i) => ({ date: `${year}-${day}`, name: names[i] }));
    assert.deepEqual(nyseHolidays(Number(year)), expected);
  }
});

Deno.test("earlyCloses() matches the published NYSE 13:00 closes for 2025, 2026 and 2027", () => {
  assert.deepEqual(earlyCloses(2025), ["2025-07-03", "2025-11-28", "2025-12-24"]);
  assert.deepEqual(earlyCloses(2026), ["2026-11-27", "2026-12-24"]);
  assert.deepEqual(earlyCloses(2027), ["2027-11-26"]);
});

Deno.test("nyseHolidays() gives no holiday for a Saturday New Year's Day", () => {
  assert.equal(nyseHolidays(2028)[0].name, "Martin Luther King Jr. Day");
  assert.equal(nyseHolidays(2022)[0].name, "Martin Luther King Jr. Day");
  assert.equal(nyseHolidays(2028).length, 9);
  assert.ok(!nyseHolidays(2027).some((h) => h.date === "2027-12-31"));
  const newYear2028 = marketStatus(at("2028-01-01T15:00:00Z"));
  assert.equal(newYear2028.holiday, null);
  assert.equal(newYear2028.tradingDay, false);
});

Deno.test("marketStatus() treats Friday Dec 31 2027 as a normal full day", () => {
  const status = marketStatus(at("2027-12-31T20:59:59Z"));
  assert.equal(status.open, true);
  assert.equal(status.earlyClose, false);
  assert.equal(status.holiday, null);
  assert.deepEqual(status.regularOpen, at("2027-12-31T14:30:00Z"));
  assert.deepEqual(status.regularClose, at("2027-12-31T21:00:00Z"));
  assert.equal(marketStatus(at("2027-12-31T21:00:00Z")).open, false);
});

Deno.test("easterSunday() matches known Easter dates", () => {
  const known: Record<number, string> = {
    1818: "1818-03-22",
    1943: "1943-04-25",
    2024: "2024-03-31",
    2025: "2025-04-20",
    2026: "2026-04-05",
    2027: "2027-03-28",
    2038: "2038-04-25",
    2285: "2285-03-22",
  };
  for (const [year, date] of Object.entries(known)) assert.equal(easterSunday(Number(year)), date);
});

Deno.test("nyseHolidays() moves Good Friday back into March when Easter is on Apr 1 or 2", () => {
  // Easter 2018 was Apr 1, Easter 2029 is Apr 1, Easter 2024 was Mar 31.
  assert.ok(holidayDates(2018).has("2018-03-30"));
  assert.ok(holidayDates(2029).has("2029-03-30"));
  assert.ok(holidayDates(2024).has("2024-03-29"));
  assert.equal(easterSunday(2040), "2040-04-01");
  assert.ok(holidayDates(2040).has("2040-03-30"));
});

Deno.test("marketStatus() opens at 09:30 New York time across the DST switches", () => {
  // 2026-03-06 is the Friday before the spring switch (EST, UTC-5).
  assert.equal(marketStatus(at("2026-03-06T14:29:59Z")).open, false);
  assert.equal(marketStatus(at("2026-03-06T14:29:59Z")).session, "PRE");
  assert.equal(marketStatus(at("2026-03-06T14:30:00Z")).open, true);
  // 2026-03-09 is the Monday after it (EDT, UTC-4).
  assert.equal(marketStatus(at("2026-03-09T13:29:59Z")).open, false);
  assert.equal(marketStatus(at("2026-03-09T13:30:00Z")).open, true);
  assert.deepEqual(
    marketStatus(at("2026-03-09T18:00:00Z")).regularClose,
    at("2026-03-09T20:00:00Z"),
  );
  // 2026-10-30 is the last Friday in EDT, 2026-11-02 the first Monday back in EST.
  assert.equal(marketStatus(at("2026-10-30T13:30:00Z")).open, true);
  assert.equal(marketStatus(at("2026-11-02T13:30:00Z")).open, false);
  assert.equal(marketStatus(at("2026-11-02T14:30:00Z")).open, true);
});

Deno.test("marketStatus() uses half-open sessions: 09:30:00 is REGULAR, 16:00:00 is not", () => {
  const session = (iso: string) => marketStatus(at(iso)).session;
  // 2026-06-10 is a Wednesday in EDT.
  assert.equal(session("2026-06-10T07:59:59.999Z"), "CLOSED");
  assert.equal(session("2026-06-10T08:00:00Z"), "PRE");
  assert.equal(session("2026-06-10T13:29:59.999Z"), "PRE");
  assert.equal(session("2026-06-10T13:30:00Z"), "REGULAR");
  assert.equal(session("2026-06-10T19:59:59.999Z"), "REGULAR");
  assert.equal(session("2026-06-10T20:00:00Z"), "POST");
  assert.equal(session("2026-06-10T23:59:59.999Z"), "POST");
  assert.equal(session("2026-06-11T00:00:00Z"), "CLOSED");
  assert.equal(marketStatus(at("2026-06-10T20:00:00Z")).open, false);
});

Deno.test("marketStatus() closes at 13:00 on an early-close day, with after-hours to 17:00", () => {
  const before = marketStatus(at("2026-11-27T17:59:59Z"));
  assert.equal(before.open, true);
  assert.equal(before.earlyClose, true);
  assert.deepEqual(before.regularClose, at("2026-11-27T18:00:00Z"));
  const after = marketStatus(at("2026-11-27T18:00:00Z"));
  assert.equal(after.open, false);
  assert.equal(after.session, "POST");
  const extendedHours = true;
  assert.equal(marketStatus(at("2026-11-27T21:59:59Z"), { extendedHours }).open, true);
  assert.equal(marketStatus(at("2026-11-27T22:00:00Z"), { extendedHours }).open, false);
  assert.equal(marketStatus(at("2026-11-27T22:00:00Z")).session, "CLOSED");
});

Deno.test("marketStatus() names the holiday and stays closed on it, even with extended hours", () => {
  const status = marketStatus(at("2025-07-04T15:00:00Z"), { extendedHours: true });
  const expected: MarketStatus = {
    open: false,
    session: "CLOSED",
    date: "2025-07-04",
    tradingDay: false,
    holiday: "Independence Day",
    earlyClose: false,
    regularOpen: null,
    regularClose: null,
  };
  assert.deepEqual(status, expected);
});

Deno.test("marketStatus() honours extraClosedDates as unscheduled closures", () => {
  const noon = at("2025-01-09T17:00:00Z");
  assert.equal(marketStatus(noon).open, true);
  const closed = marketStatus(noon, { extraClosedDates: ["2025-01-09"], extendedHours: true });
  assert.equal(closed.open, false);
  assert.equal(closed.session, "CLOSED");
  assert.equal(closed.tradingDay, false);
  assert.equal(closed.holiday, UNSCHEDULED_CLOSURE);
  assert.equal(closed.regularOpen, null);
  assert.equal(marketStatus(noon, { extraClosedDates: ["2025-01-10"] }).open, true);
});

Deno.test("marketStatus() opens pre-market and after-hours only with extendedHours", () => {
  // 2026-03-06 is a Friday in EST: 04:00 is 09:00Z, 19:59 is 00:59Z the next UTC day.
  for (const iso of ["2026-03-06T09:00:00Z", "2026-03-07T00:59:59Z"]) {
    assert.equal(marketStatus(at(iso)).open, false);
    assert.equal(marketStatus(at(iso), { extendedHours: true }).open, true);
  }
  assert.equal(marketStatus(at("2026-03-06T08:59:59Z"), { extendedHours: true }).open, false);
  const friday8pm = marketStatus(at("2026-03-07T01:00:00Z"), { extendedHours: true });
  assert.equal(friday8pm.open, false);
  assert.equal(friday8pm.date, "2026-03-06");
});

Deno.test("marketStatus() rejects an invalid Date", () => {
  assert.throws(() => marketStatus(new Date(NaN)), RangeError);
});

Deno.test("marketStatus() is never open on a Saturday or Sunday", () => {
  // Day 2 (1970-01-03) is a Saturday; wall-clock minutes cover the whole New York day.
  const weekendArb = fc.record({
    day: fc.tuple(fc.integer({ min: 0, max: 11_900 }), fc.integer({ min: 0, max: 1 }))
      .map(([week, sunday]) => dayToDate(2 + 7 * week + sunday)),
    minute: fc.integer({ min: 0, max: 1439 }),
    second: fc.integer({ min: 0, max: 59 }),
  });
  fc.assert(
    fc.property(weekendArb, fc.boolean(), ({ day, minute, second }, extendedHours) => {
      const instant = new Date(zonedTimeToUtc(day, minute).getTime() + second * 1000);
      assert.ok([0, 6].includes(zonedParts(instant).weekday));
      const status = marketStatus(instant, { extendedHours });
      assert.equal(status.open, false);
      assert.equal(status.session, "CLOSED");
      assert.equal(status.tradingDay, false);
    }),
    { numRuns: 200 },
  );
});

Deno.test("marketStatus() is open 390 minutes of a normal weekday, 960 with extended hours", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: LAST_DAY - 10 }), (day) => {
      const date = normalWeekdayFrom(day);
      const counts = countMinutes(date, false);
      assert.equal(counts.open, 390, date);
      assert.deepEqual([counts.PRE, counts.REGULAR, counts.POST], [330, 390, 240], date);
      assert.equal(countMinutes(date, true).open, 960, date);
    }),
    { numRuns: 200 },
  );
});

Deno.test("marketStatus() is open 210 minutes of an early-close day, 780 with extended hours", () => {
  const earlyCloseArb = fc.tuple(fc.integer({ min: 1970, max: 2200 }), fc.nat())
    .map(([year, i]) => earlyCloses(year)[i % earlyCloses(year).length]);
  fc.assert(
    fc.property(earlyCloseArb, (date) => {
      assert.equal(countMinutes(date, false).open, 210, date);
      assert.equal(countMinutes(date, true).open, 780, date);
    }),
    { numRuns: 200 },
  );
});

Deno.test("nyseHolidays() gives 9 or 10 sorted weekday holidays a year from 2022 on", () => {
  fc.assert(
    fc.property(fc.integer({ min: 2022, max: 9999 }), (year) => {
      const holidays = nyseHolidays(year);
      assert.ok(holidays.length === 9 || holidays.length === 10, `${year}: ${holidays.length}`);
      const dates = holidays.map((h) => h.date);
      assert.deepEqual(dates, [...new Set(dates)].sort());
      for (const date of dates) {
        assert.ok(date.startsWith(`${year}-`), date);
        const weekday = new Date(`${date}T12:00:00Z`).getUTCDay();
        assert.ok(weekday >= 1 && weekday <= 5, date);
      }
      for (const date of earlyCloses(year)) assert.ok(!dates.includes(date), date);
    }),
    { numRuns: 300 },
  );
});

Deno.test("marketStatus() never throws for an instant between 1970 and 2200", () => {
  fc.assert(
    fc.property(instantArb, optionsArb, (instant, options) => {
      const status = marketStatus(instant, options);
      assert.equal(status.date, zonedParts(instant).date);
      assert.equal(status.tradingDay, status.regularOpen !== null);
      assert.equal(status.tradingDay, status.regularClose !== null);
      if (status.holiday !== null) assert.equal(status.tradingDay, false);
      if (status.earlyClose) assert.equal(status.tradingDay, true);
      if (!status.tradingDay) assert.equal(status.session, "CLOSED");
      if (status.regularOpen && status.regularClose) {
        assert.equal(zonedParts(status.regularOpen).minuteOfDay, 9 * 60 + 30);
        assert.equal(zonedParts(status.regularClose).minuteOfDay, status.earlyClose ? 780 : 960);
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("marketStatus() is open only on a trading day", () => {
  fc.assert(
    fc.property(instantArb, optionsArb, (instant, options) => {
      const status = marketStatus(instant, options);
      if (status.open) {
        assert.equal(status.tradingDay, true);
        assert.notEqual(status.session, "CLOSED");
      }
      const closedThatDay = marketStatus(instant, { ...options, extraClosedDates: [status.date] });
      assert.equal(closedThatDay.open, false);
    }),
    { numRuns: 1000 },
  );
});

/** UTC instants of clock changes in the zones above (New York, London, Lord Howe's half hour). */
const DST_CHANGES = [
  "2026-03-08T07:00:00Z",
  "2026-11-01T06:00:00Z",
  "2026-03-29T01:00:00Z",
  "2026-10-25T01:00:00Z",
  "2026-04-04T15:00:00Z",
  "2026-10-03T15:30:00Z",
];

/** The wall clock as Intl reads it, with no memo: the reference for zonedParts. */
function intlReading(instant: Date, timeZone: string) {
  const values: Record<string, string> = {};
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    weekday: "short",
  });
  for (const part of format.formatToParts(instant)) values[part.type] = part.value;
  return {
    date: `${values.year.padStart(4, "0")}-${values.month}-${values.day}`,
    hour: Number(values.hour),
    minute: Number(values.minute),
    second: Number(values.second),
    weekday: ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].indexOf(values.weekday),
  };
}

Deno.test("zonedParts (remembered per zone and second) reads what Intl reads, in any order of calls", () => {
  const zones = [
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/St_Johns",
  ];
  // Instants near each other (same second, same minute, across DST changes) and far apart,
  // asked in a random order and from random zones, so a memo keyed too coarsely or without
  // the zone gives some call another call's answer.
  const instantArb = fc.oneof(
    fc.integer({ min: Date.UTC(1971, 0, 1), max: Date.UTC(2200, 0, 1) }),
    fc.tuple(fc.constantFrom(...DST_CHANGES), fc.integer({ min: -3_000, max: 3_000 }))
      .map(([change, ms]) => Date.parse(change) + ms),
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(instantArb, fc.constantFrom(...zones)), { minLength: 1, maxLength: 20 }),
      (calls) => {
        for (const [ms, zone] of calls) {
          for (const instant of [new Date(ms), new Date(ms - (ms % 1000) + 999)]) {
            const got = zonedParts(instant, zone);
            const want = intlReading(instant, zone);
            assert.deepEqual(
              {
                date: got.date,
                hour: got.hour,
                minute: got.minute,
                second: got.second,
                weekday: got.weekday,
              },
              want,
              `${instant.toISOString()} in ${zone}`,
            );
            assert.equal(got.minuteOfDay, want.hour * 60 + want.minute);
            assert.ok(Object.isFrozen(got), "a shared reading cannot be changed by a caller");
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});
