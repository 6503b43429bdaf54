/**
 * Crash: the real service under a steady stream of signed webhooks is
 * killed with SIGKILL (no shutdown, no flush) several times, each time while
 * the pipeline holds claimed jobs, and restarted on the same database. Then
 * every request that got no answer is re-sent byte for byte, as TradingView
 * does, and once the pipeline has drained the database must hold every
 * alert exactly once, each ACCEPTED one with the id it was given, each with
 * exactly one decision, per-symbol order kept, nothing half-written, no job
 * left claimed by a dead process. On Postgres and on the embedded default
 * (PGlite files under DATA_DIR).
 */
import assert from "node:assert/strict";
import { openPglite } from "../../db/pglite.ts";
import type { Database } from "../../db/port.ts";
import { POSTGRES_REACHABLE } from "../_db.ts";
import {
  delay,
  freePort,
  IN_CI,
  scratchPostgres,
  seedPglite,
  type Service,
  startService,
} from "../_service.ts";
import { fakeProvider } from "./_provider.ts";
import { accepted, assertClean, audit, deliver, drained, type Sent, stream } from "./_traffic.ts";

const KILLS = 3;
const CLIENTS = 8;

/**
 * Waits until /health shows claimed jobs twice in a row (a claim held across
 * two answers, waiting on the slow provider: a kill right after strands it),
 * up to `ms`; true if seen. Once was not enough: on a fast database a claim
 * seen once could be written before the kill, and a run stranded none.
 */
async function untilJobsRunning(service: Service, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  let seen = 0;
  while (Date.now() < until) {
    try {
      const res = await fetch(`${service.base}/health`);
      const running = (await res.json()).components?.pipeline?.running;
      seen = running > 0 ? seen + 1 : 0;
      if (seen === 2) return true;
    } catch {
      // Starting or busy: ask again.
      seen = 0;
    }
  }
  return false;
}

async function crashLoop(
  driver: string,
  env: Record<string, string>,
  openAfterwards: () => Promise<Database>,
): Promise<void> {
  // A context provider that takes 200 ms, so a batch that fetches holds its
  // claim long enough for a kill to land while it is claimed.
  const provider = fakeProvider(() => "ok", { okDelayMs: 200 });
  const serviceEnv = {
    ...env,
    ENFORCE_MARKET_HOURS: "false",
    CONTEXT_URL: `${provider.url}/context/{symbol}`,
    CONTEXT_TTL_SECONDS: "1",
    // Long enough that only the dead session, not the timeout, can free a claim in time.
    JOB_CLAIM_TIMEOUT_SECONDS: "600",
  };
  const prefix = `crash-${driver}-${crypto.randomUUID().slice(0, 8)}`;
  const port = freePort();
  const first: Sent[] = [];
  let killsWithClaims = 0;
  /** Jobs each restart found claimed by a dead process and took back ("Reclaimed N jobs"). */
  let reclaimed = 0;
  const countReclaimed = (s: Service) => {
    for (const line of s.lines) {
      const m = /Reclaimed (\d+) jobs/.exec(line);
      if (m) reclaimed += Number(m[1]);
    }
  };
  let service: Service | null = null;
  try {
    for (let round = 0; round < KILLS; round++) {
      service = await startService(serviceEnv, { port });
      const s = stream([service.base], { prefix, clients: CLIENTS, stopOnDisconnect: true });
      while (accepted(s.sent).length < 30) await delay(10);
      if (await untilJobsRunning(service, 3_000)) killsWithClaims++;
      await service.kill9();
      countReclaimed(service);
      service = null;
      await s.done;
      first.push(...s.sent);
    }

    // The last start: it must reclaim the dead processes' claims by itself.
    service = await startService(serviceEnv, { port });
    const unanswered = first.filter((s) => s.outcome !== 200);
    const resent = await Promise.all(unanswered.map((s) => deliver(service!.base, s)));
    for (const r of resent) {
      assert.equal(r.outcome, 200, `re-send of ${r.alertId}: ${r.outcome} ${r.code ?? ""}`);
    }
    await drained(service.base, 60_000);
    countReclaimed(service);
    service.child.kill("SIGTERM");
    assert.equal((await service.child.status).code, 0);
    service = null;

    const db = await openAfterwards();
    try {
      const answers = [...first.filter((s) => s.outcome === 200), ...resent];
      const a = await audit(db, prefix, answers);
      const sentAlerts = new Set(first.map((s) => s.alertId));
      const firstAccepted = accepted(first).length;
      // A commit whose answer died with the process: its re-send says DUPLICATE.
      const landedUnanswered = resent.filter((r) => r.status === "DUPLICATE").length;
      const [{ running }] = await db.query<{ running: number }>(
        "select count(*)::integer as running from pipeline_jobs where status = 'running'",
      );
      console.log(
        `crash [${driver}]: ${KILLS} kill -9 (${killsWithClaims} with jobs claimed), ` +
          `${sentAlerts.size} alerts sent, ${firstAccepted} acknowledged before a kill, ` +
          `${unanswered.length} unanswered and re-sent (${landedUnanswered} had committed), ` +
          `${a.found} found, ${a.decided} decided, ${a.lost.length} lost, ` +
          `${a.doubled.length} doubled; ${reclaimed} claims of dead processes reclaimed on restart`,
      );
      assertClean(a);
      assert.equal(a.found, sentAlerts.size, "an alert re-sent until answered is not stored");
      assert.equal(a.decided, sentAlerts.size);
      assert.equal(running, 0);
      assert.ok(reclaimed > 0, "no kill stranded a claimed job: the reclaim went untested");
    } finally {
      await db.close();
    }
  } finally {
    await service?.kill9();
    await provider.close();
  }
}

Deno.test({
  name: "[pglite] kill -9 mid-stream, 3 times: every ACCEPTED signal survives and is decided once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-crash-" });
    try {
      await seedPglite(dataDir);
      await crashLoop("pglite", { DATA_DIR: dataDir }, () => openPglite(`${dataDir}/pglite`));
    } finally {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "[postgres] kill -9 mid-stream, 3 times: every ACCEPTED signal survives and is decided once",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const scratch = await scratchPostgres("crash");
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-crash-" });
    try {
      await crashLoop(
        "postgres",
        { DATABASE_URL: scratch.url, DATA_DIR: dataDir },
        () => scratch.open(),
      );
    } finally {
      await scratch.drop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
