/**
 * Start-up while the database cannot be reached, on the real process: it
 * keeps trying for DATABASE_STARTUP_TIMEOUT_SECONDS, one JSON log line per
 * attempt (no password, no uncaught stack), and exits 1 with a clear message
 * when the time is up; or it comes up as soon as the server answers.
 */
import assert from "node:assert/strict";
import { POSTGRES_REACHABLE, TEST_DATABASE_URL } from "./_db.ts";
import {
  delay,
  freePort,
  IN_CI,
  scratchPostgres,
  type Service,
  spawnMain,
  startService,
} from "./_service.ts";

const PASSWORD = "not-a-real-password-4711";

/** The service's output until it exits (or `limitMs` passes: then it is killed). */
async function runUntilExit(env: Record<string, string>, limitMs: number) {
  const child = spawnMain({ NODE_ENV: "development", PORT: String(freePort()), ...env });
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  const started = performance.now();
  const { code, stdout, stderr } = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return {
    code,
    ms: performance.now() - started,
    lines: decoder.decode(stdout).split("\n").filter((l) => l !== ""),
    err: decoder.decode(stderr),
  };
}

Deno.test({
  name:
    "start-up with the database unreachable: JSON retry lines, then exit 1 with a clear message",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-startup-" });
    try {
      const closed = freePort();
      const out = await runUntilExit({
        DATA_DIR: dataDir,
        DATABASE_URL: `postgres://postgres:${PASSWORD}@127.0.0.1:${closed}/postgres`,
        DATABASE_STARTUP_TIMEOUT_SECONDS: "4",
      }, 30_000);
      const shown = `${out.lines.join("\n")}\n${out.err}`;
      assert.equal(out.code, 1, shown);
      assert.doesNotMatch(out.err, /Uncaught|error:/, "an uncaught error reached stderr");
      assert.ok(!shown.includes(PASSWORD), "the password was printed");
      const logged = out.lines.map((l) => JSON.parse(l)); // every line is JSON
      const retries = logged.filter((l) => /^Database not ready/.test(l.message));
      assert.ok(retries.length >= 2, shown);
      for (const r of retries) {
        assert.equal(r.level, "WARNING");
        assert.equal(r.database, `postgres at 127.0.0.1:${closed}/postgres`);
        assert.match(r.error, /ECONNREFUSED/);
      }
      const last = logged.at(-1);
      assert.equal(last.level, "ERROR");
      assert.match(last.message, /^Gave up on the database after \d+ attempts in 4 s/);
      assert.ok(out.ms >= 3_500, `gave up after ${Math.round(out.ms)} ms, before its 4 s`);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

/** A TCP relay to the test Postgres that starts listening only when `open()` is called. */
function lateProxy(port: number, hostname = "127.0.0.1") {
  const target = new URL(TEST_DATABASE_URL);
  const conns: Deno.Conn[] = [];
  let listener: Deno.Listener | null = null;
  return {
    open() {
      listener = Deno.listen({ hostname, port });
      void (async () => {
        for await (const conn of listener!) {
          conns.push(conn);
          const upstream = await Deno.connect({
            hostname: target.hostname,
            port: Number(target.port || 5432),
          });
          conns.push(upstream);
          conn.readable.pipeTo(upstream.writable).catch(() => {});
          upstream.readable.pipeTo(conn.writable).catch(() => {});
        }
      })().catch(() => {});
    },
    close() {
      listener?.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed by its other end.
        }
      }
    },
  };
}

/**
 * The service started on a scratch database that it reaches through a relay
 * (lateProxy) on `relayHost`, opened after `openAfterMs`, with DATABASE_URL's
 * host written as `urlHost(port)`; `check` runs while it serves, then
 * everything is stopped and removed.
 */
async function servedThroughRelay(
  name: string,
  relay: { relayHost?: string; urlHost: (port: number) => string; openAfterMs: number },
  startupTimeoutSeconds: number,
  check: (service: Service) => Promise<void>,
): Promise<void> {
  const scratch = await scratchPostgres(name);
  const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-startup-" });
  const port = freePort();
  const proxy = lateProxy(port, relay.relayHost);
  const url = new URL(scratch.url);
  url.host = relay.urlHost(port);
  if (relay.openAfterMs === 0) proxy.open();
  else setTimeout(() => proxy.open(), relay.openAfterMs);
  let service;
  try {
    service = await startService({
      DATA_DIR: dataDir,
      DATABASE_URL: url.toString(),
      DATABASE_STARTUP_TIMEOUT_SECONDS: String(startupTimeoutSeconds),
    }, { readyTimeoutMs: 30_000 });
    await check(service);
  } finally {
    if (service) {
      service.child.kill("SIGTERM");
      await Promise.race([service.child.status, delay(15_000)]);
      await service.kill9();
    }
    proxy.close();
    await scratch.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test({
  name: "[postgres] start-up waits for a database that comes up late, then serves",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await servedThroughRelay(
      "startup",
      { urlHost: (port) => `127.0.0.1:${port}`, openAfterMs: 2_500 },
      60,
      async (service) => {
        const retries = service.lines.filter((l) => /Database not ready/.test(l));
        assert.ok(retries.length >= 1, "no retry was logged before the database came up");
        const health = await fetch(`${service.base}/health/database`);
        assert.equal(health.status, 200, await health.text());
        assert.doesNotMatch(service.errors.join("\n"), /Uncaught/);
      },
    );
  },
});

Deno.test({
  name: "start-up on a PORT already in use: one line naming it, exit 1, the database untouched",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "optionstrat-startup-" });
    // Another instance (or anything) on the port, as the service binds it: all interfaces.
    const taken = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    const { port } = taken.addr as Deno.NetAddr;
    try {
      const out = await runUntilExit({ DATA_DIR: dataDir, PORT: String(port) }, 60_000);
      const shown = `${out.lines.join("\n")}\n${out.err}`;
      assert.equal(out.code, 1, shown);
      assert.doesNotMatch(out.err, /Uncaught|error:/, "an uncaught error reached stderr");
      const last = JSON.parse(out.lines.at(-1)!);
      assert.equal(last.level, "ERROR", shown);
      assert.match(last.message, new RegExp(`PORT ${port}`), shown);
      // Refused before opening the database: a second process on the same DATA_DIR would
      // otherwise have opened (and its worker decided from) the running one's PGlite files.
      await assert.rejects(Deno.stat(`${dataDir}/pglite`), Deno.errors.NotFound);
    } finally {
      taken.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "[postgres] a DATABASE_URL with an IPv6 address ([::1]) is reached, as any host is",
  ignore: !POSTGRES_REACHABLE && !IN_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // The test server may listen on IPv4 only: an IPv6 loopback relay stands in for it.
    await servedThroughRelay(
      "ipv6",
      { relayHost: "::1", urlHost: (port) => `[::1]:${port}`, openAfterMs: 0 },
      5,
      async (service) => {
        const health = await fetch(`${service.base}/health/database`);
        assert.equal(health.status, 200, await health.text());
        assert.deepEqual(service.lines.filter((l) => /Database not ready/.test(l)), []);
      },
    );
  },
});
