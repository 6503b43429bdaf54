/**
 * Embedded driver: PGlite, real Postgres compiled to WASM, file-backed under
 * `dataDir` (or in memory when `dataDir` is null, for throw-away uses).
 * PGlite never calls fsync: a commit survives a killed process, not a power
 * loss. Production sets DATABASE_URL and uses the postgres.js driver.
 *
 * PGlite runs each statement on the thread that owns it, so by default it
 * lives in a Worker (db/pglite_worker.ts) and SQL gets its own core while
 * this thread handles HTTP; each call is one message there and one back.
 * `{ thread: "main" }` (or PGLITE_IN_THREAD=1) runs it on the calling thread,
 * as before. A worker-backed Database must be closed: its thread keeps the
 * process alive until then (close() ends it).
 */
import { messages, PGlite, type Transaction, TransactionAbortedError } from "@electric-sql/pglite";
import { statementRunner } from "./pglite_statements.ts";
import {
  type Database,
  DatabaseUnavailableError,
  type Queryable,
  type QueryOptions,
  type Row,
} from "./port.ts";
import type { Request, Response, WireError } from "./pglite_worker.ts";

export interface PgliteOptions {
  /**
   * Where PGlite runs: "worker" (its own thread, the default) or "main" (the
   * calling thread). Unset, PGLITE_IN_THREAD=1 in the environment means "main".
   */
  thread?: "worker" | "main";
  /**
   * Start from this data directory, a tarball from PGlite's `dumpDataDir`,
   * held in memory (`dataDir` must be null). In-thread only. Tests use it to
   * copy a migrated template without touching the disk.
   */
  loadDataDir?: Blob;
}

export async function openPglite(
  dataDir: string | null,
  options: PgliteOptions = {},
): Promise<Database> {
  const thread = options.thread ?? (envSaysInThread() ? "main" : "worker");
  if (options.loadDataDir !== undefined && (dataDir !== null || thread !== "main")) {
    throw new Error("loadDataDir needs dataDir null and thread main");
  }
  const open = () =>
    thread === "main" ? openInThread(dataDir, options.loadDataDir) : openInWorker(dataDir);
  if (dataDir === null) return await open();
  await Deno.mkdir(dataDir, { recursive: true });
  const lock = await lockDataDir(dataDir);
  try {
    const db = await open();
    let locked = true;
    return {
      ...db,
      async close() {
        try {
          await db.close();
        } finally {
          // close() may be called again (it is idempotent); the lock is let go once.
          if (locked) lock.close();
          locked = false;
        }
      },
    };
  } catch (error) {
    lock.close();
    throw error;
  }
}

/** The file a process holds locked while it has a data directory open. */
const DATA_DIR_LOCK = ".optionstrat.lock";

/**
 * One process at a time on a data directory, held until close() or the
 * process ends. PGlite takes no lock of its own: a second process on the same
 * files (a newer version started beside the running one, `deno task migrate`
 * while it serves) kept its own copy of them in memory, and whichever closed
 * last overwrote the other's commits (two services on one ./data answered 20
 * ACCEPTED and kept 10 signals, beside 15 decisions).
 */
async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  // Inside the directory, which Postgres leaves alone: beside it (data.lock) it needed
  // write access to the parent (/ for the image's /data) and sat untracked in a checkout.
  const file = await Deno.open(`${dataDir}/${DATA_DIR_LOCK}`, {
    create: true,
    write: true,
  });
  if (await file.tryLock(true)) return file;
  file.close();
  throw new Error(
    `Cannot open ${dataDir}: another process has this embedded database open (one process ` +
      "at a time per data directory; stop the other first)",
  );
}

function envSaysInThread(): boolean {
  try {
    return Deno.env.get("PGLITE_IN_THREAD") === "1";
  } catch {
    return false; // No --allow-env: the default.
  }
}

async function openInThread(dataDir: string | null, loadDataDir?: Blob): Promise<Database> {
  const pg = dataDir !== null
    ? await PGlite.create(dataDir)
    : await PGlite.create(loadDataDir === undefined ? {} : { loadDataDir });
  const statements = statementRunner(pg);
  /** `tx`: the open transaction the statements run in, if any. */
  const queryable = (tx?: Transaction): Queryable => ({
    async query<T = Row>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      if (tx?.closed) throw new Error("Transaction is closed");
      try {
        return await statements.query<T>(text, params, {
          ...options,
          inTransaction: tx !== undefined,
        });
      } catch (error) {
        throw translate(error);
      }
    },
    async exec(script) {
      try {
        await (tx ?? pg).exec(script);
      } catch (error) {
        throw translate(error);
      }
    },
  });
  return {
    driver: "pglite",
    ...queryable(),
    async transaction(fn) {
      try {
        return await pg.transaction((tx) => fn(queryable(tx)));
      } catch (error) {
        throw translate(error);
      }
    },
    async listen(channel, onPayload) {
      const unsubscribe = await pg.listen(channel, onPayload);
      return async () => {
        if (!pg.closed) await unsubscribe();
      };
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
  };
}

/** A request before `send` numbers it. */
type Call = Request extends infer R ? (R extends Request ? Omit<R, "id"> : never) : never;

async function openInWorker(dataDir: string | null): Promise<Database> {
  const worker = new Worker(new URL("./pglite_worker.ts", import.meta.url), { type: "module" });
  const pending = new Map<number, PromiseWithResolvers<unknown>>();
  const subscriptions = new Map<number, (payload: string) => void>();
  let nextId = 1;
  /** Set once close() starts or the worker died: new work is refused. */
  let stopped: DatabaseUnavailableError | null = null;
  /** The worker is gone: nothing more can be sent. */
  let terminated = false;
  let closing: Promise<void> | null = null;

  const stop = (reason: DatabaseUnavailableError) => {
    stopped ??= reason;
    terminated = true;
    worker.terminate();
    subscriptions.clear();
    for (const call of pending.values()) call.reject(reason);
    pending.clear();
  };
  worker.onmessage = ({ data: response }: MessageEvent<Response>) => {
    if (response.kind === "notify") {
      subscriptions.get(response.sub)?.(response.payload);
      return;
    }
    const call = pending.get(response.id);
    if (call === undefined) return;
    pending.delete(response.id);
    if (response.kind === "done") call.resolve(response.rows);
    else call.reject(fromWire(response.error));
  };
  worker.onerror = (event) => {
    // An error the worker did not catch: it is gone, so is the database.
    event.preventDefault();
    stop(
      new DatabaseUnavailableError(`Embedded database worker failed: ${event.message}`, {
        cause: event.error,
      }),
    );
  };

  /** Sends one request; `always` also after close() began (the end of an open transaction). */
  const send = <T>(request: Call, always = false): Promise<T> => {
    if (stopped !== null && (terminated || !always)) return Promise.reject(stopped);
    const id = nextId++;
    const call = Promise.withResolvers<T>();
    (request as Request).id = id;
    try {
      worker.postMessage(request);
    } catch (error) {
      return Promise.reject(error); // A parameter that cannot be cloned (a function).
    }
    pending.set(id, call as PromiseWithResolvers<unknown>);
    return call.promise;
  };

  try {
    await send({ kind: "open", dataDir });
  } catch (error) {
    stop(closedError());
    throw error;
  }

  const queryable = (tx?: number, isOpen: () => boolean = () => true): Queryable => ({
    query<T = Row>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      if (!isOpen()) return Promise.reject(new Error("Transaction is closed"));
      const replan = options?.replan === true;
      return send<T[]>({ kind: "query", text, params, replan, tx }, tx !== undefined);
    },
    async exec(script) {
      if (!isOpen()) throw new Error("Transaction is closed");
      await send({ kind: "exec", script, tx }, tx !== undefined);
    },
  });

  return {
    driver: "pglite",
    ...queryable(),
    async transaction(fn) {
      const tx = nextId++;
      await send({ kind: "begin", tx });
      let open = true;
      let result;
      try {
        result = await fn(queryable(tx, () => open));
      } catch (error) {
        open = false;
        await send({ kind: "rollback", tx }, true).catch(() => {});
        throw error;
      }
      open = false;
      await send({ kind: "commit", tx }, true);
      return result;
    },
    async listen(channel, onPayload) {
      const sub = nextId++;
      subscriptions.set(sub, onPayload);
      try {
        await send({ kind: "listen", sub, channel });
      } catch (error) {
        subscriptions.delete(sub);
        throw error;
      }
      return async () => {
        if (!subscriptions.delete(sub) || stopped !== null) return;
        await send({ kind: "unlisten", sub });
      };
    },
    close() {
      closing ??= (async () => {
        const reason = closedError();
        stopped ??= reason;
        try {
          // Waits for the statements and transaction already sent, as PGlite's close() does.
          await send({ kind: "close" }, true);
        } finally {
          stop(reason);
        }
      })();
      return closing;
    },
  };
}

function closedError(): DatabaseUnavailableError {
  return new DatabaseUnavailableError("Embedded database is closed", {
    cause: new Error("PGlite is closed"),
  });
}

/** Rebuilds an error from the worker as PGlite would have thrown it here. */
function fromWire(wire: WireError): unknown {
  const error: Error = wire.type === "aborted"
    ? new TransactionAbortedError()
    : wire.type === "database"
    ? new messages.DatabaseError(wire.message, 0, "error")
    : new Error(wire.message);
  Object.assign(error, wire.fields);
  if (wire.type === "error") error.name = wire.name;
  if (wire.stack !== undefined) error.stack = wire.stack;
  return translate(error);
}

function translate(error: unknown): unknown {
  if (error instanceof Error && /PGlite is closed/.test(error.message)) {
    return new DatabaseUnavailableError("Embedded database is closed", { cause: error });
  }
  return error;
}
