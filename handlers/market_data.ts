/**
 * Operator pushes of market data (operator token required when set):
 * - `POST /context`: one context object or an array of them (spot, VIX,
 *   trend per symbol), each stored as a snapshot;
 * - `POST /gex/chain`: an option chain, either in our own shape
 *   (`OptionChainSchema`) or as Cboe delayed-quotes JSON; its GEX levels are
 *   computed and stored.
 * And reads of what the pipeline would use now: `GET /context/:symbol`,
 * `GET /gex/:symbol`.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../app_env.ts";
import {
  ContextInputSchema,
  futureAsOfProblem,
  isStale,
  toMarketContext,
} from "../core/context.ts";
import { ApiError } from "../core/errors.ts";
import { OptionChainSchema, parseCboeChain } from "../core/option_chain.ts";
import type { Issue } from "../core/signal.ts";
import { insertContextSnapshot, latestContext, latestGex } from "../db/market_data.ts";
import type { Database } from "../db/port.ts";
import type { ContextProvider } from "../providers/context.ts";
import { EmptyChainError, type GexProvider } from "../providers/gex.ts";
import {
  BodyTooLargeError,
  CHAIN_MAX_BODY_BYTES,
  CONTEXT_MAX_BODY_BYTES,
  readJsonWithin,
} from "../read_body.ts";

export interface MarketDataDeps {
  db: Database;
  context: ContextProvider;
  gex: GexProvider;
  contextMaxAgeSeconds: number;
  gexMaxAgeSeconds: number;
  now: () => number;
}

const ContextBatchSchema = z.array(ContextInputSchema).min(1).max(1000);

export function marketDataRoutes(deps: MarketDataDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/context", async (c) => {
    const body = await jsonBody(c.req.raw, CONTEXT_MAX_BODY_BYTES);
    // One schema or the other, not a union: a union's error names no field.
    const parsed = Array.isArray(body)
      ? ContextBatchSchema.safeParse(body)
      : ContextInputSchema.safeParse(body);
    if (!parsed.success) throw validationError("Context", parsed.error.issues);
    const inputs = Array.isArray(parsed.data) ? parsed.data : [parsed.data];
    const now = deps.now();
    // Every snapshot is checked before any is stored.
    const timeIssues = inputs.flatMap((input, i) => {
      const problem = input.asOf === undefined ? null : futureAsOfProblem(input.asOf, now);
      if (problem === null) return [];
      return [{ path: Array.isArray(parsed.data) ? [i, "asOf"] : ["asOf"], message: problem }];
    });
    if (timeIssues.length > 0) throw validationError("Context", timeIssues);
    // One transaction: a write that fails part way stores none of the batch, so the
    // sender's re-send stores each snapshot once.
    const stored = await deps.db.transaction(async (tx) => {
      const rows = [];
      for (const input of inputs) {
        const context = toMarketContext(input, { now, source: "push" });
        rows.push({ id: await insertContextSnapshot(tx, context), ...context });
      }
      return rows;
    });
    for (const { symbol } of stored) deps.context.invalidate(symbol);
    return c.json({ status: "STORED", snapshots: stored, correlation_id: c.get("requestId") }, 201);
  });

  app.post("/gex/chain", async (c) => {
    const body = await jsonBody(c.req.raw, CHAIN_MAX_BODY_BYTES);
    const isCboe = typeof body === "object" && body !== null && "data" in body;
    let chain;
    if (isCboe) {
      const parsed = parseCboeChain(body);
      if (!parsed.ok) {
        throw new ApiError("VALIDATION_FAILED", parsed.error, {
          issues: [{ path: "", message: parsed.error }],
        });
      }
      chain = parsed.chain;
    } else {
      const parsed = OptionChainSchema.safeParse(body);
      if (!parsed.success) throw validationError("Option chain", parsed.error.issues);
      chain = parsed.data;
    }
    const problem = futureAsOfProblem(chain.asOf, deps.now());
    if (problem !== null) {
      throw validationError("Option chain", [{ path: ["asOf"], message: problem }]);
    }
    let stored;
    try {
      stored = await deps.gex.storeChain(chain, isCboe ? "push:cboe" : "push");
    } catch (error) {
      if (!(error instanceof EmptyChainError)) throw error;
      throw validationError("Option chain", [{ path: ["contracts"], message: error.message }]);
    }
    const { id, profile } = stored;
    return c.json({
      status: "STORED",
      id,
      levels: profile.levels,
      contracts: chain.contracts.length,
      strikes: profile.strikes.length,
      correlation_id: c.get("requestId"),
    }, 201);
  });

  app.get("/context/:symbol", async (c) => {
    const symbol = c.req.param("symbol").toUpperCase();
    const stored = await latestContext(deps.db, symbol);
    if (stored === null) throw new ApiError("NOT_FOUND", `No context stored for ${symbol}`);
    const stale = isStale(stored.context.asOf, deps.now(), deps.contextMaxAgeSeconds);
    return c.json({ id: stored.id, ...stored.context, stale });
  });

  app.get("/gex/:symbol", async (c) => {
    const symbol = c.req.param("symbol").toUpperCase();
    const stored = await latestGex(deps.db, symbol);
    if (stored === null) throw new ApiError("NOT_FOUND", `No GEX stored for ${symbol}`);
    const stale = isStale(stored.levels.asOf, deps.now(), deps.gexMaxAgeSeconds);
    return c.json({ id: stored.id, ...stored.levels, stale });
  });

  return app;
}

async function jsonBody(request: Request, maxBytes: number): Promise<unknown> {
  try {
    return await readJsonWithin(request, maxBytes);
  } catch (error) {
    if (error instanceof BodyTooLargeError) {
      throw new ApiError("PAYLOAD_TOO_LARGE", `Body is larger than ${maxBytes} bytes`);
    }
    throw new ApiError("INVALID_JSON", "Body is not valid JSON");
  }
}

function validationError(
  what: string,
  issues: readonly { path: PropertyKey[]; message: string }[],
): ApiError {
  const list: Issue[] = issues.map((i) => ({
    path: i.path.map(String).join("."),
    message: i.message,
  }));
  return new ApiError(
    "VALIDATION_FAILED",
    `${what} does not match the schema: ${list[0].message}`,
    {
      issues: list,
    },
  );
}
