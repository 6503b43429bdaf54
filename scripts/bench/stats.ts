/**
 * Latency summaries for the bench: more percentiles than core/stats.ts keeps
 * for /metrics (p90 and p99.9 tell a tail from a hiccup), on plain arrays of
 * milliseconds. Pure.
 */

export interface Summary {
  count: number;
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

export const EMPTY_SUMMARY: Summary = {
  count: 0,
  mean: null,
  p50: null,
  p90: null,
  p95: null,
  p99: null,
  p999: null,
  max: null,
};

/** Nearest-rank percentile of an ascending, non-empty array (the definition core/stats.ts uses). */
export function percentileOf(sorted: ArrayLike<number>, p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Summary of `values` (ms), rounded to 0.01 ms; non-finite values are left out. */
export function summarizeMs(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(Array.prototype.filter.call(values, Number.isFinite) as number[])
    .sort();
  if (sorted.length === 0) return { ...EMPTY_SUMMARY };
  let sum = 0;
  for (const v of sorted) sum += v;
  const r = (n: number) => Math.round(n * 100) / 100;
  return {
    count: sorted.length,
    mean: r(sum / sorted.length),
    p50: r(percentileOf(sorted, 50)),
    p90: r(percentileOf(sorted, 90)),
    p95: r(percentileOf(sorted, 95)),
    p99: r(percentileOf(sorted, 99)),
    p999: r(percentileOf(sorted, 99.9)),
    max: r(sorted[sorted.length - 1]),
  };
}

/** Counts of each distinct value, e.g. group-commit batch sizes, as `{ "12": 40, ... }`. */
export function histogram(values: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of [...values].sort((a, b) => a - b)) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}
