/**
 * Signed alert traffic for the fault tests, and the audit of what the
 * database holds afterwards. Every alert carries an explicit id under one
 * prefix, so the audit finds exactly the test's own signals; each keeps its
 * signed request, so it can be re-sent byte for byte as TradingView does
 * after a 5xx or a dropped connection.
 */
import type { Queryable } from "../../db/port.ts";
import { orderCheck } from "../../scripts/bench/order_check.ts";
import { signed, uniqueSignal } from "../_app.ts";
import { delay } from "../_service.ts";

export const SYMBOLS = ["SPY", "QQQ", "IWM", "AAPL", "TSLA", "NVDA"];

export type Outcome = number | "no connection" | "pending";

export interface Sent {
  alertId: string;
  symbol: string;
  init: RequestInit;
  outcome: Outcome;
  status?: string;
  code?: string;
  signalId?: string;
  /** Request to answer (or failure), ms. */
  ms?: number;
  /** When the answer came (Date.now()). */
  at?: number;
}

let sequence = 0;

/** A new signed alert `${prefix}-<n>` for `symbol` (or one of SYMBOLS in turn). */
export async function alert(prefix: string, symbol?: string): Promise<Sent> {
  const n = ++sequence;
  const alertId = `${prefix}-${n}`;
  const sym = symbol ?? SYMBOLS[n % SYMBOLS.length];
  const body = JSON.stringify(
    uniqueSignal({ id: alertId, symbol: sym, direction: n % 3 === 0 ? "PUT" : "CALL" }),
  );
  return { alertId, symbol: sym, init: await signed(body), outcome: "pending" };
}

/** Posts `s` to `base`/webhook, records the answer on a copy, and returns it. */
export async function deliver(base: string, s: Sent, timeoutMs = 5_000): Promise<Sent> {
  const started = performance.now();
  const answer: Sent = { ...s };
  try {
    const res = await fetch(`${base}/webhook`, {
      ...s.init,
      signal: AbortSignal.timeout(timeoutMs),
    });
    answer.outcome = res.status;
    const json = await res.json();
    answer.status = json.status;
    answer.code = json.error?.code;
    answer.signalId = json.signal_id;
  } catch {
    answer.outcome = "no connection";
  }
  answer.ms = performance.now() - started;
  answer.at = Date.now();
  return answer;
}

export interface Stream {
  sent: Sent[];
  /** Resolves when every client stopped. */
  done: Promise<void>;
  stop(): void;
}

/**
 * `clients` concurrent senders, each posting new alerts one after another to
 * `bases` in turn, until stop() (or, with `stopOnDisconnect`, until the
 * service stops answering).
 */
export function stream(
  bases: string[],
  o: { prefix: string; clients: number; stopOnDisconnect?: boolean; pauseMs?: number },
): Stream {
  const sent: Sent[] = [];
  let running = true;
  const client = async (k: number) => {
    for (let i = k; running; i++) {
      const answer = await deliver(bases[i % bases.length], await alert(o.prefix));
      sent.push(answer);
      if (o.stopOnDisconnect && answer.outcome === "no connection") return;
      if (o.pauseMs) await delay(o.pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: o.clients }, (_, k) => client(k))).then(() => {});
  return {
    sent,
    done,
    stop() {
      running = false;
    },
  };
}

export const accepted = (sent: readonly Sent[]) => sent.filter((s) => s.status === "ACCEPTED");

/** Waits until /health of `base` shows no pending and no running job. */
export async function drained(base: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    try {
      const res = await fetch(`${base}/health`);
      const body = await res.json();
      last = JSON.stringify(body.components?.pipeline);
      if (body.components?.pipeline?.pending === 0 && body.components?.pipeline?.running === 0) {
        return;
      }
    } catch (error) {
      last = String(error);
    }
    await delay(100);
  }
  throw new Error(`Pipeline not drained after ${timeoutMs} ms: ${last}`);
}

export interface Audit {
  /** Alerts of the prefix stored as signals. */
  found: number;
  /** Of those, with exactly one decision. */
  decided: number;
  /** Acknowledged ACCEPTED or DUPLICATE but not stored: must be 0. */
  lost: string[];
  /** Stored more than once (by alert id): must be 0. */
  doubled: string[];
  /** Stored without its job (half-written): must be 0. */
  withoutJob: string[];
  /** Jobs not done (pending, running or failed). */
  unfinished: { alertId: string; status: string }[];
  /** Signals with no or several decisions. */
  undecided: string[];
  /** The id the service answered for an alert is not the stored one. */
  wrongId: string[];
  orderHeld: boolean;
}

/** What the database holds of the prefix's alerts, against what the clients were told. */
export async function audit(db: Queryable, prefix: string, sent: readonly Sent[]): Promise<Audit> {
  const rows = await db.query<
    { alert_id: string; id: string; job_status: string | null; decisions: number }
  >(
    `select s.alert_id, s.id::text, j.status as job_status,
       (select count(*)::integer from decisions d where d.signal_id = s.id) as decisions
     from signals s left join pipeline_jobs j on j.signal_id = s.id
     where s.alert_id like $1::text`,
    [`${prefix}-%`],
  );
  const byAlert = new Map<string, typeof rows>();
  for (const r of rows) byAlert.set(r.alert_id, [...(byAlert.get(r.alert_id) ?? []), r]);
  const acknowledged = sent.filter((s) => s.status === "ACCEPTED" || s.status === "DUPLICATE");
  const order = await orderCheck(db, prefix);
  return {
    found: byAlert.size,
    decided: rows.filter((r) => Number(r.decisions) === 1).length,
    lost: [...new Set(acknowledged.filter((s) => !byAlert.has(s.alertId)).map((s) => s.alertId))],
    doubled: [...byAlert].filter(([, r]) => r.length > 1).map(([a]) => a),
    withoutJob: rows.filter((r) => r.job_status === null).map((r) => r.alert_id),
    unfinished: rows.filter((r) => r.job_status !== null && r.job_status !== "done").map((r) => ({
      alertId: r.alert_id,
      status: r.job_status!,
    })),
    undecided: rows.filter((r) => Number(r.decisions) !== 1).map((r) => r.alert_id),
    wrongId: acknowledged.filter((s) =>
      s.signalId !== undefined && byAlert.get(s.alertId)?.[0]?.id !== s.signalId
    ).map((s) => s.alertId),
    orderHeld: order.held,
  };
}

/** Asserts the audit found nothing lost, doubled, half-written or undecided. */
export function assertClean(a: Audit): void {
  const problems = {
    lost: a.lost,
    doubled: a.doubled,
    withoutJob: a.withoutJob,
    unfinished: a.unfinished,
    undecided: a.undecided,
    wrongId: a.wrongId,
  };
  const bad = Object.entries(problems).filter(([, v]) => v.length > 0);
  if (bad.length > 0 || !a.orderHeld) {
    throw new Error(
      `Audit failed: ${JSON.stringify(Object.fromEntries(bad)).slice(0, 2000)}` +
        (a.orderHeld ? "" : " and per-symbol order broken"),
    );
  }
}
