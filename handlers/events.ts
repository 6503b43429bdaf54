/**
 * `GET /events`: Server-Sent Events of new signals, decisions and position
 * changes (`event: signal|decision|position`, JSON data). Every instance
 * LISTENs on the events channel, so a change made by any instance reaches
 * the clients of all of them; each stream then reads the outbox from its own
 * cursor, which is also the SSE event id. A reconnecting client sends
 * `Last-Event-ID` (or `?last_event_id=`) and gets everything it missed, in
 * order, with no gap. Without one it starts from now (`?from=start` replays
 * the whole outbox). A comment line every 15 s keeps proxies from closing it.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppEnv } from "../app_env.ts";
import { ApiError } from "../core/errors.ts";
import { cursorIssued, latestCursor, readEvents, START } from "../db/events.ts";
import type { Database } from "../db/port.ts";
import { EVENTS_CHANNEL } from "../db/signals.ts";
import { logger } from "../logging.ts";

const log = logger("events");

/** One LISTEN per instance, fanned out to every open stream. */
export class EventHub {
  #listeners = new Set<() => void>();
  #listening: Promise<unknown> | null = null;
  #unlisten: (() => Promise<void>) | null = null;
  #ending = false;

  constructor(private readonly db: Database) {}

  /** True once `endStreams()` ran: open streams finish, new ones end at once. */
  get ending(): boolean {
    return this.#ending;
  }

  /**
   * Ends every open stream cleanly (shutdown): an event stream never ends by
   * itself, and the server waits for every response before it stops. Clients
   * reconnect, with Last-Event-ID, to another instance.
   */
  endStreams(): void {
    this.#ending = true;
    for (const listener of this.#listeners) listener();
  }

  async subscribe(onNotify: () => void): Promise<() => void> {
    const listening = this.#listening ??= this.db.listen(EVENTS_CHANNEL, () => {
      for (const listener of this.#listeners) listener();
    }).then((unlisten) => (this.#unlisten = unlisten));
    try {
      await listening;
    } catch (error) {
      // Not kept: a LISTEN that failed (the database restarting) is tried again by the next
      // subscriber, instead of failing every stream until the process restarts.
      if (this.#listening === listening) this.#listening = null;
      throw error;
    }
    // Added only once listening: a failed subscriber leaves nothing behind.
    this.#listeners.add(onNotify);
    return () => this.#listeners.delete(onNotify);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    await this.#unlisten?.().catch(() => {});
  }
}

export interface EventRoutesOptions {
  db: Database;
  hub: EventHub;
  heartbeatMs?: number;
  /** Fallback poll, for events whose NOTIFY arrived while older transactions were still open. */
  pollMs?: number;
}

const BATCH = 500;

export function eventRoutes(o: EventRoutesOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const heartbeatMs = o.heartbeatMs ?? 15_000;
  const pollMs = o.pollMs ?? 1000;

  app.get("/events", async (c) => {
    const requested = c.req.header("last-event-id") ?? c.req.query("last_event_id") ?? "";
    // An id in the cursor's form (`<digits>-<digits>`) that this database never issued (a part
    // past its column's range, or a transaction not yet begun) answers 400 before any stream:
    // resuming from it would fail or deliver nothing. Anything else not a cursor (another
    // server's ids, an empty header) starts from now, as without one.
    let cursor: string;
    if (/^\d+-\d+$/.test(requested)) {
      if (!(await cursorIssued(o.db, requested))) {
        throw new ApiError(
          "BAD_REQUEST",
          "Last-Event-ID is not an event id this server sent; reconnect without it",
        );
      }
      cursor = requested;
    } else {
      cursor = c.req.query("from") === "start" ? START : await latestCursor(o.db);
    }

    return streamSSE(c, async (stream) => {
      let wake: (() => void) | null = null;
      const poke = () => wake?.();
      // Before any await: Hono calls only the abort handlers registered when the client leaves
      // (one gone during subscribe() kept the loop running forever). It wakes the loop, which
      // ends on `stream.aborted`.
      stream.onAbort(poke);
      const unsubscribe = await o.hub.subscribe(poke);
      await stream.writeSSE({ event: "ready", data: JSON.stringify({ cursor }), retry: 3000 });
      let lastWrite = Date.now();
      try {
        while (!stream.aborted && !o.hub.ending) {
          const events = await readEvents(o.db, cursor, BATCH);
          for (const e of events) {
            await stream.writeSSE({
              id: e.cursor,
              event: e.kind,
              data: JSON.stringify({ ...e.payload, event_at: e.createdAt }),
            });
            cursor = e.cursor;
            lastWrite = Date.now();
          }
          if (events.length === BATCH) continue;
          if (Date.now() - lastWrite >= heartbeatMs) {
            await stream.write(": heartbeat\n\n");
            lastWrite = Date.now();
          }
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, Math.min(pollMs, heartbeatMs));
            function done() {
              clearTimeout(timer);
              wake = null;
              resolve();
            }
            wake = done;
          });
        }
      } catch (error) {
        // The database, not the client (a read past READ_QUERY_TIMEOUT_MS, an outage): the
        // stream ends and the client reconnects with Last-Event-ID, missing nothing. Caught here:
        // Hono would print it raw to stderr, outside the JSON logs.
        log.warn("Event stream ended by a failed read: {error}", { error: String(error) });
      } finally {
        unsubscribe();
      }
    });
  });
  return app;
}
