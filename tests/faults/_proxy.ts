/**
 * A TCP proxy between the service and Postgres that the test can cut: on
 * `cut()` every open connection is dropped and new ones are closed as soon
 * as they arrive (what clients see while a server restarts or a network
 * path dies), until `restore()`. The test's own checks go straight to
 * Postgres.
 */
export interface TcpProxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): void;
}

export function tcpProxy(target: { hostname: string; port: number }): TcpProxy {
  let listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  let up = true;
  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: true });
    } catch {
      // The other side went away, or the test cut it.
    }
    closeQuietly(from);
    closeQuietly(to);
  };
  const accept = async (listener: Deno.Listener) => {
    for await (const client of listener) {
      if (!up) {
        closeQuietly(client);
        continue;
      }
      open.add(client);
      Deno.connect(target).then((server) => {
        if (!up || !open.has(client)) {
          closeQuietly(server);
          closeQuietly(client);
          return;
        }
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
      up = false;
      listener.close();
      for (const conn of [...open]) closeQuietly(conn);
    },
    restore() {
      up = true;
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      accept(listener).catch(() => {});
    },
    close() {
      up = false;
      for (const conn of [...open]) closeQuietly(conn);
      listener.close();
    },
  };
}
