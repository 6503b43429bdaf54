/**
 * A minimal HTTP/1.1 keep-alive client over one TCP connection, for the
 * bench's own load drivers. Not `fetch`: fetch pools connections as it likes
 * (a burst of 2,000 would open up to 2,000 sockets) and costs more CPU per
 * request on a 2-core box the server shares; here the driver decides how
 * many connections there are, and a request costs one write and one read.
 * Handles Content-Length and chunked bodies, which is all Deno.serve sends.
 */

export interface HttpReply {
  status: number;
  body: string;
}

export interface ParsedResponse {
  status: number;
  body: Uint8Array;
  /** Offset just past this response in `buf`. */
  next: number;
  /** The server said `connection: close`. */
  close: boolean;
}

const CRLF2 = [13, 10, 13, 10];
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

function indexOfSeq(buf: Uint8Array, seq: readonly number[], from: number, end: number): number {
  outer: for (let i = from; i <= end - seq.length; i++) {
    for (let j = 0; j < seq.length; j++) if (buf[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Parses one response from the start of `buf`; null when it is not complete
 * yet. Throws on a response it cannot delimit (no length, not chunked).
 */
export function parseResponse(buf: Uint8Array): ParsedResponse | null {
  const start = 0;
  const end = buf.length;
  const headEnd = indexOfSeq(buf, CRLF2, start, end);
  if (headEnd < 0) return null;
  const head = latin1.decode(buf.subarray(start, headEnd));
  const lines = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`Cannot parse response: bad status line "${lines[0].slice(0, 60)}"`);
  const status = Number(m[1]);
  let length: number | null = null;
  let chunked = false;
  let close = false;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") length = Number(value);
    else if (name === "transfer-encoding") chunked = value.includes("chunked");
    else if (name === "connection") close = value === "close";
  }
  const bodyStart = headEnd + 4;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { status, body: new Uint8Array(0), next: bodyStart, close };
  }
  if (length !== null && !chunked) {
    if (end - bodyStart < length) return null;
    return {
      status,
      body: buf.slice(bodyStart, bodyStart + length),
      next: bodyStart + length,
      close,
    };
  }
  if (!chunked) throw new Error("Cannot parse response: neither content-length nor chunked");
  const parts: Uint8Array[] = [];
  let at = bodyStart;
  while (true) {
    const lineEnd = indexOfSeq(buf, [13, 10], at, end);
    if (lineEnd < 0) return null;
    const size = parseInt(latin1.decode(buf.subarray(at, lineEnd)).split(";")[0], 16);
    if (!Number.isFinite(size)) throw new Error("Cannot parse response: bad chunk size");
    const dataStart = lineEnd + 2;
    if (size === 0) {
      // Last chunk; no trailers from Deno.serve, so the final CRLF follows.
      if (end - dataStart < 2) return null;
      const total = parts.reduce((n, p) => n + p.length, 0);
      const body = new Uint8Array(total);
      let o = 0;
      for (const p of parts) {
        body.set(p, o);
        o += p.length;
      }
      return { status, body, next: dataStart + 2, close };
    }
    if (end - dataStart < size + 2) return null;
    parts.push(buf.slice(dataStart, dataStart + size));
    at = dataStart + size + 2;
  }
}

export class RequestTimeoutError extends Error {
  constructor(ms: number) {
    super(`No response within ${ms} ms`);
    this.name = "RequestTimeoutError";
  }
}

/** One keep-alive connection; one request at a time. */
export class HttpConnection {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(port: number, hostname = "127.0.0.1"): Promise<HttpConnection> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new HttpConnection(conn);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes `request` and reads its response; closes the connection on timeout or error. */
  async send(request: Uint8Array, timeoutMs: number): Promise<HttpReply> {
    if (this.#closed) throw new Error("Connection is closed");
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, timeoutMs);
    try {
      let written = 0;
      while (written < request.length) {
        written += await this.#conn.write(request.subarray(written));
      }
      while (true) {
        const parsed = parseResponse(this.#buf.subarray(this.#start, this.#end));
        if (parsed !== null) {
          this.#start += parsed.next;
          if (this.#start === this.#end) this.#start = this.#end = 0;
          if (parsed.close) this.close();
          return { status: parsed.status, body: utf8.decode(parsed.body) };
        }
        await this.#fill();
      }
    } catch (error) {
      this.close();
      if (timedOut) throw new RequestTimeoutError(timeoutMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async #fill(): Promise<void> {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) throw new Error("Connection closed by the server");
    this.#end += n;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side.
    }
  }
}

/** What a webhook response says, from its status and body. */
export type Outcome = "accepted" | "duplicate" | "other";

export function outcomeOf(reply: HttpReply): Outcome {
  if (reply.status !== 200) return "other";
  if (reply.body.includes('"status":"ACCEPTED"')) return "accepted";
  if (reply.body.includes('"status":"DUPLICATE"')) return "duplicate";
  return "other";
}
