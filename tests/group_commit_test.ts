/**
 * The group commit on its own: batching, and the busy/idle signal the
 * pipeline worker uses to let webhook commits go first.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createGroupCommit } from "../db/group_commit.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A flush the test releases by hand, recording each batch. */
function heldFlush() {
  const batches: number[][] = [];
  /** performance.now() at each flush's start. */
  const startedAt: number[] = [];
  const releases: (() => void)[] = [];
  const flush = (items: number[]) => {
    batches.push(items);
    startedAt.push(performance.now());
    return new Promise<number[]>((resolve) =>
      releases.push(() => resolve(items.map((i) => i * 10)))
    );
  };
  return { batches, startedAt, flush, releaseNext: () => releases.shift()!() };
}

Deno.test("items that arrive during a flush are written together by the next one", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 1 });
  const first = gc.submit(1);
  await Promise.resolve();
  const rest = [2, 3, 4].map((i) => gc.submit(i));
  await Promise.resolve();
  assert.deepEqual(f.batches, [[1]]);
  f.releaseNext();
  assert.equal(await first, 10);
  await sleep(0);
  assert.deepEqual(f.batches, [[1], [2, 3, 4]]);
  f.releaseNext();
  assert.deepEqual(await Promise.all(rest), [20, 30, 40]);
});

Deno.test("busy() and whenIdle() follow what is queued or in flight", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 1 });
  assert.equal(gc.busy(), false);
  await gc.whenIdle(60_000); // resolves at once when idle

  const done = gc.submit(1);
  assert.equal(gc.busy(), true, "queued counts as busy");
  let idle = false;
  const waiting = gc.whenIdle(60_000).then(() => idle = true);
  await sleep(10);
  assert.equal(idle, false, "resolved while a flush was in flight");
  f.releaseNext();
  await done;
  await waiting;
  assert.equal(gc.busy(), false);
});

Deno.test("whenIdle() gives up after maxMs while the flushes never stop", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 1 });
  const done = gc.submit(1);
  const started = performance.now();
  await gc.whenIdle(20);
  assert.ok(performance.now() - started >= 15, "returned before its time");
  assert.equal(gc.busy(), true);
  f.releaseNext();
  await done;
  await gc.drain();
});

Deno.test("whenNoneWaiting() waits only while items wait for a flush to start", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 1 });
  const tick = () => sleep(10);
  const first = gc.submit(1);
  await Promise.resolve(); // its flush starts
  let resolved = false;
  gc.whenNoneWaiting(60_000).then(() => resolved = true);
  await tick();
  assert.equal(gc.busy(), true);
  assert.equal(resolved, true, "waited though nothing waited for a flush");

  const second = gc.submit(2); // waits behind the first flush
  resolved = false;
  gc.whenNoneWaiting(60_000).then(() => resolved = true);
  await tick();
  assert.equal(resolved, false, "resolved while an item still waited for a flush");
  f.releaseNext();
  await first;
  await tick();
  assert.equal(resolved, true, "still waiting once the item's flush started");
  assert.deepEqual(f.batches, [[1], [2]]);
  assert.equal(gc.busy(), true, "the second flush is still in flight");

  const third = gc.submit(3);
  const t0 = performance.now();
  await gc.whenNoneWaiting(20); // gives up after maxMs
  assert.ok(performance.now() - t0 >= 15, "returned before its time");
  f.releaseNext();
  await second;
  await tick();
  f.releaseNext();
  assert.equal(await third, 30);
  await gc.drain();
});

Deno.test("a flush that would wait behind another starts once it holds as many items", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 2 });
  const tick = () => sleep(0);
  const answers: Promise<number>[] = [];
  const submit = (i: number) => answers.push(gc.submit(i));

  submit(1);
  await tick();
  submit(2); // one ahead holding one: goes at once, so at low load nothing waits for a slot
  await tick();
  assert.deepEqual(f.batches, [[1], [2]]);
  f.releaseNext();
  f.releaseNext();
  await tick();

  [3, 4, 5].forEach(submit);
  await tick();
  submit(6);
  submit(7);
  await tick();
  assert.deepEqual(f.batches.slice(2), [[3, 4, 5]], "started a second flush with fewer items");
  submit(8);
  await tick();
  assert.deepEqual(f.batches.slice(2), [[3, 4, 5], [6, 7, 8]]);

  submit(9); // two in flight: waits for a slot, then for the flush ahead to finish
  await tick();
  f.releaseNext();
  await tick();
  assert.equal(f.batches.length, 4, "started behind [6, 7, 8] with one item");
  f.releaseNext();
  await tick();
  assert.deepEqual(f.batches.slice(4), [[9]], "still held once nothing was ahead of it");
  f.releaseNext();
  assert.deepEqual(await Promise.all(answers), [10, 20, 30, 40, 50, 60, 70, 80, 90]);
  assert.equal(gc.busy(), false);
});

Deno.test("a flush stalled on its connection holds the next one back for maxHoldMs only", async () => {
  const f = heldFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 2, maxHoldMs: 30 });
  const answers = [1, 2, 3].map((i) => gc.submit(i)); // never answered until released below
  await sleep(0);
  const started = performance.now();
  answers.push(gc.submit(4));
  await sleep(5);
  assert.deepEqual(f.batches[0], [1, 2, 3], "did not wait to fill");
  while (f.batches.length < 2 && performance.now() - started < 1_000) {
    await sleep(2);
  }
  assert.deepEqual(f.batches, [[1, 2, 3], [4]]);
  // Timed between the flushes' own starts: the test's timers can run late on a busy machine.
  assert.ok(f.startedAt[1] - f.startedAt[0] >= 25, "went before its hold was up");
  f.releaseNext();
  f.releaseNext();
  assert.deepEqual(await Promise.all(answers), [10, 20, 30, 40]);
});

Deno.test("property: every item is written once, in order, and answered, whatever the timing", async () => {
  const step = fc.oneof(
    fc.record({ submit: fc.integer({ min: 1, max: 6 }) }),
    fc.constant({ release: true }),
    fc.constant({ tick: true }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 8 }),
      fc.array(step, { maxLength: 40 }),
      async (maxInFlight, maxBatch, steps) => {
        const f = heldFlush();
        let inFlight = 0;
        let mostInFlight = 0;
        const gc = createGroupCommit((items: number[]) => {
          mostInFlight = Math.max(mostInFlight, ++inFlight);
          return f.flush(items).finally(() => inFlight--);
        }, { maxInFlight, maxBatch });
        const answers: Promise<number>[] = [];
        let next = 1;
        const tick = () => sleep(0);
        for (const s of steps) {
          if ("submit" in s) { for (let k = 0; k < s.submit; k++) answers.push(gc.submit(next++)); }
          else if ("release" in s && inFlight > 0) f.releaseNext();
          await tick();
        }
        while (gc.busy()) {
          if (inFlight === 0) throw new Error("items queued with no flush in flight");
          f.releaseNext();
          await tick();
        }
        const all = Array.from({ length: next - 1 }, (_, i) => i + 1);
        assert.deepEqual(await Promise.all(answers), all.map((i) => i * 10));
        assert.deepEqual(f.batches.flat(), all, "written once each, in submission order");
        assert.ok(f.batches.every((b) => b.length >= 1 && b.length <= maxBatch));
        assert.ok(mostInFlight <= maxInFlight);
      },
    ),
    { numRuns: 100 },
  );
});
