/**
 * The group commit on its own: batching, and the busy/idle signal the
 * pipeline worker uses to let webhook commits go first.
 */
import assert from "node:assert/strict";
import { createGroupCommit } from "../db/group_commit.ts";

/** A flush the test releases by hand, recording each batch. */
function heldFlush() {
  const batches: number[][] = [];
  const releases: (() => void)[] = [];
  const flush = (items: number[]) => {
    batches.push(items);
    return new Promise<number[]>((resolve) =>
      releases.push(() => resolve(items.map((i) => i * 10)))
    );
  };
  return { batches, flush, releaseNext: () => releases.shift()!() };
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
  await new Promise((r) => setTimeout(r, 0));
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
  await new Promise((r) => setTimeout(r, 10));
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
  const tick = () => new Promise((r) => setTimeout(r, 10));
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
