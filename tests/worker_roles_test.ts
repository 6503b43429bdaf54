/**
 * WORKER_ENABLED=false: two real services on one Postgres database, one that
 * only acknowledges webhooks and one that decides. What the first stores
 * waits, undecided, until the second runs, and each says in /health and
 * /metrics whether it decides.
 */
import assert from "node:assert/strict";
import { countRows, signed, uniqueSignal } from "./_app.ts";
import { POSTGRES_REACHABLE } from "./_db.ts";
import { delay, IN_CI, scratchPostgres, type Service, startService, waitFor } from "./_service.ts";

const SIGNALS = 5;

async function getJson(service: Service, path: string) {
  const res = await fetch(`${service.base}${path}`);
  assert.equal(res.status, 200, path);
  return await res.json();
}

Deno.test({
  name: "[postgres] an instance with WORKER_ENABLED=false acknowledges and stores; another decides",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const scratch = await scratchPostgres("roles");
    const services: Service[] = [];
    try {
      const env = { DATABASE_URL: scratch.url, ENFORCE_MARKET_HOURS: "false" };
      const acknowledger = await startService({ ...env, WORKER_ENABLED: "false" });
      services.push(acknowledger);
      await acknowledger.waitForLine(/WORKER_ENABLED=false: this instance acknowledges/, 5_000);
      const ids: string[] = [];
      for (let i = 0; i < SIGNALS; i++) {
        const res = await fetch(
          `${acknowledger.base}/webhook`,
          await signed(JSON.stringify(uniqueSignal({ ticker: `ROLE${i}` }))),
        );
        const body = await res.json();
        assert.equal(res.status, 200);
        assert.equal(body.status, "ACCEPTED");
        ids.push(body.signal_id);
      }
      // The scratch database holds only this test's signals.
      const db = await scratch.open();
      const decided = () => countRows(db, "decisions");
      // Longer than the worker's poll (500 ms) and its NOTIFY: a running worker would have decided.
      await delay(1_500);
      assert.equal(await decided(), 0, "the acknowledging instance decided signals");
      const pending = await db.query<{ status: string }>(
        "select status from pipeline_jobs where signal_id = any ($1::uuid[])",
        [ids],
      );
      assert.deepEqual(pending.map((j) => j.status), Array(SIGNALS).fill("pending"));
      const health = await getJson(acknowledger, "/health");
      assert.equal(health.components.pipeline.worker_on_this_instance, false);
      assert.equal(health.components.pipeline.pending, SIGNALS);
      assert.equal((await getJson(acknowledger, "/metrics")).worker, null);

      const decider = await startService(env);
      services.push(decider);
      await waitFor(
        "the other instance's decisions",
        async () => await decided() === SIGNALS ? true : undefined,
        15_000,
      );
      assert.equal(
        (await getJson(decider, "/health")).components.pipeline.worker_on_this_instance,
        true,
      );
      assert.notEqual((await getJson(decider, "/metrics")).worker, null);
      const after = await getJson(acknowledger, "/health");
      assert.equal(after.components.pipeline.pending, 0);
    } finally {
      for (const s of services) await s.kill9();
      await scratch.drop();
    }
  },
});
