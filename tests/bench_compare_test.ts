/**
 * `deno task bench:compare` (scripts/bench_compare.ts, scripts/bench/compare.ts):
 * runs pooled by variant with known answers, a property over random pools,
 * the command on real files, and the working-tree fingerprint that tells
 * two variants of one commit apart (run_bench.ts gitState, on a throw-away
 * git repository).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  compareRuns,
  comparisonReport,
  type LoadedRun,
  median,
  notABenchReport,
  variantOf,
} from "../scripts/bench/compare.ts";
import { load, LOST_ONE } from "./_bench_fixtures.ts";
import { type BenchReport, emptyResult, type ScenarioResult } from "../scripts/bench/results.ts";
import { gitState } from "../scripts/bench/run_bench.ts";
import { summarizeMs } from "../scripts/bench/stats.ts";
import { parseRunArg } from "../scripts/bench_compare.ts";

function ceiling(perSec: number): ScenarioResult {
  return emptyResult("ceiling", "ceiling c=16", "none", load({ acceptedPerSec: perSec }));
}
function ingest(perSec: number, over: Partial<ScenarioResult> = {}): ScenarioResult {
  return {
    ...emptyResult("ingest", "ingest c=64", "postgres", load({ acceptedPerSec: perSec })),
    ...over,
  };
}
function steady(p99: number): ScenarioResult {
  return emptyResult(
    "steady",
    "steady 1000/s",
    "postgres",
    load({ ackMs: { ...summarizeMs([1, 2, 3]), p99 } }),
  );
}

function report(
  rows: ScenarioResult[][],
  o: { diff?: string; env?: Record<string, string>; at?: string } = {},
): BenchReport {
  return {
    schema: "optionstrat-bench/1",
    startedAt: o.at ?? "2026-12-06T14:00:00.000Z",
    finishedAt: o.at ?? "2026-12-06T14:01:00.000Z",
    git: {
      sha: "b2ec60a324ef69bde4ddd51d86c69c97628974d9",
      short: "b2ec60a",
      dirty: o.diff !== undefined,
      diff: o.diff ?? "e3b0c44298fc1c14",
      changedDuringRun: false,
      atEnd: { sha: null, short: null, dirty: null, diff: null },
    },
    deno: Deno.version,
    cpuCount: 2,
    loadAverage: { start: [0, 0, 0], end: [0, 0, 0] },
    argv: [],
    options: { serviceEnv: o.env ?? {} } as unknown as BenchReport["options"],
    results: rows[0],
    rounds: rows.length > 1 ? rows : null,
    table: "",
  };
}

const run = (r: BenchReport, file = "x.json", label?: string): LoadedRun => ({
  file,
  report: r,
  ...(label === undefined ? {} : { label }),
});

Deno.test("variants: the commit, +the changes' fingerprint when dirty, then the service env in order", () => {
  assert.equal(variantOf(report([[]])), "b2ec60a");
  assert.equal(variantOf(report([[]], { diff: "0123456789abcdef" })), "b2ec60a+01234567");
  assert.equal(
    variantOf(report([[]], { env: { WORKER_MAX_LAG_MS: "1", LOG_LEVEL: "info" } })),
    "b2ec60a LOG_LEVEL=info WORKER_MAX_LAG_MS=1",
  );
});

Deno.test("bench:compare pools each variant's runs and rounds: medians, ranges, change, ratio", () => {
  const base = [
    // A --repeat 3 run: each round counts, each ratio against its own round's ceiling.
    run(report([
      [ceiling(5000), ingest(2500), steady(20)],
      [ceiling(4000), ingest(2400), steady(30)],
      [ceiling(6000), ingest(3000), steady(10)],
    ])),
  ];
  const changed = [
    run(report([[ceiling(5000), ingest(2000), steady(12)]], { diff: "aaaaaaaaaaaaaaaa" })),
    run(report([[ceiling(5000), ingest(2200), steady(8)]], { diff: "aaaaaaaaaaaaaaaa" })),
  ];
  const rows = compareRuns([...base, ...changed]);
  assert.deepEqual(rows.map((r) => [r.label, r.variant, r.runs]), [
    ["ceiling c=16", "b2ec60a", 3],
    ["ceiling c=16", "b2ec60a+aaaaaaaa", 2],
    ["ingest c=64", "b2ec60a", 3],
    ["ingest c=64", "b2ec60a+aaaaaaaa", 2],
    ["steady 1000/s", "b2ec60a", 3],
    ["steady 1000/s", "b2ec60a+aaaaaaaa", 2],
  ]);
  const [, , ingestBase, ingestChanged, steadyBase, steadyChanged] = rows;
  assert.equal(ingestBase.acceptedPerSec, 2500);
  // 2500/5000, 2400/4000, 3000/6000: 50, 60, 50 % -> 50.
  assert.equal(ingestBase.pctCeiling, 50);
  assert.deepEqual(ingestBase.key, { by: "accepted/s", median: 2500, min: 2400, max: 3000 });
  assert.equal(ingestBase.changePct, null);
  assert.equal(ingestChanged.acceptedPerSec, 2100);
  assert.equal(ingestChanged.changePct, -16);
  assert.equal(ingestChanged.better, false, "less throughput is worse");
  assert.equal(steadyBase.ackP99, 20);
  assert.equal(steadyChanged.ackP99, 10);
  assert.equal(steadyChanged.changePct, -50);
  assert.equal(steadyChanged.better, true, "less latency is better");
  assert.equal(steadyChanged.pctCeiling, null);

  const text = comparisonReport([...base, ...changed]);
  assert.match(text, /3 bench result files, 2 variants/);
  assert.match(text, /ingest c=64 +postgres +b2ec60a\+aaaaaaaa +2 +2,100 +42 % /);
  assert.match(text, /accepted\/s 2,500 \(2,400-3,000\) +- +-/);
  assert.match(text, /ack p99 10\.0 \(8\.00-12\.0\) +-50 % better/);
  assert.match(text, /ingest c=64 .* -16 % worse/);
});

Deno.test("bench:compare: a label puts a run in a variant of its own; a broken run is counted", () => {
  const lost = ingest(3000, { durability: LOST_ONE });
  const rows = compareRuns([
    run(report([[ingest(2000)]]), "a.json", "before"),
    run(report([[lost]]), "b.json", "after"),
    run(report([[ingest(2600)]]), "c.json", "after"),
  ]);
  assert.deepEqual(rows.map((r) => [r.variant, r.runs, r.failedRuns, r.acceptedPerSec]), [
    ["before", 1, 0, 2000],
    ["after", 2, 1, 2800],
  ]);
  // A row the first variant lacks is compared with nothing, not with the next variant.
  const later = compareRuns([
    run(report([[steady(10)]]), "a.json", "first"),
    run(report([[ingest(2000)]]), "b.json", "second"),
    run(report([[ingest(3000)]]), "c.json", "third"),
  ]);
  assert.deepEqual(later.map((r) => [r.label, r.variant, r.changePct]), [
    ["steady 1000/s", "first", null],
    ["ingest c=64", "second", null],
    ["ingest c=64", "third", null],
  ]);
  assert.match(
    comparisonReport([run(report([[lost]]), "b.json", "after")]),
    /ingest c=64 +postgres +after +1 +3,000 .* 1 of 1$/m,
  );
});

Deno.test("bench:compare on any pool: the median lies in the range, and 'better' follows the sign", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 9 }),
      fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 9 }),
      fc.boolean(),
      (first, second, throughput) => {
        const row = (v: number) => (throughput ? ingest(v) : steady(v / 100));
        const runs = [
          ...first.map((v) => run(report([[row(v)]]))),
          ...second.map((v) => run(report([[row(v)]], { diff: "bbbbbbbbbbbbbbbb" }))),
        ];
        // The order of runs within a variant does not matter.
        const shuffled = [...runs.slice(0, first.length).reverse(), ...runs.slice(first.length)];
        const [a, b] = compareRuns(runs);
        assert.deepEqual(compareRuns(shuffled), [a, b]);
        for (const [r, values] of [[a, first], [b, second]] as const) {
          const figures = values.map((v) => (throughput ? v : v / 100));
          assert.equal(r.runs, values.length);
          assert.ok(r.key.min! <= r.key.median! && r.key.median! <= r.key.max!);
          assert.equal(r.key.min, Math.min(...figures));
          assert.equal(r.key.max, Math.max(...figures));
        }
        const change = b.changePct!;
        assert.ok(
          Math.abs(change - (100 * (b.key.median! - a.key.median!)) / a.key.median!) < 1e-9,
        );
        if (change === 0) assert.equal(b.better, null);
        else assert.equal(b.better, throughput ? change > 0 : change < 0);
      },
    ),
    { numRuns: 200 },
  );
  assert.equal(median([]), null);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

Deno.test("bench:compare arguments: LABEL=FILE names a variant, a path alone does not", () => {
  assert.deepEqual(parseRunArg("before=bench-results/a.json"), {
    label: "before",
    file: "bench-results/a.json",
  });
  assert.deepEqual(parseRunArg("bench-results/a.json"), { file: "bench-results/a.json" });
  assert.deepEqual(parseRunArg("./x=1/a.json"), { file: "./x=1/a.json" });
  assert.equal(notABenchReport([]), 'schema is undefined, not "optionstrat-bench/1"');
  assert.equal(notABenchReport(null), "not a JSON object");
  assert.equal(notABenchReport({ schema: "optionstrat-bench/1" }), "no results array");
  assert.equal(notABenchReport(report([[ceiling(1)]])), null);
});

async function compareCommand(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      new URL("../scripts/bench_compare.ts", import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("deno task bench:compare prints files side by side and refuses what is not a bench result", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-compare-" });
  try {
    const a = join(dir, "a.json");
    const b = join(dir, "b.json");
    const bad = join(dir, "bad.json");
    await Deno.writeTextFile(a, JSON.stringify(report([[ceiling(5000), steady(20)]])));
    await Deno.writeTextFile(
      b,
      JSON.stringify(report([[ceiling(5000), steady(15)]], { env: { WORKER_MAX_LAG_MS: "1" } })),
    );
    await Deno.writeTextFile(bad, JSON.stringify({ hello: "world" }));

    const ok = await compareCommand([a, b]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /2 bench result files, 2 variants/);
    assert.match(
      ok.stdout,
      /steady 1000\/s +postgres +b2ec60a WORKER_MAX_LAG_MS=1 +1 .* -25 % better/,
    );

    const labelled = await compareCommand([`before=${a}`, `before=${b}`]);
    assert.equal(labelled.code, 0, labelled.stderr);
    assert.match(labelled.stdout, /1 variants/);
    assert.match(labelled.stdout, /steady 1000\/s +postgres +before +2 /);

    const refused = await compareCommand([a, bad]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /bad\.json: not a bench result \(schema is undefined/);
    const missing = await compareCommand([join(dir, "nope.json")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.json: no such file/);
    const none = await compareCommand([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Compare bench runs/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function inRepo(dir: string, ...args: string[]) {
  const out = await new Deno.Command("git", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test("the bench's fingerprint of the working tree sees edits and new files, not ignored ones or prose", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-git-" });
  try {
    const root = pathToFileURL(`${dir}/`);
    await inRepo(dir, "init", "-q");
    await Deno.writeTextFile(join(dir, "main.ts"), "export const a = 1;\n");
    await Deno.writeTextFile(join(dir, "README.md"), "# one\n");
    await Deno.writeTextFile(join(dir, ".gitignore"), "/bench-results/\n");
    await inRepo(dir, "add", ".");
    await inRepo(dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one");

    const clean = await gitState(root);
    assert.equal(clean.dirty, false);
    assert.match(clean.short!, /^[0-9a-f]{7,}$/);

    await Deno.mkdir(join(dir, "bench-results"));
    await Deno.writeTextFile(join(dir, "bench-results", "r.json"), "{}");
    assert.deepEqual(await gitState(root), clean, "ignored files change nothing");

    await Deno.writeTextFile(join(dir, "README.md"), "# edited while a run measured\n");
    await Deno.mkdir(join(dir, "docs"));
    await Deno.writeTextFile(join(dir, "docs", "notes.md"), "a new page\n");
    assert.deepEqual(await gitState(root), clean, "Markdown changes nothing");

    await Deno.writeTextFile(join(dir, "scratch.sql"), "drop index x;\n");
    const added = await gitState(root);
    assert.equal(added.dirty, true);
    assert.notEqual(added.diff, clean.diff);
    await Deno.writeTextFile(join(dir, "scratch.sql"), "drop index y;\n");
    const other = await gitState(root);
    assert.notEqual(other.diff, added.diff, "the new file's content counts");

    await Deno.remove(join(dir, "scratch.sql"));
    await Deno.writeTextFile(join(dir, "main.ts"), "export const a = 2;\n");
    const edited = await gitState(root);
    assert.equal(edited.dirty, true);
    assert.notEqual(edited.diff, clean.diff);
    assert.notEqual(edited.diff, added.diff);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
