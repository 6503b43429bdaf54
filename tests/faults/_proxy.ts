/**
 * A TCP proxy between the service and Postgres that the test can break:
 * - `cut()`: every open connection is dropped and the port refuses new ones
 *   (a server that stopped, a path that resets);
 * - `stall()`: connections stay open but nothing crosses any more, and new
 *   ones are accepted and never answered (a network partition: no error,
 *   only silence);
 * - `restore()`: traffic flows again; connections that were stalled are
 *   reset, as the server side has long given up on them.
 * The test's own checks go straight to Postgres.
 */
export interface TcpProxy {
  port: number;
  cut(): void;
  stall(): void;
  restore(): void;
  close(): void;
}

export function tcpProxy(target: { hostname: string; port: number }): TcpProxy {
  let listener: Deno.Listener | null = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  let state: "up" | "stalled" = "up";
  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  };
  const closeAll = () => {
    for (const conn of [...open]) closeQuietly(conn);
  };
  /** Copies `from` to `to`, dropping whatever arrives while stalled. */
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (state === "stalled") continue;
        for (let at = 0; at < n;) at += await to.write(buffer.subarray(at, n));
      }
    } catch {
      // The other side went away, or the test cut it.
    }
    closeQuietly(from);
    closeQuietly(to);
  };
  const accept = async (l: Deno.Listener) => {
    for await (const client of l) {
      open.add(client);
      if (state === "stalled") continue; // held open, never answered
      Deno.connect(target).then((server) => {
        if (!open.has(client)) return closeQuietly(server);
        open.add(server);
        void pipe(client, server);
        void pipe(server, client);
      }, () => closeQuietly(client));
    }
  };
  accept(listener).catch(() => {});
  return {
    port,
    cut() {
      listener?.close();
      listener = null;
      closeAll();
    },
    stall() {
      state = "stalled";
    },
    restore() {
      if (state === "stalled") closeAll();
      state = "up";
      if (listener === null) {
        listener = Deno.listen({ hostname: "127.0.0.1", port });
        accept(listener).catch(() => {});
      }
    },
    close() {
      listener?.close();
      listener = null;
      closeAll();
    },
  };
}
