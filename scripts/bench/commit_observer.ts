/**
 * When did each decision become visible? The stored figures are the
 * service's own (`timings.end_to_end_ms` is timed by the worker once its
 * write returned, `created_at` is the transaction's start), so on Postgres
 * the bench also looks from outside: it polls the new decisions from its own
 * connection every few milliseconds and stamps each with the time it first
 * saw it: receipt -> visible, an upper bound on receipt -> committed (by at
 * most one poll interval plus one query). Decision writes are serialized by
 * the lock on the book's version row, taken before their rows are inserted,
 * so their `seq` order is their commit order and a cursor on `seq` misses none.
 * PGlite cannot be read from outside the service; there it stays null.
 */
import type { Database } from "../../db/port.ts";
import { summarizeMs, type Summary } from "./stats.ts";

export interface CommitObserver {
  stop(): Promise<Summary>;
}

export function observeCommits(db: Database, prefix: string, pollMs = 5): CommitObserver {
  const seen: number[] = [];
  let cursor = "0";
  let running = true;
  const loop = (async () => {
    while (running) {
      const rows = await db.query<{ seq: string | number; received: number; mine: boolean }>(
        `select d.seq::text as seq,
                (extract(epoch from s.received_at) * 1000)::float8 as received,
                s.alert_id like $2::text as mine
         from decisions d join signals s on s.id = d.signal_id
         where d.seq > $1::bigint
         order by d.seq`,
        [cursor, `${prefix}-%`],
      );
      const now = Date.now();
      for (const r of rows) {
        if (r.mine) seen.push(now - Number(r.received));
        cursor = String(r.seq);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return summarizeMs(seen);
    },
  };
}
