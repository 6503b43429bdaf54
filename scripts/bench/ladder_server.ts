/**
 * The rungs of issue 6's reference table, rebuilt as small servers so that
 * any machine can measure them and be placed against the machine the
 * targets were written on (`deno task bench:ladder`, scripts/bench_ladder.ts).
 * Each is the minimal thing its row names, nothing of the service's own:
 *
 * - `bare`: `Deno.serve` answering 200;
 * - `hono`: a Hono route answering 200;
 * - `verify`: the Hono route checking `x-signature` (hex HMAC-SHA256 of the
 *   body, Web Crypto) and parsing the body with the service's normalization
 *   (core/signal.ts: its aliases, then its zod schema);
 * - `postgres`: the same, then one postgres.js INSERT per request (pool 10)
 *   into a one-table database, answered after its commit;
 * - `pglite`: the same on a file-backed PGlite in this thread;
 * - `pglite-driver`: the same through the service's own PGlite driver
 *   (db/pglite.ts: PGlite on a thread of its own, each statement parsed once).
 *
 * Configured by the environment: LADDER_MODE, PORT, WEBHOOK_SECRET, and
 * DATABASE_URL (postgres) or LADDER_PGLITE_DIR (the PGlite ones). Every answer that
 * counts says `{"status":"ACCEPTED"}`, so the bench's drivers count it; GET
 * /webhook answers 200 for readiness. Exits on SIGTERM.
 */
import { PGlite } from "@electric-sql/pglite";
import { Hono } from "hono";
import postgres from "postgres";
import { fromHex } from "../../core/auth.ts";
import { normalizeSignal } from "../../core/signal.ts";
import { openPglite } from "../../db/pglite.ts";

export const LADDER_MODES = [
  "bare",
  "hono",
  "verify",
  "postgres",
  "pglite",
  "pglite-driver",
] as const;
export type LadderMode = typeof LADDER_MODES[number];

/** The one table the insert rungs write: a row per request, keyed, its body as jsonb. */
export const LADDER_TABLE_SQL = `create table if not exists ladder_signals (
  id uuid primary key,
  received_at timestamptz not null default now(),
  symbol text not null,
  payload jsonb not null
)`;

const ACCEPTED = JSON.stringify({ status: "ACCEPTED" });
const JSON_HEADERS = { "content-type": "application/json" };
const encoder = new TextEncoder();

type Insert = (id: string, symbol: string, body: string) => Promise<void>;

/** The Hono app of the `verify` rung and, with `insert`, of the insert rungs. */
export async function verifyingApp(secret: string, insert: Insert | null): Promise<Hono> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const app = new Hono();
  app.get("/webhook", (c) => c.text("READY"));
  app.post("/webhook", async (c) => {
    const raw = await c.req.text();
    const signature = fromHex(c.req.header("x-signature") ?? "");
    const genuine = signature !== null &&
      await crypto.subtle.verify("HMAC", key, signature, encoder.encode(raw));
    if (!genuine) return c.json({ status: "REJECTED", code: "INVALID_SIGNATURE" }, 401);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return c.json({ status: "REJECTED", code: "INVALID_JSON" }, 400);
    }
    const signal = normalizeSignal(parsed);
    if (!signal.ok) return c.json({ status: "REJECTED", code: "INVALID_PAYLOAD" }, 422);
    if (insert !== null) await insert(crypto.randomUUID(), signal.signal.symbol, raw);
    return c.body(ACCEPTED, 200, JSON_HEADERS);
  });
  return app;
}

async function main(): Promise<void> {
  const mode = Deno.env.get("LADDER_MODE") as LadderMode;
  if (!LADDER_MODES.includes(mode)) throw new Error(`LADDER_MODE must be one of ${LADDER_MODES}`);
  const port = Number(Deno.env.get("PORT"));
  const secret = Deno.env.get("WEBHOOK_SECRET") ?? "";
  const closers: (() => Promise<void>)[] = [];
  let handler: (request: Request) => Response | Promise<Response>;

  if (mode === "bare") {
    handler = () => new Response(ACCEPTED, { headers: JSON_HEADERS });
  } else if (mode === "hono") {
    const app = new Hono();
    app.all("/webhook", (c) => c.body(ACCEPTED, 200, JSON_HEADERS));
    handler = app.fetch;
  } else if (mode === "verify") {
    handler = (await verifyingApp(secret, null)).fetch;
  } else if (mode === "postgres") {
    const sql = postgres(Deno.env.get("DATABASE_URL")!, { max: 10, onnotice: () => {} });
    closers.push(() => sql.end({ timeout: 5 }));
    await sql.unsafe(LADDER_TABLE_SQL);
    handler = (await verifyingApp(secret, async (id, symbol, body) => {
      await sql`insert into ladder_signals (id, symbol, payload)
        values (${id}, ${symbol}, ${body}::jsonb)`;
    })).fetch;
  } else {
    const dir = Deno.env.get("LADDER_PGLITE_DIR")!;
    // Both answer query(text, params) with rows; only where PGlite runs differs.
    const db = mode === "pglite"
      ? await PGlite.create(dir)
      : await openPglite(dir, { thread: "worker" });
    closers.push(() => db.close());
    await db.exec(LADDER_TABLE_SQL);
    handler = (await verifyingApp(secret, async (id, symbol, body) => {
      await db.query(
        "insert into ladder_signals (id, symbol, payload) values ($1, $2, $3::jsonb)",
        [id, symbol, body],
      );
    })).fetch;
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, handler);
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    for (const close of closers) await close().catch(() => {});
    Deno.exit(0);
  });
}

if (import.meta.main) await main();
