/**
 * Server-Sent Events over `fetch()`. A browser's EventSource cannot send an
 * Authorization header, and the operator token must never go into a URL, so
 * the dashboard reads `/events` as a stream and parses it here:
 * - `SseParser`: the text/event-stream format (WHATWG HTML, "Server-sent
 *   events"), fed in arbitrary chunks;
 * - `EventStream`: connects, reconnects by itself with exponential backoff
 *   and jitter, resumes with `Last-Event-ID` (no gap, no repeat), and
 *   reconnects when the server goes quiet past its heartbeat.
 */
import { authRefused, UnauthorizedError } from "./api.js";

/** Parses text/event-stream incrementally; `push(chunk)` returns the events it completed. */
export class SseParser {
  #buffer = "";
  #type = "";
  #data = [];
  /** The last `id:` seen; it persists across events, as the standard says. */
  lastEventId = "";
  /** The last `retry:` in ms, or null. */
  retry = null;

  push(chunk) {
    let text = this.#buffer + chunk;
    // A chunk may end between the \r and \n of one line break: keep the \r for the next one.
    let held = "";
    if (text.endsWith("\r")) {
      held = "\r";
      text = text.slice(0, -1);
    }
    const lines = text.split(/\r\n|\r|\n/);
    this.#buffer = lines.pop() + held;
    const events = [];
    for (const line of lines) {
      const event = this.#line(line);
      if (event) events.push(event);
    }
    return events;
  }

  #line(line) {
    if (line === "") {
      // A blank line ends an event; one without data is dropped.
      const type = this.#type || "message";
      const data = this.#data;
      this.#type = "";
      this.#data = [];
      return data.length === 0 ? null : { type, data: data.join("\n"), id: this.lastEventId };
    }
    if (line.startsWith(":")) return null; // comment (the server's heartbeat)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#type = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

/** Delay before reconnect attempt `attempt` (1, 2, …): doubling from `base`, capped, with jitter. */
export function backoffMs(attempt, base = 1000, cap = 30_000, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
  // Between half and all of the ceiling, so many dashboards do not reconnect in step.
  return Math.round(ceiling * (0.5 + random() / 2));
}

/**
 * A self-reconnecting event stream.
 * `onEvent(type, data, id)` gets every event but `ready`; `onState(state,
 * detail)` gets "connecting", "live" (after `ready`), "reconnecting" (with
 * `{ inMs, error }`) and "stopped"; `onUnauthorized()` is called when the
 * token is refused (see authRefused) or `headers()` throws UnauthorizedError,
 * after which the stream stays stopped until `start()` is called again.
 */
export class EventStream {
  #opts;
  #running = false;
  /** Bumped by start() and stop(), so a loop left over from before a restart ends. */
  #generation = 0;
  #abort = null;
  #wake = null;
  /** The cursor to resume from: the last event id, or the `ready` cursor before any event. */
  lastEventId = "";

  constructor(opts) {
    this.#opts = { quietMs: 45_000, ...opts };
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#run(++this.#generation);
  }

  stop() {
    this.#running = false;
    this.#generation++;
    this.#abort?.abort();
    this.#wake?.();
    this.#opts.onState?.("stopped");
  }

  async #run(generation) {
    const o = this.#opts;
    const current = () => this.#running && generation === this.#generation;
    let attempt = 0;
    let base = 1000;
    while (current()) {
      o.onState?.(attempt === 0 ? "connecting" : "reconnecting", { attempt });
      const abort = new AbortController();
      this.#abort = abort;
      let error = null;
      // Nothing at all for `quietMs` (the server sends a heartbeat every 15 s): the
      // connection is dead somewhere a TCP reset never reaches us, so drop it.
      let heard = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - heard > o.quietMs) abort.abort(new Error("stream went quiet"));
      }, 5000);
      try {
        const headers = { accept: "text/event-stream", ...o.headers() };
        if (this.lastEventId) headers["last-event-id"] = this.lastEventId;
        const res = await fetch(o.url, { headers, signal: abort.signal, cache: "no-store" });
        if (authRefused(res)) {
          await res.text().catch(() => {}); // read it out, so stop() has nothing to abort
          throw new UnauthorizedError(`HTTP ${res.status}`);
        }
        if (res.status === 400 && this.lastEventId) {
          // The server never sent this id (its database was replaced, say): resuming from it
          // can never work. Start from now, and let the page reload what it shows.
          await res.text().catch(() => {});
          this.lastEventId = "";
          o.onCursorLost?.();
          continue;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        const parser = new SseParser();
        parser.lastEventId = this.lastEventId;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || !current()) break;
          heard = Date.now();
          for (const event of parser.push(value)) {
            if (event.type === "ready") {
              attempt = 0;
              // The first connection starts "from now": remember where now was.
              if (!this.lastEventId) this.lastEventId = readyCursor(event.data);
              o.onState?.("live");
              o.onReady?.();
              continue;
            }
            if (event.id) this.lastEventId = event.id;
            let data;
            try {
              data = JSON.parse(event.data);
            } catch {
              continue; // not ours to show
            }
            o.onEvent(event.type, data, event.id);
          }
          if (parser.retry !== null) base = Math.max(500, parser.retry);
        }
        error = new Error("stream ended");
      } catch (e) {
        error = e;
      } finally {
        clearInterval(watchdog);
      }
      if (!current()) return;
      if (error instanceof UnauthorizedError) {
        this.#running = false;
        o.onUnauthorized?.();
        return;
      }
      attempt++;
      const inMs = backoffMs(attempt, base);
      o.onState?.("reconnecting", { inMs, attempt, error: String(error?.message ?? error) });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, inMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }
}

function readyCursor(data) {
  try {
    return String(JSON.parse(data).cursor ?? "");
  } catch {
    return "";
  }
}
