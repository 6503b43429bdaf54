/**
 * The operator read API (operator token required when set), newest first,
 * paged with `?limit=&cursor=` (the previous page's `next_cursor`) and
 * filterable with `?symbol=&since=&until=` (ISO times):
 * `GET /signals`, `GET /signals/:id` (with its job, decision, positions and
 * errors), `GET /decisions` (`&outcome=&reason=`), `GET /positions`
 * (`?status=open|closed`; open ones marked to the latest context spot with
 * their unrealized PnL, closed ones newest closed first), `GET /errors`
 * (`&code=`; `symbol` matches the errors of that symbol's signals, never a
 * refused webhook, which has none).
 */
import { zValidator } from "@hono/zod-validator";
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../app_env.ts";
import { unrealizedPnl } from "../core/book.ts";
import { isStale, marketTime } from "../core/context.ts";
import { ApiError } from "../core/errors.ts";
import type { Database } from "../db/port.ts";
import {
  getSignalDetail,
  listDecisions,
  listErrors,
  listPositions,
  listSignals,
} from "../db/read.ts";

/**
 * An ISO time, passed on in UTC, as postgres.js would send it anyway: Postgres
 * has no year 0000 and zod's check allows it, and offsets (to ±23:59) can move
 * a time out of 0001-9999 (a 500 from the query, before this check).
 */
function time() {
  return marketTime().transform((v) => new Date(v).toISOString());
}

const PageSchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().regex(/^\d{1,18}$/, "must be a next_cursor value").transform(Number)
    .optional(),
  symbol: z.string().trim().toUpperCase().regex(
    /^[A-Z0-9][A-Z0-9._!/^-]{0,31}$/,
    "must be a ticker",
  )
    .optional(),
  since: time().optional(),
  until: time().optional(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Query-string problems answer 400 in the shared error shape. */
function query<T extends z.ZodType>(schema: T) {
  return zValidator("query", schema, (result) => {
    if (!result.success) {
      const issues = result.error.issues.map((i) => ({
        path: i.path.map(String).join("."),
        message: i.message,
      }));
      throw new ApiError("BAD_REQUEST", `Invalid query: ${issues[0].path} ${issues[0].message}`, {
        issues,
      });
    }
  });
}

export interface ReadApiDeps {
  db: Database;
  now: () => number;
  /** A context spot older than this does not mark a position (README: stale counts as missing). */
  contextMaxAgeSeconds: number;
}

export function readApiRoutes({ db, now, contextMaxAgeSeconds }: ReadApiDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get(
    "/signals",
    query(PageSchema),
    async (c) => c.json(await listSignals(db, c.req.valid("query"))),
  );

  app.get("/signals/:id", async (c) => {
    const id = c.req.param("id");
    const detail = UUID.test(id) ? await getSignalDetail(db, id) : null;
    if (detail === null) throw new ApiError("NOT_FOUND", `No signal ${id.slice(0, 64)}`);
    return c.json(detail);
  });

  app.get(
    "/decisions",
    query(PageSchema.extend({
      outcome: z.enum(["ENTER", "EXIT", "REJECT"]).optional(),
      reason: z.string().regex(/^[A-Z_]{1,40}$/, "must be a reason code").optional(),
    })),
    async (c) => c.json(await listDecisions(db, c.req.valid("query"))),
  );

  app.get(
    "/positions",
    query(PageSchema.extend({ status: z.enum(["open", "closed"]).optional() })),
    async (c) => {
      const q = c.req.valid("query");
      const page = await listPositions(db, q);
      if (page === null) {
        throw new ApiError(
          "BAD_REQUEST",
          `Invalid query: cursor ${q.cursor} is no next_cursor of /positions?status=closed`,
        );
      }
      const at = now();
      const items = page.items.map((p) => {
        if (p.is_closed || p.mark === null) return { ...p, mark_stale: null, unrealized_pnl: null };
        // A stale spot is still shown, flagged, but values nothing.
        if (isStale(String(p.mark_as_of), at, contextMaxAgeSeconds)) {
          return { ...p, mark_stale: true, unrealized_pnl: null };
        }
        const pnl = unrealizedPnl({
          direction: p.direction as "CALL" | "PUT",
          quantity: p.quantity as number,
          entryPrice: p.entry_price as number,
        }, p.mark as number);
        return { ...p, mark_stale: false, unrealized_pnl: Math.round(pnl * 100) / 100 };
      });
      return c.json({ ...page, items });
    },
  );

  app.get(
    "/errors",
    query(
      PageSchema.extend({
        code: z.string().regex(/^[A-Z_]{1,40}$/, "must be an error code").optional(),
      }),
    ),
    async (c) => c.json(await listErrors(db, c.req.valid("query"))),
  );

  return app;
}
