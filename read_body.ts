/**
 * Market data read as JSON, refused past a size: a fetched answer (the feeds
 * are the operator's choice, but a broken one can answer with anything, and
 * the fetch timeout bounds how long a read takes, not how much it holds) or
 * a pushed body. An oversized one, buffered and parsed on the event loop the
 * webhooks share, could take a 512 MB machine down with every webhook in
 * flight. (The webhook has its own limit, WEBHOOK_MAX_BODY_BYTES.)
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

/** The body as JSON; BodyTooLargeError, with the rest unread, once it passes `maxBytes`. */
export async function readJsonWithin(
  res: Request | Response,
  maxBytes: number,
): Promise<unknown> {
  // Content-Length counts encoded bytes (gzip): it can refuse early, never let through.
  if (Number(res.headers.get("content-length") ?? 0) > maxBytes) {
    await res.body?.cancel();
    throw new BodyTooLargeError(maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body?.getReader();
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new BodyTooLargeError(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  // As Response.json(): UTF-8, a leading BOM dropped, "" a SyntaxError.
  return JSON.parse(new TextDecoder().decode(bytes));
}
