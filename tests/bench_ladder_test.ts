/**
 * `deno task bench:ladder`: the rungs' median and the issue's targets carried
 * to this machine, with known answers and a property; the verifying rung's
 * route through its real Hono app with real signatures.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { signHex } from "../core/auth.ts";
import { alertBody } from "../scripts/bench/alerts.ts";
import {
  ladderReport,
  medianRun,
  type RungResult,
  type RungRun,
  RUNGS,
  scaledTargets,
} from "../scripts/bench/ladder.ts";
import { verifyingApp } from "../scripts/bench/ladder_server.ts";
import { parseLadderArgs } from "../scripts/bench_ladder.ts";

const run = (perSec: number, p99Ms = 1): RungRun => ({ perSec, p50Ms: 0.5, p99Ms, errors: 0 });

function result(name: string, connections: number, runs: RungRun[]): RungResult {
  const rung = RUNGS.find((r) => r.name === name && r.connections === connections)!;
  return { rung, runs, skipped: null };
}

Deno.test("medianRun: the middle run by throughput, the lower middle of an even count", () => {
  assert.deepEqual(medianRun([run(300, 3), run(100, 1), run(200, 2)]), run(200, 2));
  assert.deepEqual(medianRun([run(400), run(100), run(300), run(200)]), run(200));
  assert.deepEqual(medianRun([run(7, 9)]), run(7, 9));
});

Deno.test("medianRun: a run that happened, with as many runs above it as below, or one more", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 9 }), (
      rates,
    ) => {
      const runs = rates.map((r, i) => run(r, i));
      const m = medianRun(runs);
      assert.ok(runs.includes(m));
      const below = rates.filter((r) => r < m.perSec).length;
      const above = rates.filter((r) => r > m.perSec).length;
      assert.ok(below <= Math.floor((rates.length - 1) / 2));
      assert.ok(above <= Math.ceil((rates.length - 1) / 2));
    }),
    { numRuns: 200 },
  );
});

Deno.test("scaledTargets: the PGlite target as twice this machine's naive rung, the steady share", () => {
  const t = scaledTargets([
    result("verify", 16, [run(10_000), run(11_000), run(12_000)]),
    result("pglite", 16, [run(1_500), run(1_700), run(1_600)]),
  ]);
  // 2,500 was 2x the issue machine's 1,250/s; this machine's naive rung is 1,600/s.
  assert.deepEqual(t.pgliteTarget, { issue: 2_500, multipleOfNaive: 2, here: 3_200 });
  assert.equal(t.steadyShare?.issue, 1_000 / 22_000);
  assert.equal(t.steadyShare?.here, 1_000 / 11_000);
  // Without the rungs they need, nothing is carried over.
  const none = scaledTargets([result("bare", 16, [run(50_000)])]);
  assert.equal(none.pgliteTarget, null);
  assert.equal(none.steadyShare, null);
});

Deno.test("ladderReport: every rung a row, skipped ones say why", () => {
  const skipped: RungResult = { ...result("pgbench", 16, []), skipped: "DATABASE_URL not set" };
  const text = ladderReport([result("pglite", 16, [run(1_600, 30), run(1_700, 20)]), skipped]);
  assert.match(
    text,
    /same on PGlite \(file-backed\), one INSERT per request\s+16\s+1,600\s+1,600-1,700/,
  );
  assert.match(text, /1\.28x/);
  assert.match(text, /pgbench, one-row INSERT per transaction.*skipped: DATABASE_URL not set/);
  assert.match(text, /the same multiple of this machine's rung is 3,200\/s/);
});

Deno.test("the verifying rung: answers ACCEPTED only to a genuine, valid alert", async () => {
  const secret = "ladder-test-secret";
  const inserted: string[] = [];
  const app = await verifyingApp(secret, (_id, symbol) => {
    inserted.push(symbol);
    return Promise.resolve();
  });
  const body = alertBody(0, { symbols: ["SPY"], prefix: "ladder-test", timeMs: Date.now() });
  const post = async (text: string, signature: string) => {
    const res = await app.request("/webhook", {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": signature },
      body: text,
    });
    return { status: res.status, body: await res.json() };
  };
  assert.deepEqual(await post(body, await signHex(secret, body)), {
    status: 200,
    body: { status: "ACCEPTED" },
  });
  assert.equal((await post(body, await signHex("another secret", body))).status, 401);
  assert.equal((await post(body, "not hex")).status, 401);
  assert.equal((await post("{nope", await signHex(secret, "{nope"))).status, 400);
  const invalid = JSON.stringify({ symbol: "SPY" });
  assert.equal((await post(invalid, await signHex(secret, invalid))).status, 422);
  assert.deepEqual(inserted, ["SPY"]);
});

Deno.test("bench:ladder flags: whole numbers within bounds; a blank DATABASE_URL is unset", () => {
  const plain = parseLadderArgs([], {})!;
  assert.deepEqual([plain.repeat, plain.durationS, plain.warmupS], [5, 10, 2]);
  assert.equal(plain.databaseUrl, null);
  assert.equal(parseLadderArgs([], { DATABASE_URL: "  " })!.databaseUrl, null);
  const url = "postgres://postgres@127.0.0.1:5432/postgres";
  assert.equal(parseLadderArgs([], { DATABASE_URL: ` ${url} ` })!.databaseUrl, url);
  assert.throws(() => parseLadderArgs([], { DATABASE_URL: "127.0.0.1:5432" }), /DATABASE_URL/);
  // Any number as a flag: taken as written within its bounds, or refused naming the flag.
  const bounds = { repeat: [1, 15], duration: [1, 3600], warmup: [0, 600] } as const;
  fc.assert(
    fc.property(
      fc.constantFrom("repeat", "duration", "warmup"),
      fc.oneof(
        fc.nat({ max: 10_000 }).map(String),
        fc.constantFrom("1e12", "1e308", "0x10", "", " ", "2.5", "-1", "10s", "5m"),
      ),
      (flag, value) => {
        const [min, max] = bounds[flag];
        const ok = /^\d+$/.test(value) && Number(value) >= min && Number(value) <= max;
        let parsed;
        try {
          parsed = parseLadderArgs([`--${flag}=${value}`], {})!;
        } catch (error) {
          assert.ok(!ok, `${flag}=${value} refused: ${error}`);
          assert.match(String(error), new RegExp(`--${flag} must be a whole number`));
          return;
        }
        assert.ok(ok, `${flag}=${JSON.stringify(value)} accepted`);
        const got = { repeat: parsed.repeat, duration: parsed.durationS, warmup: parsed.warmupS };
        assert.equal(got[flag], Number(value));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test({
  name: "deno task bench:ladder with DATABASE_URL blank skips the Postgres rungs, as when unset",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "bench-ladder-" });
    try {
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: [
          ...["run", "--allow-all", "scripts/bench_ladder.ts", "--rungs", "postgres"],
          ...["--repeat", "1", "--duration", "1", "--warmup", "0", "--out", out],
        ],
        cwd: new URL("../", import.meta.url),
        env: { DATABASE_URL: "" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      const [file] = [...Deno.readDirSync(out)].map((e) => e.name);
      const report = JSON.parse(await Deno.readTextFile(`${out}/${file}`));
      assert.deepEqual(
        report.results.map((r: RungResult) => r.skipped),
        ["DATABASE_URL not set", "DATABASE_URL not set"],
      );
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
