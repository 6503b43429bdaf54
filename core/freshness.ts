/**
 * Signal freshness: how old a signal may be when received, given that
 * TradingView's `{{time}}` is the OPEN time of the bar the alert fired on.
 */
import type { Rules } from "./rules.ts";

const UNIT_SECONDS: Record<string, number> = {
  s: 1,
  m: 60,
  h: 3600,
  D: 86_400,
  W: 7 * 86_400,
  // The longest month, so a monthly bar's close is always within one bar.
  M: 31 * 86_400,
};

/**
 * Length of one bar of a canonical timeframe ("30s", "5m", "1h", "1D",
 * "1W", "1M") in seconds; 0 for anything else (a tick chart's "100T" has no
 * fixed length), so such a timeframe gets no allowance rather than an
 * unbounded one.
 */
export function barSeconds(timeframe: string): number {
  const m = /^(\d+)([smhDWM])$/.exec(timeframe);
  if (!m) return 0;
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2]];
  return Number.isSafeInteger(seconds) ? seconds : 0;
}

export type Freshness =
  | { fresh: true }
  | { fresh: false; reason: "FUTURE_SIGNAL" | "STALE_SIGNAL"; message: string };

/**
 * The last receipt time at which a signal claiming `claimedMs` is still fresh:
 * a re-delivery of it up to then would be acted on, so its dedup key must live
 * that long.
 */
export function freshUntilMs(
  claimedMs: number,
  timeframe: string,
  rules: Pick<Rules, "maxSignalAgeSeconds">,
): number {
  return claimedMs + (rules.maxSignalAgeSeconds + barSeconds(timeframe)) * 1000;
}

/**
 * Whether a signal claiming time `claimedMs` (its bar time) and received at
 * `receivedMs` is fresh: not more than `maxFutureSkewSeconds` ahead of its
 * receipt, not older than `maxSignalAgeSeconds` plus one bar. With
 * `decidedMs`, it must also still be that young when it is decided: a signal
 * that waited in a backlog (a worker down, or behind) is as old as the moment
 * it would act, not the moment it arrived.
 */
export function checkFreshness(
  claimedMs: number,
  receivedMs: number,
  timeframe: string,
  rules: Pick<Rules, "maxSignalAgeSeconds" | "maxFutureSkewSeconds">,
  decidedMs: number | null = null,
): Freshness {
  const ageSeconds = (receivedMs - claimedMs) / 1000;
  const stamps = `timestamp ${new Date(claimedMs).toISOString()}, received ${
    new Date(receivedMs).toISOString()
  }`;
  if (!(-ageSeconds <= rules.maxFutureSkewSeconds)) {
    return {
      fresh: false,
      reason: "FUTURE_SIGNAL",
      message: `Signal is dated ${-ageSeconds} s after it was received (${stamps}); ` +
        `the allowed clock skew is ${rules.maxFutureSkewSeconds} s`,
    };
  }
  const limit = (freshUntilMs(claimedMs, timeframe, rules) - claimedMs) / 1000;
  const stale = (message: string): Freshness => ({
    fresh: false,
    reason: "STALE_SIGNAL",
    message: `${message}; the limit is ${limit} s ` +
      `(${rules.maxSignalAgeSeconds} s plus one ${timeframe} bar of ${barSeconds(timeframe)} s)`,
  });
  if (!(ageSeconds <= limit)) return stale(`Signal is ${ageSeconds} s old (${stamps})`);
  if (decidedMs !== null && decidedMs > receivedMs) {
    const ageWhenDecided = (decidedMs - claimedMs) / 1000;
    if (!(ageWhenDecided <= limit)) {
      return stale(
        `Signal is ${ageWhenDecided} s old when decided, ${
          (decidedMs - receivedMs) / 1000
        } s after it was received (${stamps}, decided ${new Date(decidedMs).toISOString()})`,
      );
    }
  }
  return { fresh: true };
}
