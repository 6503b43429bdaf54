/**
 * `deno task bench` (scripts/bench.ts): its pure pieces with known answers
 * (flags, signing, alert bodies, HTTP response parsing, the durability and
 * order checks, memory drift, the table), then one tiny real run on PGlite
 * (the ceiling, end to end and a burst, a second each at a low rate) whose
 * JSON must have the documented shape and sane numbers. No performance
 * assertions: a loaded CI box must not fail this.
 */
import assert from "node:assert/strict";
import { createAuthenticator, signHex } from "../core/auth.ts";
import { loadConfig } from "../core/config.ts";
import { normalizeSignal } from "../core/signal.ts";
import {
  alertBody,
  alertId,
  benchSymbols,
  hmacSigner,
  rawRequest,
} from "../scripts/bench/alerts.ts";
import { type CpuProfile, sourceOf, summarizeProfile } from "../scripts/bench/cpu_watch.ts";
import { checkOrder } from "../scripts/bench/order_check.ts";
import { checkDurability, logProblems } from "../scripts/bench/durability.ts";
import { parseBenchArgs, SCENARIOS, timeBoundS, UsageError } from "../scripts/bench/flags.ts";
import { parseLadderArgs } from "../scripts/bench_ladder.ts";
import { POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";
import { IN_CI } from "./_service.ts";
import { load, LOST_ONE } from "./_bench_fixtures.ts";
import { runPaced } from "../scripts/bench/paced_driver.ts";
import {
  type CpuSnapshot,
  cpuSplit,
  parseSchedstat,
  parseStat,
  processTicks,
} from "../scripts/bench/proc.ts";
import { parseResponse } from "../scripts/bench/raw_http.ts";
import {
  BENCH_SERVICE_SETTINGS,
  serviceEnvironment,
  serviceSettingsLine,
} from "../scripts/bench/server_process.ts";
import { formatTable } from "../scripts/bench/format.ts";
import { fullReport, mainTable } from "../scripts/bench/report.ts";
import { busyCores, cpuPerWebhook } from "../scripts/bench/report_blocks.ts";
import { combineRounds, medianRound } from "../scripts/bench/repeat.ts";
import { emptyResult, type ScenarioResult } from "../scripts/bench/results.ts";
import type { BenchReport } from "../scripts/bench/results.ts";
import { targets } from "../scripts/bench/targets.ts";
import fc from "fast-check";
import { redactUrl, resultPath } from "../scripts/bench/run_bench.ts";
import { memoryFigures } from "../scripts/bench/scenario_memory.ts";
import { EMPTY_SUMMARY, summarizeMs } from "../scripts/bench/stats.ts";

const encoder = new TextEncoder();
const SYMBOLS = benchSymbols(3);

Deno.test("bench alerts are distinct, valid signals signed so the real authenticator accepts them", async () => {
  const secret = "bench-test-secret";
  const sign = hmacSigner(secret);
  const auth = createAuthenticator({
    secret,
    toleranceSeconds: 300,
    ipAllowlist: null,
    ipAllowlistRequired: false,
  });
  const bodies = Array.from(
    { length: 12 },
    (_, n) => alertBody(n, { symbols: SYMBOLS, prefix: "t", timeMs: Date.UTC(2026, 0, 5, 15) }),
  );
  assert.equal(new Set(bodies).size, bodies.length);
  for (const body of bodies) {
    assert.equal(sign(body), await signHex(secret, body));
    const verdict = await auth.verify({
      rawBody: encoder.encode(body),
      header: (name) => (name === "x-signature" ? sign(body) : null),
      pathToken: null,
      bodySecret: null,
      clientIp: "127.0.0.1",
      nowMs: Date.now(),
    });
    assert.deepEqual(verdict, { ok: true, method: "signature" });
    assert.equal(normalizeSignal(JSON.parse(body)).ok, true);
  }
  // Alert n: symbol n mod 3; per symbol CALL entry, exit, PUT entry, exit.
  const parsed = bodies.map((b) => JSON.parse(b));
  assert.deepEqual(parsed.slice(0, 4).map((p) => p.symbol), ["B0000", "B0001", "B0002", "B0000"]);
  assert.deepEqual(
    [0, 3, 6, 9].map((n) => `${parsed[n].direction} ${parsed[n].action}`),
    ["CALL ENTRY", "EXIT EXIT", "PUT ENTRY", "EXIT EXIT"],
  );
  assert.equal(parsed[5].id, alertId("t", 5));
  const raw = new TextDecoder().decode(rawRequest(bodies[0], { sign, host: "127.0.0.1:1" }));
  assert.match(raw, /^POST \/webhook HTTP\/1\.1\r\n/);
  assert.ok(raw.endsWith(`\r\n\r\n${bodies[0]}`));
  assert.ok(raw.includes(`content-length: ${encoder.encode(bodies[0]).length}\r\n`));
  // Keys longer than a SHA-256 block are hashed first, as HMAC requires.
  const long = "k".repeat(100);
  assert.equal(hmacSigner(long)("x"), await signHex(long, "x"));
});

Deno.test("parseResponse() reads content-length and chunked bodies and waits for the rest", () => {
  const one = encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
  const r = parseResponse(one)!;
  assert.equal(r.status, 200);
  assert.equal(new TextDecoder().decode(r.body), "hello");
  assert.equal(r.next, one.length);
  assert.equal(parseResponse(one.subarray(0, one.length - 1)), null);
  const chunked = encoder.encode(
    "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n" +
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1",
  );
  const c = parseResponse(chunked)!;
  assert.equal(c.status, 503);
  assert.equal(new TextDecoder().decode(c.body), "abcde");
  assert.equal(c.close, true);
  assert.equal(new TextDecoder().decode(chunked.subarray(c.next)), "HTTP/1.1");
  assert.equal(parseResponse(chunked.subarray(0, c.next - 1)), null);
});

Deno.test("parseBenchArgs() defaults to PGlite, Postgres with DATABASE_URL, and refuses bad flags", () => {
  const plain = parseBenchArgs([], {});
  assert.equal(plain.help, false);
  if (plain.help) return;
  assert.deepEqual(plain.options.dbs, ["pglite"]);
  assert.deepEqual(plain.options.scenarios, ["ceiling", "ingest", "steady", "e2e", "burst"]);
  assert.deepEqual(plain.options.ingestConnections, [16, 64]);
  assert.equal(plain.options.steadyRate, 1000);
  assert.equal(plain.options.e2eRate, 500);
  // Bounded in time: a default run gives up after minutes, not hours.
  const bound = timeBoundS(plain.options);
  assert.ok(bound > 300 && bound < 3600, `time bound ${bound} s`);
  const url = "postgres://postgres@127.0.0.1:5432/postgres";
  const pg = parseBenchArgs(["--memory-minutes", "5", "--service-env", "WORKER_CONCURRENCY=8"], {
    DATABASE_URL: url,
  });
  assert.ok(!pg.help);
  if (pg.help) return;
  assert.deepEqual(pg.options.dbs, ["postgres"]);
  assert.ok(pg.options.scenarios.includes("memory"));
  assert.deepEqual(pg.options.serviceEnv, { WORKER_CONCURRENCY: "8" });
  assert.equal(pg.options.profile, false);
  assert.ok(!parseBenchArgs(["--profile"], {}).help);
  assert.equal(
    (parseBenchArgs(["--profile"], {}) as { options: { profile: boolean } }).options.profile,
    true,
  );
  assert.deepEqual(parseBenchArgs(["--db", "both"], { DATABASE_URL: url }).help, false);
  assert.throws(() => parseBenchArgs(["--db", "postgres"], {}), UsageError);
  assert.throws(
    () => parseBenchArgs(["--scenarios", "ingest,nope"], {}),
    /Unknown scenario "nope"/,
  );
  assert.throws(() => parseBenchArgs(["--duration", "-1"], {}), UsageError);
  assert.throws(() => parseBenchArgs(["--service-env", "lower=1"], {}), UsageError);
  assert.throws(() => parseBenchArgs(["--bogus"], {}), UsageError);
  assert.deepEqual(parseBenchArgs(["-h"], {}), { help: true });
  assert.equal(plain.options.repeat, 1);
  const five = parseBenchArgs(["--repeat", "5"], {});
  assert.ok(!five.help);
  if (five.help) return;
  assert.equal(five.options.repeat, 5);
  // Five rounds take about five times as long, and the bound says so.
  const fiveBound = timeBoundS(five.options);
  assert.ok(fiveBound > 4 * bound && fiveBound < 5 * bound, `${fiveBound} vs ${bound}`);
  for (const bad of ["0", "16", "2.5", "x"]) {
    assert.throws(() => parseBenchArgs(["--repeat", bad], {}), /--repeat/);
  }
  // --split: off by default; only where a second instance can open the database.
  assert.equal(pg.options.split, false);
  const split = parseBenchArgs(["--split", "--db", "both"], { DATABASE_URL: url });
  assert.ok(!split.help && split.options.split);
  assert.throws(() => parseBenchArgs(["--split"], {}), /--split needs --db postgres/);
  assert.throws(
    () =>
      parseBenchArgs(["--split", "--service-env", "WORKER_ENABLED=true"], { DATABASE_URL: url }),
    /--split sets WORKER_ENABLED itself/,
  );
  // The watchdog is a timer (at most 2^31 - 1 ms): a longer bound fired at once, and the run
  // stopped itself at its start. Every run accepted can be bounded.
  assert.throws(() => parseBenchArgs(["--memory-minutes", "1000000"], {}), /more than the 24/);
  fc.assert(
    fc.property(
      fc.record({
        memory: fc.nat({ max: 100_000 }),
        duration: fc.integer({ min: 1, max: 3600 }),
        repeat: fc.integer({ min: 1, max: 15 }),
      }),
      ({ memory, duration, repeat }) => {
        const args = [
          ...["--memory-minutes", String(memory), "--duration", String(duration)],
          ...["--repeat", String(repeat), "--db", "both", "--scenarios", SCENARIOS.join(",")],
        ];
        try {
          const parsed = parseBenchArgs(args, { DATABASE_URL: url });
          assert.ok(!parsed.help && timeBoundS(parsed.options) * 1000 <= 2 ** 31 - 1);
        } catch (error) {
          assert.ok(error instanceof UsageError, String(error));
        }
      },
    ),
    { numRuns: 200 },
  );
  // What the bench gives each server itself: an override would load another database (a real
  // one: its alerts stored and decided there), or a server the bench cannot reach or sign for.
  for (const name of ["DATABASE_URL", "DATA_DIR", "PORT", "WEBHOOK_SECRET"]) {
    for (const env of [{}, { DATABASE_URL: url }]) {
      assert.throws(
        () => parseBenchArgs(["--service-env", `${name}=x`], env),
        new RegExp(`--service-env cannot set ${name}`),
      );
    }
  }
});

const COUNTS = {
  stored: 100,
  storedAll: 100,
  duplicatesRecorded: 0,
  refusals: {},
  jobs: {},
  decisions: 0,
};

Deno.test("the header names the settings every server ran with, --service-env's over the bench's own", () => {
  assert.equal(
    serviceSettingsLine({}),
    "service settings: LOG_LEVEL=warning RATE_LIMIT_PER_MINUTE=10000000 ENFORCE_MARKET_HOURS=false " +
      "MAX_OPEN_POSITIONS=1000000 MAX_EXPOSURE=1000000000000 INSTANCE_ID=bench",
  );
  const line = serviceSettingsLine({ LOG_LEVEL: "info", WORKER_MAX_LAG_MS: "1000" });
  assert.match(
    line,
    / LOG_LEVEL=info WORKER_MAX_LAG_MS=1000 \(from --service-env: LOG_LEVEL, WORKER_MAX_LAG_MS\)$/,
  );
  assert.doesNotMatch(line, /LOG_LEVEL=warning/);
  // What the line says is what the servers get.
  const env = serviceEnvironment({
    port: 1,
    secret: "s",
    database: {},
    overrides: { LOG_LEVEL: "info" },
  });
  for (const [k, v] of Object.entries({ ...BENCH_SERVICE_SETTINGS, LOG_LEVEL: "info" })) {
    assert.equal(env[k], v, k);
  }
});

Deno.test("the paced driver sends each request once, all answered", async () => {
  const seen: number[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push(Number(await req.text()));
    return Response.json({ status: "ACCEPTED" });
  });
  try {
    const r = await runPaced({
      port: server.addr.port,
      rate: 200,
      durationMs: 1000,
      makeRequest: (n) => rawRequest(String(n), { sign: () => "unchecked", host: "x", path: "/" }),
    });
    assert.equal(r.sent, 200);
    assert.equal(r.accepted, 200);
    assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 200 }, (_, n) => n));
  } finally {
    await server.shutdown();
  }
});

Deno.test("the paced driver's ticker never says a request is due before it is", async () => {
  const worker = new Worker(new URL("../scripts/bench/ticker_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const now = () => performance.timeOrigin + performance.now();
  const posts: { due: number; at: number }[] = [];
  const done = Promise.withResolvers<void>();
  const start = { startMs: 0, rate: 500, total: 100 };
  worker.onmessage = (event: MessageEvent<number | "ready">) => {
    if (event.data === "ready") {
      start.startMs = now() + 20;
      worker.postMessage(start);
      return;
    }
    posts.push({ due: event.data, at: now() });
    if (event.data === start.total) done.resolve();
  };
  try {
    await done.promise;
    for (const { due, at } of posts) {
      // `due` requests are due: the last of them, number due - 1, at startMs + (due - 1) * 2 ms.
      assert.ok(
        at >= start.startMs + (due - 1) * 2,
        `told ${due} due ${start.startMs + (due - 1) * 2 - at} ms early`,
      );
    }
    assert.ok(posts.every((p, i) => i === 0 || p.due > posts[i - 1].due), "counts only grow");
  } finally {
    worker.terminate();
  }
});

Deno.test("checkDurability(): every ACCEPTED stored; extra rows only for unanswered requests", () => {
  assert.equal(checkDurability([load()], COUNTS).ok, true);
  // One ACCEPTED answer without its row: the promise is broken.
  assert.equal(checkDurability([load()], { ...COUNTS, storedAll: 99 }).ok, false);
  // Two requests cut off by the client may have committed.
  assert.equal(checkDurability([load({ cutOff: 2 })], { ...COUNTS, storedAll: 102 }).ok, true);
  assert.equal(checkDurability([load({ cutOff: 2 })], { ...COUNTS, storedAll: 103 }).ok, false);
  assert.equal(
    checkDurability([load({ duplicate: 1, accepted: 99 })], { ...COUNTS, storedAll: 99 }).ok,
    false,
  );
  // Void wrk attempts sent requests too.
  const retried = load({ voidAttempts: [load({ accepted: 10 })] });
  assert.equal(checkDurability([retried], { ...COUNTS, storedAll: 110 }).accepted, 110);
  assert.equal(logProblems('{"level":"ERROR","message":"x"}\n{"level":"WARNING"}').errors, 1);
});

Deno.test("checkOrder() finds a symbol whose decisions committed out of receipt order", () => {
  const held = checkOrder([
    { symbol: "A", seq: 1 },
    { symbol: "B", seq: 2 },
    { symbol: "A", seq: 3 },
    { symbol: "B", seq: 5 },
  ]);
  assert.equal(held.held, true);
  assert.equal(held.symbols, 2);
  const broken = checkOrder([{ symbol: "A", seq: 3 }, { symbol: "A", seq: 1 }]);
  assert.equal(broken.held, false);
  assert.deepEqual(broken.violations, [{ symbol: "A", seqs: [3, 1] }]);
});

Deno.test("memoryFigures() measures drift from 30 s in and the slope per minute", () => {
  const samples = [0, 10, 30, 60, 90, 120].map((t) => ({ t, rssMiB: t < 30 ? 80 : 100 + t / 6 }));
  const m = memoryFigures(samples, { minutes: 2, rate: 1000, idleMiB: 70, backlogAtEnd: 0 });
  assert.equal(m.startMiB, 105);
  assert.equal(m.endMiB, 120);
  assert.equal(m.maxMiB, 120);
  assert.equal(m.driftPct, 14.3);
  assert.equal(m.slopeMiBPerMin, 10);
});

Deno.test("summaries, /proc stat parsing, the table and the result file name", () => {
  const s = summarizeMs([5, 1, 4, 2, 3, NaN]);
  assert.deepEqual([s.count, s.p50, s.p99, s.max, s.mean], [5, 3, 5, 5, 3]);
  assert.deepEqual(summarizeMs([]), EMPTY_SUMMARY);
  assert.deepEqual(parseSchedstat("2390551962 731015339 45211\n"), {
    runNs: 2390551962,
    waitNs: 731015339,
  });
  const stat = parseStat("42 (deno (x) y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17");
  assert.equal(stat.comm, "deno (x) y");
  assert.equal(stat.own, 11 + 12);
  assert.equal(stat.children, 13 + 14);
  assert.equal(
    formatTable(["a", "n"], [["x", "1"], ["yy", "100"]]),
    "a     n\n--  ---\nx     1\nyy  100",
  );
  const ceiling = emptyResult("ceiling", "ceiling c=16", "none", load({ acceptedPerSec: 1000 }));
  const ingest = emptyResult("ingest", "ingest c=16", "pglite", load({ acceptedPerSec: 450 }));
  const table = mainTable([ceiling, ingest]);
  assert.match(table, /ingest c=16 +pglite +450 +45 %/);
  assert.equal(
    resultPath("bench-results/", {
      startedAt: "2026-11-22T03:04:05.678Z",
      git: { short: "abc1234" },
    }),
    "bench-results/2026-11-22T03-04-05Z-abc1234.json",
  );
});

/** A profile node; `parent` links are given through `children`. */
function frame(id: number, functionName: string, url: string, children: number[] = []) {
  return { id, callFrame: { functionName, url, lineNumber: 0 }, children };
}

Deno.test("summarizeProfile(): idle, GC and each source once per sample, with known answers", () => {
  const repo = "file:///repo/";
  const profile: CpuProfile = {
    nodes: [
      frame(1, "(root)", "", [2, 3, 4, 5]),
      frame(2, "(idle)", ""),
      frame(3, "(garbage collector)", ""),
      frame(4, "webhook", `${repo}handlers/webhook.ts`, [6]),
      frame(5, "flush", `${repo}db/group_commit.ts`, [7]),
      frame(6, "normalize", `${repo}handlers/webhook.ts`, [8]),
      frame(7, "query", "file:///x/node_modules/.deno/postgres@3.4.9/node_modules/postgres/a.js"),
      frame(8, "verify", ""),
    ],
    // 4 idle, 1 GC, then 5 busy in code: webhook (itself, or via normalize/verify) 3, flush 2.
    samples: [2, 2, 2, 2, 3, 4, 6, 8, 5, 7],
    startTime: 0,
    endTime: 10,
  };
  const s = summarizeProfile(profile, { repoRoot: repo, file: "p.cpuprofile" });
  assert.equal(s.samples, 10);
  assert.equal(s.idlePct, 40);
  assert.equal(s.gcPct, 16.7);
  assert.equal(s.file, "p.cpuprofile");
  assert.equal(s.mainThread, null, "the kernel's figures are watchCpu's, not the profile's");
  assert.deepEqual(s.bySource, [
    // Frames 4 and 6 share a file: the sample in 6 counts once for it.
    { source: "handlers/webhook.ts", pct: 50 },
    { source: "db/group_commit.ts", pct: 33.3 },
    { source: "native verify", pct: 16.7 },
    { source: "npm:postgres@3.4.9", pct: 16.7 },
  ]);
  assert.equal(
    summarizeProfile(profile, { repoRoot: repo, top: 1 }).bySource.length,
    1,
  );
  assert.equal(sourceOf("ext:deno_node/net.ts", "write", repo), "ext:deno_node/net.ts");
  assert.equal(
    sourceOf("file:///r/node_modules/.deno/@logtape+logtape@2.4.2/node_modules/x.js", "f", repo),
    "npm:@logtape/logtape@2.4.2",
  );
  assert.equal(sourceOf("file:///elsewhere/a.ts", "f", repo), "file:///elsewhere/a.ts");
  assert.equal(sourceOf("", "", repo), "native (anonymous)");
  const empty = summarizeProfile({
    nodes: [frame(1, "(root)", "")],
    samples: [],
    startTime: 0,
    endTime: 0,
  }, {
    repoRoot: repo,
  });
  assert.deepEqual([empty.samples, empty.idlePct, empty.gcPct, empty.bySource], [0, 0, 0, []]);
});

Deno.test("summarizeProfile(): on any tree, a source's share is the busy samples with it on the stack", () => {
  const repo = "file:///repo/";
  const urls = ["", `${repo}a.ts`, `${repo}b.ts`, "ext:x.js"];
  fc.assert(
    fc.property(
      // Each node after the root hangs under an earlier one: any tree shape.
      fc.array(fc.record({ parent: fc.nat(), url: fc.nat(3), idle: fc.boolean() }), {
        minLength: 1,
        maxLength: 30,
      }),
      fc.array(fc.nat(), { minLength: 1, maxLength: 200 }),
      (spec, picks) => {
        const nodes = [frame(0, "(root)", "")];
        const parentOf = new Map<number, number>();
        spec.forEach((n, i) => {
          const id = i + 1;
          const parent = n.parent % id;
          parentOf.set(id, parent);
          nodes.push(frame(id, n.idle && parent === 0 ? "(idle)" : `f${id}`, urls[n.url]));
          nodes[parent].children.push(id);
        });
        const samples = picks.map((p) => 1 + (p % spec.length));
        const s = summarizeProfile({ nodes, samples, startTime: 0, endTime: 1 }, {
          repoRoot: repo,
          top: Infinity,
        });
        assert.equal(s.samples, samples.length);
        assert.ok(s.idlePct >= 0 && s.idlePct <= 100);
        const idle = samples.filter((id) => nodes[id].callFrame.functionName === "(idle)").length;
        assert.equal(s.idlePct, Math.round((idle / samples.length) * 1000) / 10);
        for (const { pct } of s.bySource) assert.ok(pct > 0 && pct <= 100);
        // Each source's share is exactly the busy samples with it somewhere on their stack.
        const busy = samples.length - idle;
        const sourceOfNode = (id: number) =>
          sourceOf(nodes[id].callFrame.url, nodes[id].callFrame.functionName, repo);
        for (const { source, pct } of s.bySource) {
          const n = samples.filter((id) => {
            if (nodes[id].callFrame.functionName === "(idle)") return false;
            for (
              let at: number | undefined = id;
              at !== undefined && at !== 0;
              at = parentOf.get(at)
            ) {
              if (sourceOfNode(at) === source) return true;
            }
            return false;
          }).length;
          assert.equal(pct, Math.round((n / busy) * 1000) / 10, source);
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("the report prints the profile block only for profiled rows", () => {
  const plain = emptyResult("ceiling", "ceiling c=16", "none", load({ acceptedPerSec: 1000 }));
  assert.doesNotMatch(fullReport([plain], "header"), /V8 CPU profile/);
  const profiled: ScenarioResult = {
    ...plain,
    profile: {
      file: "x.cpuprofile",
      samples: 1200,
      idlePct: 12.5,
      gcPct: 3.1,
      mainThread: { runPct: 61.2, waitPct: 20 },
      bySource: [{ source: "handlers/webhook.ts", pct: 21.5 }, { source: "native verify", pct: 9 }],
    },
  };
  assert.match(
    fullReport([profiled], "header"),
    /ceiling c=16 +none +1200 +12\.5 % +61\.2 \/ 20 % +3\.1 % +handlers\/webhook\.ts 21\.5 %, native verify 9 %/,
  );
});

Deno.test("cpuSplit names what 'other' was: the busiest other processes by name, and stolen time", () => {
  const snap = (
    atMs: number,
    others: [number, string, number][],
    machine: { busy: number; steal: number },
  ): CpuSnapshot => ({
    atMs,
    service: atMs / 10, // one core
    self: { own: 0, children: 0 },
    postgres: 0,
    others: new Map(others.map(([pid, name, ticks]) => [pid, { name, ticks }])),
    machine: { ...machine, total: 0 },
  });
  const a = snap(0, [[10, "kworker/0:1", 5], [11, "kworker/0:1", 7], [12, "sshd", 100]], {
    busy: 0,
    steal: 40,
  });
  const b = snap(
    10_000,
    // Two of one name add up; sshd was idle; a process born in the window counts whole.
    [[10, "kworker/0:1", 305], [11, "kworker/0:1", 57], [12, "sshd", 100], [13, "pg_dump", 150]],
    { busy: 1_600, steal: 140 },
  );
  const split = cpuSplit(a, b);
  assert.equal(split.service, 1);
  assert.equal(split.other, 0.6);
  assert.deepEqual(split.otherNamed, [
    { name: "kworker/0:1", cores: 0.35 },
    { name: "pg_dump", cores: 0.15 },
    { name: "host steal", cores: 0.1 },
  ]);
  // Read from this machine: this process is among the others until a snapshot leaves it out.
  const live = processTicks(null);
  assert.equal(live.postgres, 0);
  assert.ok(live.others.get(Deno.pid)?.name, "this process, by name");
});

Deno.test("CPU per webhook: the cores a load kept busy over its rate, in µs", () => {
  const cpu = {
    service: 0.61,
    client: 0.26,
    postgres: 0.72,
    other: 0.17,
    otherNamed: [],
    machineBusy: 1.76,
  };
  assert.equal(cpuPerWebhook(cpu, 1000), "610/720");
  assert.equal(cpuPerWebhook({ ...cpu, postgres: 0 }, 2500), "244/0");
  assert.equal(cpuPerWebhook(null, 1000), "-");
  assert.equal(cpuPerWebhook(cpu, 0), "-");
  // 1.57 cores at 20,000/s is 78.5 µs: rounded to 79 (CI found the float edge of the check below).
  assert.equal(cpuPerWebhook({ ...cpu, service: 1.57 }, 20_000), "79/36");
  assert.equal(busyCores(cpu), 1.76);
  // /proc/stat may see less than the processes' own clocks; never less than them.
  assert.equal(busyCores({ ...cpu, other: 0, machineBusy: 0.14 }), 1.59);
  // Read back, each figure gives the cores again to within its rounding.
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 1, max: 20_000 }),
      (service, postgres, perSec) => {
        const split = { ...cpu, service: service / 100, postgres: postgres / 100 };
        const [s, p] = cpuPerWebhook(split, perSec).split("/").map(Number);
        // Half a µs per webhook of rounding, plus the float error of the check itself.
        const bound = perSec / 2e6 + 1e-9;
        assert.ok(Math.abs((s * perSec) / 1e6 - split.service) <= bound);
        assert.ok(Math.abs((p * perSec) / 1e6 - split.postgres) <= bound);
      },
    ),
    { numRuns: 200 },
  );
  const row: ScenarioResult = {
    ...emptyResult("steady", "steady 1000/s", "postgres", load({ acceptedPerSec: 1000 })),
    cpu,
  };
  assert.match(
    fullReport([row], "header"),
    /steady 1000\/s +postgres +0\.61\/0\.26\/0\.72\/0\.17 +1\.76 +610\/720 /,
  );
});

/** A steady row whose ack p99 is `p99`, and a ceiling or ingest row at `perSec`. */
function steadyRow(p99: number | null, over: Partial<ScenarioResult> = {}): ScenarioResult {
  const ackMs = { ...summarizeMs([1, 2, 3]), p99 };
  return { ...emptyResult("steady", "steady 1000/s", "postgres", load({ ackMs })), ...over };
}
function rateRow(scenario: "ceiling" | "ingest", perSec: number): ScenarioResult {
  const label = scenario === "ceiling" ? "ceiling c=16" : "ingest c=64";
  return emptyResult(
    scenario,
    label,
    scenario === "ceiling" ? "none" : "postgres",
    load({
      acceptedPerSec: perSec,
    }),
  );
}

Deno.test("the steady rate on the no-store route is the floor its target reads against", () => {
  const floor = (p99: number) => steadyRow(p99, { db: "none" });
  // Over rounds the floor and the service's row are medians of their own.
  const rows = combineRounds([
    [floor(2.5), steadyRow(12.5)],
    [floor(3.5), steadyRow(14.5)],
    [floor(3), steadyRow(13.5)],
  ]);
  assert.deepEqual(rows.map((r) => [r.db, r.load.ackMs.p99]), [["none", 3], ["postgres", 13.5]]);
  const steady = targets(rows).filter((x) => x.what.startsWith("ack p99"));
  assert.deepEqual(steady.map((x) => [x.what, x.measured, x.pass]), [
    ["ack p99 at 100 req/s [postgres]", "13.5 ms (no-store floor 3.00 ms)", false],
  ]);
  const service = steadyRow(12.5);
  // Another rate's floor says nothing about this one.
  const elsewhere = steadyRow(2.5, { db: "none", load: load({ targetRate: 500 }) });
  assert.equal(
    targets([elsewhere, service]).find((x) => x.what.startsWith("ack p99"))!.measured,
    "12.5 ms",
  );
  assert.match(mainTable(rows), /steady 1000\/s +none +/);
});

Deno.test("--repeat: each row is its median round, by the figure its target reads", () => {
  // Latency: the middle value; with an even count, the worse of the two middle ones.
  const odd = medianRound([steadyRow(30), steadyRow(10), steadyRow(20)]);
  assert.equal(odd.load.ackMs.p99, 20);
  assert.deepEqual(odd.repeats, {
    rounds: 3,
    by: "ack p99",
    values: [30, 10, 20],
    chosen: 3,
    problems: [],
  });
  assert.equal(medianRound([10, 40, 20, 30].map((v) => steadyRow(v))).load.ackMs.p99, 30);
  // Throughput: more is better, so the worse middle of four is the lower one.
  const rates = medianRound([100, 400, 300, 200].map((v) => rateRow("ingest", v)));
  assert.equal(rates.load.acceptedPerSec, 200);
  // A round that measured nothing counts as the worst, never as the best.
  assert.equal(medianRound([steadyRow(null), steadyRow(5), steadyRow(7)]).load.ackMs.p99, 7);
  // One round is the row as it is.
  const single = steadyRow(12);
  assert.equal(medianRound([single]), single);
  assert.throws(() => medianRound([]));
});

Deno.test("--repeat: a check failed in any round reaches the notes and the targets", () => {
  const broken = steadyRow(50, { durability: LOST_ONE });
  // The broken round is the worst, so not the median: the row must still say it failed.
  const row = medianRound([steadyRow(8), broken, steadyRow(9)]);
  assert.equal(row.load.ackMs.p99, 9);
  assert.deepEqual(row.repeats!.problems, ["round 2: stored 9 / ACCEPTED 10 (0 unanswered)"]);
  assert.match(mainTable([row]), /median of 3 by ack p99 \(range 8\.00-50\.0\)/);
  assert.match(mainTable([row]), /CHECKS FAILED IN ROUNDS: round 2: stored 9/);
  const t = targets([row]);
  assert.ok(t.some((x) => x.what.startsWith("every round's checks") && x.pass === false));
  // Errors in a round count too.
  const errored = medianRound([steadyRow(1), steadyRow(2, { load: load({ timeouts: 3 }) })]);
  assert.deepEqual(errored.repeats!.problems, ["round 2: 3 errors"]);
});

Deno.test("--repeat: combineRounds() keeps the first round's row order and the ratio's rows", () => {
  const round = (c: number, i: number, p99: number) => [
    rateRow("ceiling", c),
    rateRow("ingest", i),
    steadyRow(p99),
  ];
  const memory = emptyResult("memory", "memory 5 min", "postgres", load());
  const rows = combineRounds([
    [...round(1000, 400, 12), memory],
    round(900, 500, 9),
    round(1100, 450, 30),
  ]);
  assert.deepEqual(rows.map((r) => r.label), [
    "ceiling c=16",
    "ingest c=64",
    "steady 1000/s",
    "memory 5 min",
  ]);
  assert.equal(rows[0].load.acceptedPerSec, 1000);
  assert.equal(rows[1].load.acceptedPerSec, 450);
  assert.equal(rows[2].load.ackMs.p99, 12);
  assert.equal(rows[3].repeats, null, "memory ran once");
  assert.match(mainTable(rows), /ingest c=64 +postgres +450 +45 %/);
});

Deno.test("--repeat: the chosen round has at most half the rounds better and half worse", () => {
  fc.assert(
    fc.property(
      fc.array(fc.option(fc.double({ min: 0, max: 1e6, noNaN: true }), { nil: null }), {
        minLength: 1,
        maxLength: 15,
      }),
      (values) => {
        const row = medianRound(values.map((v) => steadyRow(v)));
        const n = values.length;
        if (n === 1) return assert.equal(row.repeats, null);
        const bad = (v: number | null) => (v === null ? Infinity : v);
        const chosen = bad(row.load.ackMs.p99);
        assert.equal(row.load.ackMs.p99, values[row.repeats!.chosen - 1]);
        const better = values.filter((v) => bad(v) < chosen).length;
        const worse = values.filter((v) => bad(v) > chosen).length;
        assert.ok(better <= Math.floor(n / 2), `${better} better of ${n}`);
        assert.ok(worse <= Math.ceil(n / 2) - 1, `${worse} worse of ${n}`);
        assert.deepEqual(row.repeats!.values, values);
      },
    ),
    { numRuns: 200 },
  );
});

/** Runs `scripts/bench.ts` with `args` and `env`; asserts it exits 0 and returns what it printed. */
async function runBenchScript(args: string[], env: Record<string, string>): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "scripts/bench.ts", ...args],
    cwd: new URL("../", import.meta.url),
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${text}\n${new TextDecoder().decode(stderr)}`);
  return text;
}

Deno.test({
  name: "deno task bench runs end to end on PGlite and writes the documented JSON",
  // Subprocesses and a PGlite template: nothing of it outlives the test.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "bench-test-" });
    try {
      const text = await runBenchScript([
        ...["--db", "pglite", "--scenarios", "ceiling,steady,e2e,burst", "--duration", "1"],
        ...["--warmup", "0", "--ceiling-connections", "4", "--e2e-rate", "20", "--symbols", "4"],
        ...["--steady-rate", "20"],
        ...["--burst-alerts", "40", "--burst-symbols", "4", "--burst-connections", "8"],
        ...["--drain-timeout", "10", "--out", out, "--quiet", "--profile"],
      ], { DATABASE_URL: "" });
      const names = [...Deno.readDirSync(out)].map((e) => e.name);
      const files = names.filter((n) => n.endsWith(".json"));
      assert.equal(files.length, 1);
      assert.match(files[0], /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ-[0-9a-f]+\.json$/);
      const report = JSON.parse(await Deno.readTextFile(`${out}/${files[0]}`)) as BenchReport;
      // --profile: one raw profile per scenario, named in its row, and the block printed.
      assert.deepEqual(
        names.filter((n) => n.endsWith(".cpuprofile")).sort(),
        report.results.map((r) => r.profile!.file!.slice(out.length + 1)).sort(),
      );
      assert.match(text, /Main thread, V8 CPU profile/);
      const ceilingProfile = JSON.parse(
        await Deno.readTextFile(report.results[0].profile!.file!),
      ) as CpuProfile;
      const route = summarizeProfile(ceilingProfile, {
        repoRoot: new URL("../", import.meta.url).href,
        top: Infinity,
      }).bySource.find((s) => s.source === "handlers/webhook.ts");
      assert.ok(route !== undefined && route.pct > 0, "the ceiling's profile shows the route");
      const main = report.results[0].profile!.mainThread!;
      assert.ok(main.runPct > 0 && main.runPct <= 101 && main.waitPct >= 0, JSON.stringify(main));
      assert.equal(report.schema, "optionstrat-bench/1");
      assert.equal(report.cpuCount, navigator.hardwareConcurrency);
      assert.equal(typeof report.deno.deno, "string");
      assert.equal(report.git.changedDuringRun, false);
      assert.equal(report.rounds, null, "one round: no per-round copy");
      assert.deepEqual(report.results.map((r) => [r.scenario, r.db]), [
        ["ceiling", "none"],
        ["steady", "none"],
        ["steady", "pglite"],
        ["e2e", "pglite"],
        ["burst", "pglite"],
      ]);
      assert.ok(text.includes(report.table.split("\n")[3]), "the table is printed");
      assert.match(
        report.table,
        /^service settings: LOG_LEVEL=warning /m,
        "the settings are printed",
      );
      for (const r of report.results) {
        const a = r.load.ackMs;
        assert.ok(r.load.accepted > 0, `${r.label}: something was accepted`);
        assert.equal(r.load.duplicate, 0, `${r.label}: no DUPLICATE`);
        assert.ok(a.p50! > 0 && a.p50! <= a.p99! && a.p99! <= a.max!, `${r.label}: ack ordered`);
        assert.ok(r.cpu !== null && r.cpu.service >= 0 && r.cpu.client >= 0);
        if (r.db !== "none") {
          assert.equal(r.durability?.ok, true, `${r.label}: ${JSON.stringify(r.durability)}`);
          assert.equal(r.durability?.stored, r.load.accepted);
          assert.ok(r.groupCommit!.transactions >= 1);
          assert.equal(r.stop?.code, 0, "the service stopped cleanly");
          // One instance never finds its book changed by another writer.
          assert.deepEqual(r.book, { conflicts: 0, locked: 0 }, "book counters read");
        }
        if (r.scenario === "e2e" || r.scenario === "burst") {
          assert.equal(r.decisions?.undecided, 0);
          assert.equal(r.decisions?.decided, r.load.accepted);
          assert.equal(r.order?.held, true);
          const e2e = r.decisions!.storedEndToEndMs;
          assert.ok(e2e.p50! > 0 && e2e.p50! <= e2e.p99!);
        }
      }
      // The no-store floor sits under the service's row at the same rate.
      assert.match(
        report.table,
        /ack p99 at 20 req\/s \[pglite\] +[\d.]+ ms \(no-store floor [\d.]+ ms\)/,
      );
      const burst = report.results[4].burst!;
      assert.equal(burst.allAcknowledged, true);
      assert.equal(burst.allDecided, true);
      assert.equal(burst.orderHeld, true);
      assert.ok(burst.lastDecision.lastStoredMs! <= burst.lastDecision.lastObservedMs!);
      assert.ok(burst.allAcknowledgedAfterMs! >= burst.maxAckMs! * 0.99);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "[postgres] deno task bench --split: the loaded instance stores, the second one decides it all",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "bench-split-test-" });
    try {
      // The bench itself refuses a split where the loaded instance decides (its /health says so).
      await runBenchScript([
        ...["--db", "postgres", "--split", "--scenarios", "e2e", "--duration", "1"],
        ...["--warmup", "0", "--e2e-rate", "20", "--symbols", "4", "--drain-timeout", "10"],
        ...["--out", out, "--quiet"],
      ], { DATABASE_URL: TEST_DATABASE_URL });
      const [file] = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) =>
        n.endsWith(".json")
      );
      const report = JSON.parse(await Deno.readTextFile(`${out}/${file}`)) as BenchReport;
      assert.equal(report.options.split, true);
      assert.match(report.table, /^split \(--split\): /m);
      const [e2e] = report.results;
      assert.deepEqual([e2e.scenario, e2e.db], ["e2e", "postgres"]);
      assert.ok(e2e.load.accepted > 0);
      assert.equal(e2e.decisions?.decided, e2e.load.accepted);
      assert.equal(e2e.decisions?.undecided, 0);
      assert.equal(e2e.order?.held, true);
      assert.ok(e2e.claimsPerSec! > 0, `claims/s ${e2e.claimsPerSec}`);
      assert.equal(e2e.stop?.code, 0, "both instances stopped cleanly");
      // Read from the instance that decides (the loaded one has no worker).
      assert.deepEqual(e2e.book, { conflicts: 0, locked: 0 });
      assert.match(report.table, /batches lost \/ locked/);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("the result file's database URL never carries the password, however it is written", () => {
  // Any password the service itself takes (bare, as it stands, or percent-encoded).
  const password = fc.stringMatching(/^[ -~]{4,16}$/).map((s) => `Zq${s}`);
  fc.assert(
    fc.property(password, fc.boolean(), (p, encode) => {
      const url = `postgres://bench:${encode ? encodeURIComponent(p) : p}@db.internal:5432/app`;
      try {
        loadConfig({ DATABASE_URL: url });
      } catch {
        return; // Refused at start-up: never reaches a bench run.
      }
      const shown = redactUrl(url);
      assert.ok(!shown.includes(p) && !shown.includes(encodeURIComponent(p)), shown);
      assert.match(shown, /^postgres:\/\/bench:\*\*\*@db\.internal:5432\/app$/);
    }),
    { numRuns: 300 },
  );
  assert.equal(redactUrl("postgres://app:p@ss@db/x"), "postgres://app:***@db/x");
  assert.equal(redactUrl("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
});

Deno.test({
  name: "deno task bench and bench:ladder refuse an --out they cannot write before running a load",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "bench-out-" });
    // A file where the directory should be: found only after the whole run, the results were lost.
    const file = `${dir}/results`;
    await Deno.writeTextFile(file, "");
    try {
      for (
        const args of [
          [
            "scripts/bench.ts",
            ...["--scenarios", "ceiling", "--duration", "1", "--warmup", "0"],
            ...["--driver", "deno", "--ceiling-connections", "1", "--quiet"],
          ],
          ["scripts/bench_ladder.ts", "--rungs", "bare", "--repeat", "1", "--duration", "1"],
        ]
      ) {
        const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-all", ...args, "--out", `${file}/runs`],
          cwd: new URL("../", import.meta.url),
          env: { DATABASE_URL: "" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const err = new TextDecoder().decode(stderr);
        assert.equal(code, 2, `${args[0]}: ${err}`);
        assert.match(err, new RegExp(`--out ${file}/runs`), args[0]);
        assert.equal(new TextDecoder().decode(stdout), "", `${args[0]} ran a load`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("bench and bench:ladder refuse a DATABASE_URL the driver cannot read, never quoting it", () => {
  // An unreadable one reached the driver, whose TypeError quoted it whole: "Bench failed:
  // TypeError: Invalid URL: 'postgres://postgres:<password>@...'".
  const password = fc.stringMatching(/^[ -~]{4,16}$/).map((s) => `Zq${s}`);
  fc.assert(
    fc.property(password, (p) => {
      const env = { DATABASE_URL: `postgres://bench:${p}@127.0.0.1:5432/postgres` };
      for (const parse of [() => parseBenchArgs([], env), () => parseLadderArgs([], env)]) {
        try {
          parse();
        } catch (error) {
          assert.match(String(error), /DATABASE_URL is not a URL the driver can read/);
          assert.ok(!String(error).includes(p), String(error));
          continue;
        }
        // Accepted: the bench derives its databases' URLs from it without throwing.
        const url = new URL(env.DATABASE_URL);
        url.pathname = "/bench_x";
        assert.equal(new URL(url.toString()).hostname, "127.0.0.1");
      }
    }),
    { numRuns: 200 },
  );
});
