/**
 * Parameterized statements on PGlite, each parsed once and kept under a name.
 *
 * PGlite's own query() parses, analyzes and plans its text at every call, and
 * crosses into its WASM six times to do so (Parse, Describe, Bind, Describe,
 * Execute, Sync). The service runs a few statements thousands of times a
 * second, on the one thread PGlite has. Here a text is parsed and described
 * once (its parameter types), kept as a named prepared statement, and every
 * later call is one crossing: Bind, Describe, Execute and Sync in one message.
 * Postgres keeps its plan under its usual rules (plan_cache_mode), as it does
 * for postgres.js's prepared statements on the server, and replans when
 * maintenance's ANALYZE changes the statistics. `replan` statements are
 * kept too, but parsed and planned again once their statement is older than
 * `replanAfterMs` (a second): a plan made while the tables were small never
 * outlives the second it was made in, and the decision write, whose planning
 * took a third of a one-decision batch's time on PGlite's thread, is planned
 * a few times a second instead of at every batch.
 *
 * Rows, errors and NOTIFY go through PGlite's own parsers, serializers and
 * protocol handling, so callers see what query() would have given them.
 */
import { Buffer } from "node:buffer";
import { messages, parse, type PGlite, protocol } from "@electric-sql/pglite";
import type { QueryOptions, Row } from "./port.ts";

/**
 * Texts kept as named statements at most. The service's own statements are a
 * few dozen; texts beyond the limit (none today) run as unnamed ones.
 */
export const MAX_NAMED_STATEMENTS = 256;

/** How long a `replan` text's statement (and so its plan) is kept before it is prepared again. */
export const REPLAN_AFTER_MS = 1000;

interface Statement {
  /** The prepared statement's name; "" for the unnamed statement (planned each call). */
  name: string;
  /** Parameter type OIDs, for PGlite's serializers. */
  types: number[];
  /** When it was prepared (`now()`). */
  preparedAt: number;
}

export interface StatementRunner {
  /**
   * Runs `text` with `params`. `inTransaction`: the caller holds a PGlite
   * transaction open (its lock), so only the query lock is taken and the
   * commit syncs the files instead.
   */
  query<T = Row>(
    text: string,
    params: readonly unknown[] | undefined,
    options: QueryOptions & { inTransaction: boolean },
  ): Promise<T[]>;
  /** How many texts are kept as named statements (for tests). */
  readonly size: number;
}

export function statementRunner(
  pg: PGlite,
  {
    maxNamed = MAX_NAMED_STATEMENTS,
    replanAfterMs = REPLAN_AFTER_MS,
    now = () => performance.now(),
  }: { maxNamed?: number; replanAfterMs?: number; now?: () => number } = {},
): StatementRunner {
  const statements = new Map<string, Statement>();
  /** Parameter types of texts past the limit. */
  const unnamedTypes = new Map<string, number[]>();
  let nextName = 1;

  /** Parses `text` as statement `name` ("" for the unnamed one); returns its parameter types. */
  const prepare = async (text: string, name: string): Promise<number[]> => {
    const reply = await pg.execProtocolStream(
      Buffer.concat([
        protocol.serialize.parse({ name, text }),
        protocol.serialize.describe({ type: "S", name }),
        protocol.serialize.sync(),
      ]),
      { syncToFs: false },
    );
    return parse.parseDescribeStatementResults(reply);
  };

  const run = async <T>(
    text: string,
    params: readonly unknown[],
    replan: boolean,
    inTransaction: boolean,
  ): Promise<T[]> => {
    let statement = statements.get(text);
    if (statement !== undefined && replan && now() - statement.preparedAt >= replanAfterMs) {
      statements.delete(text);
      await deallocate(pg, statement.name);
      statement = undefined;
    }
    if (statement === undefined && statements.size < maxNamed) {
      const name = `ostr_${nextName++}`;
      statement = { name, types: await prepare(text, name), preparedAt: now() };
      statements.set(text, statement); // Only once Postgres has it.
    }
    if (statement === undefined) {
      let types = unnamedTypes.get(text);
      if (types === undefined) {
        types = await prepare(text, "");
        if (unnamedTypes.size < maxNamed) unnamedTypes.set(text, types);
      }
      statement = { name: "", types, preparedAt: now() };
    }
    const values = params.map((param, i) => {
      if (param === null || param === undefined) return null;
      const serialize = pg.serializers[statement.types[i]];
      return serialize === undefined ? String(param) : serialize(param);
    });
    const reply = await pg.execProtocolStream(
      Buffer.concat([
        ...(statement.name === "" ? [protocol.serialize.parse({ text })] : []),
        protocol.serialize.bind({ statement: statement.name, values }),
        protocol.serialize.describe({ type: "P" }),
        protocol.serialize.execute({}),
        protocol.serialize.sync(),
      ]),
      // Outside a transaction the statement committed: its files are synced now, as query() does.
      { syncToFs: !inTransaction },
    );
    return parse.parseResults(reply, pg.parsers)[0].rows as T[];
  };

  return {
    async query<T = Row>(
      text: string,
      params: readonly unknown[] | undefined,
      options: QueryOptions & { inTransaction: boolean },
    ): Promise<T[]> {
      await pg._checkReady();
      const replan = options.replan === true;
      const call = async () => {
        try {
          try {
            return await run<T>(text, params ?? [], replan, options.inTransaction);
          } catch (error) {
            const stale = statements.get(text);
            if (stale === undefined || !isStaleStatement(error)) throw error;
            // A migration changed what the statement returns: parse it again. Outside a
            // transaction nothing ran, so it is run again; inside, the transaction has failed.
            statements.delete(text);
            await deallocate(pg, stale.name);
            if (options.inTransaction) throw error;
            return await run<T>(text, params ?? [], replan, false);
          }
        } catch (error) {
          // As PGlite's query() marks its errors.
          if (error instanceof messages.DatabaseError) {
            Object.assign(error, { query: text, params });
          }
          throw error;
        }
      };
      // The same locks PGlite's query() takes: outside a transaction, wait for an open one to end.
      return options.inTransaction
        ? await pg._runExclusiveQuery(call)
        : await pg._runExclusiveTransaction(() => pg._runExclusiveQuery(call));
    },
    get size() {
      return statements.size;
    },
  };
}

/** "cached plan must not change result type": the statement's tables changed shape. */
function isStaleStatement(error: unknown): boolean {
  return error instanceof messages.DatabaseError && error.code === "0A000" &&
    /cached plan must not change result type/.test(error.message);
}

async function deallocate(pg: PGlite, name: string): Promise<void> {
  await pg.execProtocolStream(
    Buffer.concat([protocol.serialize.close({ type: "S", name }), protocol.serialize.sync()]),
    { syncToFs: false, throwOnError: false },
  );
}
