/**
 * The embedded database's own thread: a Deno Worker that owns the PGlite
 * instance, so SQL runs on one core while the main thread handles HTTP.
 * db/pglite.ts starts it and speaks the protocol below; nothing else imports
 * this module (types only).
 *
 * Each request carries an id and gets exactly one response with that id.
 * Requests are handled in arrival order and passed straight to PGlite (queries
 * as prepared statements, db/pglite_statements.ts), whose own locks do the
 * queueing, as in one thread: a statement outside a transaction waits while
 * one is open (PGlite's transaction lock), and the statements of a
 * transaction (`tx` set) go in on its connection. Rows and
 * parameters cross as structured clones, so Date, bigint, Uint8Array and
 * parsed JSON arrive as PGlite made them; errors cross as plain fields and are
 * rebuilt on the other side.
 */
import { messages, PGlite, type Transaction, TransactionAbortedError } from "@electric-sql/pglite";
import { type StatementRunner, statementRunner } from "./pglite_statements.ts";

export type Request =
  | { id: number; kind: "open"; dataDir: string | null }
  | {
    id: number;
    kind: "query";
    text: string;
    params?: readonly unknown[];
    replan?: boolean;
    tx?: number;
  }
  | { id: number; kind: "exec"; script: string; tx?: number }
  /** Opens transaction `tx` (its id is chosen by the caller); answered once BEGIN ran. */
  | { id: number; kind: "begin"; tx: number }
  | { id: number; kind: "commit" | "rollback"; tx: number }
  | { id: number; kind: "listen"; sub: number; channel: string }
  | { id: number; kind: "unlisten"; sub: number }
  | { id: number; kind: "close" };

export type Response =
  | { kind: "done"; id: number; rows?: unknown[] }
  | { kind: "failed"; id: number; error: WireError }
  /** A NOTIFY payload for subscription `sub`. */
  | { kind: "notify"; sub: number; payload: string };

/** An error as plain data: PGlite's DatabaseError fields (code, detail, query...) in `fields`. */
export interface WireError {
  type: "database" | "aborted" | "error";
  name: string;
  message: string;
  stack?: string;
  fields: Record<string, unknown>;
}

interface OpenTransaction {
  tx: Transaction;
  end: PromiseWithResolvers<{ id: number; commit: boolean }>;
}

// Typed here rather than with the deno.worker lib, which cannot share a
// type-check with the window lib the rest of the code uses.
const port = self as unknown as {
  onmessage: ((event: MessageEvent<Request>) => void) | null;
  postMessage(message: Response): void;
};

let pg: PGlite | null = null;
let statements: StatementRunner | null = null;
const transactions = new Map<number, OpenTransaction>();
const subscriptions = new Map<number, () => Promise<void>>();
/** Thrown into PGlite's transaction callback to make it roll back. */
const ROLL_BACK = Symbol("roll back");

port.onmessage = ({ data: request }) => {
  let result: Promise<unknown[] | undefined>;
  try {
    result = handle(request);
  } catch (error) {
    result = Promise.reject(error);
  }
  // begin/commit/rollback answer from inside transact(); everything else here.
  if (request.kind === "begin" || request.kind === "commit" || request.kind === "rollback") {
    result.catch((error) => fail(request.id, error));
    return;
  }
  result.then((rows) => done(request.id, rows), (error) => fail(request.id, error));
};

function handle(request: Request): Promise<unknown[] | undefined> {
  if (request.kind === "open") return open(request.dataDir);
  const db = pg;
  if (db === null) throw new Error("PGlite is closed");
  switch (request.kind) {
    case "query": {
      if (request.tx !== undefined) inTransaction(request.tx); // Throws once it has ended.
      return statements!.query(request.text, request.params, {
        replan: request.replan,
        inTransaction: request.tx !== undefined,
      });
    }
    case "exec": {
      const target = request.tx === undefined ? db : inTransaction(request.tx);
      return target.exec(request.script).then(() => undefined);
    }
    case "begin":
      transact(db, request.id, request.tx);
      return Promise.resolve(undefined);
    case "commit":
    case "rollback": {
      const open = transactions.get(request.tx);
      if (open === undefined) throw new Error("Transaction is closed");
      transactions.delete(request.tx);
      open.end.resolve({ id: request.id, commit: request.kind === "commit" });
      return Promise.resolve(undefined);
    }
    case "listen":
      return db.listen(request.channel, (payload) => {
        port.postMessage({ kind: "notify", sub: request.sub, payload });
      }).then((unsubscribe) => {
        subscriptions.set(request.sub, unsubscribe);
        return undefined;
      });
    case "unlisten": {
      const unsubscribe = subscriptions.get(request.sub);
      subscriptions.delete(request.sub);
      return unsubscribe === undefined || db.closed
        ? Promise.resolve(undefined)
        : unsubscribe().then(() => undefined);
    }
    case "close":
      return db.closed ? Promise.resolve(undefined) : db.close().then(() => undefined);
  }
}

async function open(dataDir: string | null): Promise<undefined> {
  if (pg !== null) throw new Error("PGlite is already open in this worker");
  pg = dataDir === null ? await PGlite.create() : await PGlite.create(dataDir);
  statements = statementRunner(pg);
  return undefined;
}

function inTransaction(tx: number): Transaction {
  const open = transactions.get(tx);
  if (open === undefined) throw new Error("Transaction is closed");
  return open.tx;
}

/**
 * PGlite's own transaction(), held open until commit or rollback arrives: it
 * keeps PGlite's transaction lock, so other statements wait, and on COMMIT
 * raises what PGlite raises (a transaction aborted by an error rolls back).
 * The begin request is answered when BEGIN ran, the commit or rollback
 * request when the transaction ended.
 */
function transact(db: PGlite, beginId: number, txId: number): void {
  const end = Promise.withResolvers<{ id: number; commit: boolean }>();
  let begun = false;
  let endId = beginId;
  db.transaction(async (tx) => {
    begun = true;
    transactions.set(txId, { tx, end });
    done(beginId, undefined);
    const { id, commit } = await end.promise;
    endId = id;
    if (!commit) throw ROLL_BACK;
  }).then(
    () => done(endId, undefined),
    (error) => {
      transactions.delete(txId);
      if (error === ROLL_BACK) done(endId, undefined);
      else fail(begun ? endId : beginId, error);
    },
  );
}

function done(id: number, rows: unknown[] | undefined): void {
  port.postMessage({ kind: "done", id, rows });
}

function fail(id: number, error: unknown): void {
  port.postMessage({ kind: "failed", id, error: toWire(error) });
}

function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) {
    return { type: "error", name: "Error", message: String(error), fields: {} };
  }
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    try {
      fields[key] = structuredClone(value);
    } catch {
      // Not cloneable (a function in queryOptions): left out.
    }
  }
  const type = error instanceof TransactionAbortedError
    ? "aborted"
    : error instanceof messages.DatabaseError
    ? "database"
    : "error";
  return { type, name: error.name, message: error.message, stack: error.stack, fields };
}
