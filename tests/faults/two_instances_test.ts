/**
 * Two instances on one database, as on Fly with two machines: a storm of
 * identical and near-identical alerts sent to both at once. Each alert is
 * stored once, whichever instance and however many deliveries; re-spelled
 * copies (keys in another order, whitespace, `ticker` for `symbol`) are the
 * same alert; alerts one second apart are not. Each stored signal is
 * decided exactly once, per-symbol order holds across the two workers, and
 * the SSE clients of either instance see every signal and decision event.
 */
import assert from "node:assert/strict";
import { signed, uniqueSignal } from "../_app.ts";
import { POSTGRES_REACHABLE } from "../_db.ts";
import { delay, IN_CI, scratchPostgres, type Service, startService } from "../_service.ts";
import { checkOrder } from "../../scripts/bench/order_check.ts";
import { fakeProvider } from "./_provider.ts";
import { deliver, drained, type Sent } from "./_traffic.ts";

const SYMBOLS = [
  "SPY",
  "QQQ",
  "IWM",
  "DIA",
  "AAPL",
  "MSFT",
  "NVDA",
  "TSLA",
  "AMZN",
  "META",
  "AMD",
  "GOOG",
];

/** Every event an /events client receives, by kind, as the signal ids they name. */
function watchEvents(base: string) {
  const seen = { signal: new Set<string>(), decision: new Set<string>() };
  const controller = new AbortController();
  const ready = Promise.withResolvers<void>();
  const done = (async () => {
    const res = await fetch(`${base}/events`, { signal: controller.signal });
    let buffer = "";
    try {
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === "ready") ready.resolve();
          if (event === "signal" && data) seen.signal.add(JSON.parse(data).id);
          if (event === "decision" && data) seen.decision.add(JSON.parse(data).signal_id);
        }
      }
    } catch {
      // Aborted at the end of the test.
    }
  })();
  return {
    seen,
    ready: ready.promise,
    async close() {
      controller.abort();
      await done;
    },
  };
}

interface Canonical {
  name: string;
  /** Every delivery of this one alert: [instance index, signed request]. */
  deliveries: [number, RequestInit][];
}

/** Keys in reverse order, spaced out, `ticker` for `symbol`: the same alert to the dedup key. */
function respelled(signal: Record<string, unknown>): string {
  const { symbol, ...rest } = signal;
  const entries = Object.entries({ ...rest, ticker: symbol }).reverse();
  return JSON.stringify(Object.fromEntries(entries), null, 2);
}

async function storm(prefix: string): Promise<Canonical[]> {
  const alerts: Canonical[] = [];
  // With an alert id: the identical bytes, twice to each instance.
  for (let i = 0; i < 100; i++) {
    const body = JSON.stringify(
      uniqueSignal({ id: `${prefix}-${i}`, symbol: SYMBOLS[i % SYMBOLS.length] }),
    );
    const init = await signed(body);
    alerts.push({
      name: `${prefix}-${i}`,
      deliveries: [[0, init], [1, init], [0, init], [1, init]],
    });
  }
  // Without an id: the content decides. The original to one instance, a
  // re-spelled copy to the other, and a neighbour one second later (distinct).
  for (let i = 0; i < 40; i++) {
    const signal = uniqueSignal({ symbol: SYMBOLS[i % SYMBOLS.length] });
    const later = {
      ...signal,
      timestamp: new Date(Date.parse(signal.timestamp as string) + 1000).toISOString(),
    };
    alerts.push({
      name: `content-${i}`,
      deliveries: [
        [i % 2, await signed(JSON.stringify(signal))],
        [1 - (i % 2), await signed(respelled(signal))],
        [1 - (i % 2), await signed(JSON.stringify(signal))],
      ],
    });
    alerts.push({
      name: `content-${i}+1s`,
      deliveries: [[i % 2, await signed(JSON.stringify(later))]],
    });
  }
  return alerts;
}

Deno.test({
  name:
    "[postgres] two instances, one database: a storm of copies is stored once, decided once, in order, seen by both",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const scratch = await scratchPostgres("two");
    const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
    const services: Service[] = [];
    // Decisions that take a while (a 30 ms context lookup), so both workers get a share.
    const provider = fakeProvider(() => "ok", { okDelayMs: 30 });
    const prefix = `two-${crypto.randomUUID().slice(0, 8)}`;
    try {
      for (const [i, dir] of dirs.entries()) {
        services.push(
          await startService({
            DATABASE_URL: scratch.url,
            DATA_DIR: dir,
            INSTANCE_ID: `instance-${i}`,
            // Small batches: one instance cannot hold every symbol's head, so both decide.
            WORKER_CONCURRENCY: "1",
            WORKER_BATCH_SIZE: "3",
            ENFORCE_MARKET_HOURS: "false",
            CONTEXT_URL: `${provider.url}/context/{symbol}`,
            CONTEXT_TTL_SECONDS: "1",
          }),
        );
      }
      const watchers = services.map((s) => watchEvents(s.base));
      await Promise.all(watchers.map((w) => w.ready));

      const alerts = await storm(prefix);
      const all = alerts.flatMap((a) =>
        a.deliveries.map(([k, init]) => ({ alert: a.name, k, init }))
      );
      // Shuffled and sent all at once: copies race each other on both instances.
      all.sort(() => Math.random() - 0.5);
      const answers = await Promise.all(all.map(async (d) => ({
        alert: d.alert,
        answer: await deliver(services[d.k].base, {
          alertId: d.alert,
          symbol: "",
          init: d.init,
          outcome: "pending",
        } as Sent),
      })));

      const byAlert = new Map<string, Sent[]>();
      for (const { alert, answer } of answers) {
        byAlert.set(alert, [...(byAlert.get(alert) ?? []), answer]);
      }
      const signalIds = new Set<string>();
      for (const [alert, got] of byAlert) {
        for (const g of got) assert.equal(g.outcome, 200, `${alert}: ${g.outcome} ${g.code}`);
        assert.equal(got.filter((g) => g.status === "ACCEPTED").length, 1, `${alert} accepted`);
        assert.equal(new Set(got.map((g) => g.signalId)).size, 1, `${alert}: several signal ids`);
        signalIds.add(got[0].signalId!);
      }
      assert.equal(signalIds.size, alerts.length, "two alerts were taken as one");

      await Promise.all(services.map((s) => drained(s.base, 60_000)));
      const db = await scratch.open();
      const stored = await db.query<{ id: string; decisions: number }>(
        `select s.id::text, (select count(*)::integer from decisions d where d.signal_id = s.id)
           as decisions
         from signals s`,
      );
      assert.deepEqual(new Set(stored.map((r) => r.id)), signalIds);
      assert.deepEqual(stored.filter((r) => Number(r.decisions) !== 1), []);
      const deciders = await db.query<{ locked_by: string; n: number }>(
        `select split_part(locked_by, ':', 1) as locked_by, count(*)::integer as n
         from pipeline_jobs group by 1 order by 1`,
      );
      const order = checkOrder(
        await db.query<{ symbol: string; seq: number }>(
          `select s.symbol, s.seq::integer as seq
           from events e join signals s on s.id = (e.payload->>'signal_id')::uuid
           where e.kind = 'decision' order by e.id`,
        ),
      );
      assert.ok(order.held, JSON.stringify(order.violations));
      assert.equal(
        deciders.length,
        2,
        `one instance decided everything: ${JSON.stringify(deciders)}`,
      );

      // Both dashboards get every event, whichever instance wrote it.
      const until = Date.now() + 10_000;
      while (
        watchers.some((w) => w.seen.decision.size < signalIds.size) && Date.now() < until
      ) await delay(50);
      for (const [i, w] of watchers.entries()) {
        assert.deepEqual(w.seen.signal, signalIds, `instance ${i}'s SSE missed signal events`);
        assert.deepEqual(w.seen.decision, signalIds, `instance ${i}'s SSE missed decisions`);
      }
      await Promise.all(watchers.map((w) => w.close()));
      console.log(
        `two instances: ${all.length} deliveries of ${alerts.length} alerts to 2 instances at once, ` +
          `${answers.filter((a) => a.answer.status === "ACCEPTED").length} ACCEPTED, ` +
          `${answers.filter((a) => a.answer.status === "DUPLICATE").length} DUPLICATE, ` +
          `${stored.length} stored, ${stored.length} decided once; jobs decided by ${
            deciders.map((d) => `${d.locked_by}: ${d.n}`).join(", ")
          }; order held; each SSE client saw ${signalIds.size} signal and decision events`,
      );
    } finally {
      for (const s of services) await s.kill9();
      await provider.close();
      await scratch.drop();
      for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
