/**
 * The group commit on its own: batching, and the busy/idle signal the
 * pipeline worker uses to let webhook commits go first.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createGroupCommit } from "../db/group_commit.ts";
import { DatabaseUnavailableError } from "../db/port.ts";

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

/** Items are "<key>:<n>"; a flush the test finishes in any order, logging starts and ends. */
function keyedFlush() {
  const log: ({ start: string[] } | { end: string[] })[] = [];
  const pending: { items: string[]; resolve: (out: string[]) => void }[] = [];
  const flush = (items: string[]) => {
    log.push({ start: items });
    return new Promise<string[]>((resolve) => pending.push({ items, resolve }));
  };
  /** Finishes the in-flight flush at `index` (mod how many are in flight). */
  const finish = (index: number) => {
    const [p] = pending.splice(index % pending.length, 1);
    log.push({ end: p.items });
    p.resolve(p.items.map((i) => `ok ${i}`));
  };
  return { log, flush, finish, inFlight: () => pending.length };
}
const keyOf = (item: string) => item.split(":")[0];

Deno.test("with orderKey, a key's next item waits until the flush holding that key has finished", async () => {
  const f = keyedFlush();
  const gc = createGroupCommit(f.flush, { maxInFlight: 2, orderKey: keyOf });
  const tick = () => sleep(0);
  const close = gc.submit("SPY:close");
  await tick();
  const open = gc.submit("SPY:open");
  const other = gc.submit("QQQ:entry");
  await tick();
  assert.deepEqual(f.log, [{ start: ["SPY:close"] }, { start: ["QQQ:entry"] }]);
  f.finish(1); // the second flush finishes first: it holds no SPY, so nothing may follow it
  assert.equal(await other, "ok QQQ:entry");
  await tick();
  assert.equal(f.inFlight(), 1, "SPY:open started while SPY:close was in flight");
  f.finish(0);
  assert.equal(await close, "ok SPY:close");
  await tick();
  assert.deepEqual(f.log.at(-1), { start: ["SPY:open"] });
  f.finish(0);
  assert.equal(await open, "ok SPY:open");
  await gc.drain();
});

Deno.test("property: with orderKey, a key's items are written in order, each after the last has finished", async () => {
  const step = fc.oneof(
    fc.record({
      submit: fc.array(fc.constantFrom("A", "B", "C", "D"), { minLength: 1, maxLength: 6 }),
    }),
    fc.record({ finish: fc.nat() }),
    fc.constant({ tick: true }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 8 }),
      fc.array(step, { maxLength: 40 }),
      async (maxInFlight, maxBatch, steps) => {
        const f = keyedFlush();
        const gc = createGroupCommit(f.flush, { maxInFlight, maxBatch, orderKey: keyOf });
        const submitted: string[] = [];
        const answers: Promise<string>[] = [];
        const tick = () => sleep(0);
        for (const s of steps) {
          if ("submit" in s) {
            for (const key of s.submit) {
              const item = `${key}:${submitted.length}`;
              submitted.push(item);
              answers.push(gc.submit(item));
            }
          } else if ("finish" in s && f.inFlight() > 0) f.finish(s.finish);
          await tick();
        }
        let turn = 0;
        while (gc.busy()) {
          if (f.inFlight() === 0) throw new Error("items queued with no flush in flight");
          f.finish(turn++ * 7); // not first-in, first-out
          await tick();
        }
        assert.deepEqual(await Promise.all(answers), submitted.map((i) => `ok ${i}`));
        // Replay the log: an item starts only once every earlier item of its key has
        // ended, or goes ahead of it in the same flush (written in order there).
        const started = new Set<string>();
        const ended = new Set<string>();
        for (const e of f.log) {
          if ("end" in e) {
            e.end.forEach((i) => ended.add(i));
            continue;
          }
          assert.ok(e.start.length >= 1 && e.start.length <= maxBatch);
          for (const item of e.start) {
            assert.ok(!started.has(item), `${item} written twice`);
            started.add(item);
            const earlier = submitted.slice(0, submitted.indexOf(item))
              .filter((i) => keyOf(i) === keyOf(item));
            for (const before of earlier) {
              const aheadInFlush = e.start.indexOf(before) >= 0 &&
                e.start.indexOf(before) < e.start.indexOf(item);
              assert.ok(
                ended.has(before) || aheadInFlush,
                `${item} started before ${before} had finished`,
              );
            }
          }
        }
        assert.equal(started.size, submitted.length);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("a batch that fails is retried item by item: one bad item fails alone", async () => {
  const batches: number[][] = [];
  const gc = createGroupCommit((items: number[]) => {
    batches.push(items);
    if (items.includes(13)) return Promise.reject(new Error("invalid input for item 13"));
    return Promise.resolve(items.map((i) => i * 10));
  });
  const answers = await Promise.allSettled([1, 13, 2].map((i) => gc.submit(i)));
  assert.deepEqual(batches, [[1, 13, 2], [1], [13], [2]]);
  assert.deepEqual(answers.map((a) => a.status === "fulfilled" ? a.value : "rejected"), [
    10,
    "rejected",
    20,
  ]);
});

Deno.test("an unreachable database fails the whole batch at once, without a retry", async () => {
  const batches: number[][] = [];
  const gc = createGroupCommit((items: number[]) => {
    batches.push(items);
    return Promise.reject(new DatabaseUnavailableError("connection refused"));
  });
  const answers = await Promise.allSettled([1, 2, 3].map((i) => gc.submit(i)));
  assert.deepEqual(batches, [[1, 2, 3]]);
  assert.ok(answers.every((a) => a.status === "rejected"));
});

Deno.test("a deadlock or serialization failure retries the whole batch, at most three times", async () => {
  for (const code of ["40P01", "40001"]) {
    let calls = 0;
    const gc = createGroupCommit((items: number[]) => {
      calls++;
      if (calls < 3) return Promise.reject(Object.assign(new Error(code), { code }));
      return Promise.resolve(items.map((i) => i * 10));
    });
    assert.deepEqual(await Promise.all([1, 2].map((i) => gc.submit(i))), [10, 20]);
    assert.equal(calls, 3, code);
  }
  let calls = 0;
  const always = createGroupCommit((_items: number[]) => {
    calls++;
    return Promise.reject(Object.assign(new Error("deadlock detected"), { code: "40P01" }));
  });
  await assert.rejects(always.submit(1), /deadlock detected/);
  assert.equal(calls, 3);
});
