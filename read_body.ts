/**
 * Market data read as JSON, refused past a size: a fetched answer (the feeds
 * are the operator's choice, but a broken one can answer with anything, and
 * the fetch timeout bounds how long a read takes, not how much it holds) or
 * a pushed body. An oversized one, buffered and parsed on the event loop the
 * webhooks share, could take a 512 MB machine down with every webhook in
 * flight. The webhook's body goes through the same reader, with its own limit
 * (WEBHOOK_MAX_BODY_BYTES) and a deadline (WEBHOOK_BODY_TIMEOUT_MS).
 */

/** A context snapshot is a few hundred bytes. */
export const CONTEXT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Several times the largest chain Cboe serves (_SPX's: tens of thousands of
 * contracts at about 500 bytes each).
 */
export const CHAIN_MAX_BODY_BYTES = 64 * 1024 * 1024;

export class BodyTooLargeError extends Error {
  constructor(maxBytes: number) {
    super(`answer larger than ${maxBytes} bytes`);
    this.name = "BodyTooLargeError";
  }
}

export class BodyTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`body not received within ${timeoutMs} ms`);
    this.name = "BodyTimeoutError";
  }
}

/** The body as JSON; BodyTooLargeError, with the rest unread, once it passes `maxBytes`. */
export async function readJsonWithin(
  res: Request | Response,
  maxBytes: number,
): Promise<unknown> {
  const bytes = await readBytesWithin(res, maxBytes);
  // As Response.json(): UTF-8, a leading BOM dropped, "" a SyntaxError.
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * The body's bytes, refused with the rest unread (cancelled): BodyTooLargeError
 * once it passes `maxBytes`, BodyTimeoutError when it has not all arrived
 * within `timeoutMs`. A client that goes away mid-body rejects with the
 * stream's own error.
 */
export async function readBytesWithin(
  res: Request | Response,
  maxBytes: number,
  timeoutMs?: number,
): Promise<Uint8Array<ArrayBuffer>> {
  // Content-Length counts encoded bytes (gzip): it can refuse early, never let through.
  if (Number(res.headers.get("content-length") ?? 0) > maxBytes) {
    await res.body?.cancel();
    throw new BodyTooLargeError(maxBytes);
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = timeoutMs === undefined
    ? null
    : new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), timeoutMs));
  if (
    res instanceof Request && res.headers.has("content-length") &&
    !res.headers.has("transfer-encoding")
  ) {
    // A request's body is exactly its Content-Length (checked above), nothing is decoded:
    // read whole, the runtime's fast path (a few us a webhook less than a reader's loop).
    // With Transfer-Encoding too the length is not the body's (hono's bodyLimit agrees).
    const whole = res.arrayBuffer();
    const read = late === null ? await whole : await Promise.race([whole, late]);
    clearTimeout(timer);
    if (read === "late") {
      // Settles when the client sends the rest or goes away; nothing waits for it.
      whole.catch(() => {});
      throw new BodyTimeoutError(timeoutMs!);
    }
    return new Uint8Array(read);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body?.getReader();
  try {
    while (reader) {
      const read = late === null ? await reader.read() : await Promise.race([reader.read(), late]);
      if (read === "late") {
        // Nothing more is read; the pending read settles when the client sends or goes away.
        reader.cancel().catch(() => {});
        throw new BodyTimeoutError(timeoutMs!);
      }
      if (read.done) break;
      size += read.value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw new BodyTooLargeError(maxBytes);
      }
      chunks.push(read.value);
    }
  } finally {
    clearTimeout(timer);
  }
  if (chunks.length === 1) return new Uint8Array(chunks[0]);
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}
