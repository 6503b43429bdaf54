/**
 * The paced driver's clock (paced_driver.ts): posts `n` when request n is
 * due, having slept in `Atomics.wait`, which wakes within a few tens of
 * microseconds. The driver's own `setTimeout` cannot do that: on Deno a
 * timer wakes 2 ms after it was set at the soonest, so requests went out in
 * pairs up to 2 ms late, and that lateness was counted as the server's.
 * Times are absolute (`timeOrigin + now()`), which agree across threads.
 */
/// <reference lib="deno.worker" />

export interface TickerStart {
  /** Absolute time (ms) request 0 is due. */
  startMs: number;
  rate: number;
  total: number;
}

/** Woken this long after a due time, so the driver's clock never finds it early. */
const MARGIN_MS = 0.02;

self.onmessage = (event: MessageEvent<TickerStart>) => {
  const { startMs, rate, total } = event.data;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const now = () => performance.timeOrigin + performance.now();
  let next = 0;
  while (next < total) {
    const wait = startMs + (next * 1000) / rate + MARGIN_MS - now();
    if (wait > 0) Atomics.wait(cell, 0, 0, wait);
    // Every request due by now, at least one: a late wake-up covers the ones it missed.
    next = Math.max(next + 1, Math.min(total, Math.floor(((now() - startMs) * rate) / 1000) + 1));
    self.postMessage(next);
  }
  self.close();
};
// Loaded: the driver starts its clock only now, so a thread still starting delays no request.
self.postMessage("ready");
