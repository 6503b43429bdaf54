/**
 * Per-symbol order: for each symbol, the decisions in commit order must
 * follow the signals' receipt order (`signals.seq`, "the order jobs are
 * decided in per symbol"). Commit order is the decision events' id order:
 * decision writes lock the book's version row first, so they are serialized
 * and ids are handed out in commit order.
 *
 * When a symbol breaks it, the evidence is kept per decision, to tell the
 * causes apart: the job id (the worker claims in job id order, which a
 * concurrent ingest batch can hand out differently from seq), the ingest
 * transaction (txid of the signal's event) and when it started, and when
 * the job was claimed (a job whose batch had not committed yet is invisible
 * to the claim, so a later one of the same symbol can go first).
 */
import type { Queryable } from "../../db/port.ts";

export interface OrderViolation {
  symbol: string;
  seqs: number[];
  /** Filled by orderCheck(): each decision of the symbol, in commit order. */
  detail?: {
    seq: number;
    jobId: number;
    ingestTx: string;
    ingestTxStartMs: number;
    claimedMs: number;
    /** e.g. "CALL ENTRY -> ENTER ENTRY_APPROVED". */
    decision: string;
  }[];
}

export interface OrderCheck {
  symbols: number;
  decisions: number;
  /** Symbols whose decisions did not commit in receipt order (at most 5 kept). */
  violations: OrderViolation[];
  violatingSymbols: number;
  held: boolean;
}

/** Pure: per symbol, the receipt sequence of each decision in commit order must increase. */
export function checkOrder(rows: readonly { symbol: string; seq: number }[]): OrderCheck {
  const bySymbol = new Map<string, number[]>();
  for (const r of rows) {
    const list = bySymbol.get(r.symbol) ?? [];
    list.push(Number(r.seq));
    bySymbol.set(r.symbol, list);
  }
  const violations: OrderViolation[] = [];
  for (const [symbol, seqs] of bySymbol) {
    if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1])) violations.push({ symbol, seqs });
  }
  return {
    symbols: bySymbol.size,
    decisions: rows.length,
    violations: violations.slice(0, 5),
    violatingSymbols: violations.length,
    held: violations.length === 0,
  };
}

export async function orderCheck(db: Queryable, prefix: string): Promise<OrderCheck> {
  const rows = await db.query<{ symbol: string; seq: string | number }>(
    `select s.symbol, s.seq
     from events e join signals s on s.id = (e.payload->>'signal_id')::uuid
     where e.kind = 'decision' and s.alert_id like $1::text
     order by e.id`,
    [`${prefix}-%`],
  );
  const check = checkOrder(rows.map((r) => ({ symbol: r.symbol, seq: Number(r.seq) })));
  for (const v of check.violations) {
    const detail = await db.query<Record<string, string | number>>(
      `select s.seq::text as seq, j.id::text as job_id, se.txid::text as ingest_tx,
              (extract(epoch from s.created_at) * 1000)::float8 as ingest_start,
              (extract(epoch from j.locked_at) * 1000)::float8 as claimed,
              s.direction || ' ' || s.action || ' -> ' || d.outcome || ' ' || d.reason_code
                as decision
       from events e
       join signals s on s.id = (e.payload->>'signal_id')::uuid
       join decisions d on d.signal_id = s.id
       join pipeline_jobs j on j.signal_id = s.id
       join events se on se.kind = 'signal' and (se.payload->>'id')::uuid = s.id
       where e.kind = 'decision' and s.symbol = $1::text and s.alert_id like $2::text
       order by e.id`,
      [v.symbol, `${prefix}-%`],
    );
    v.detail = detail.map((d) => ({
      seq: Number(d.seq),
      jobId: Number(d.job_id),
      ingestTx: String(d.ingest_tx),
      ingestTxStartMs: Number(d.ingest_start),
      claimedMs: Number(d.claimed),
      decision: String(d.decision),
    }));
  }
  return check;
}
