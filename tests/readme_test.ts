/**
 * The README stays true where it is easy to let it drift: its Configuration
 * table names exactly the variables the service reads, with the defaults the
 * code applies; every route the real app serves is named somewhere in it;
 * and its /health and /metrics examples have the fields a real answer has.
 * docs/operations.md names the Postgres releases the service was tested on, and where the
 * service differs from the deployment guide, which it otherwise satisfies.
 */
import assert from "node:assert/strict";
import { configVariables, loadConfig } from "../core/config.ts";
import { testServices } from "./_app.ts";
import { freshPglite } from "./_db.ts";
import { clock, pushChain, pushContext, send } from "./_pipeline.ts";

const README = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
const OPERATIONS = Deno.readTextFileSync(new URL("../docs/operations.md", import.meta.url));

/** The backticked ALL_CAPS names in `text`. */
const names = (text: string) => [...text.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]);

Deno.test("the Configuration table lists every variable loadConfig() reads, and no other", () => {
  const section = README.split(/^## Configuration$/m)[1]?.split(/^## /m)[0] ?? "";
  const listed = new Set(
    section.split("\n").filter((line) => line.startsWith("| `"))
      .flatMap((line) => names(line.split("|")[1])),
  );
  const mentioned = new Set(names(section));
  const read = configVariables();
  // Fly sets these itself; the rows they change name them.
  const setByFly = new Set(["FLY_APP_NAME", "FLY_MACHINE_ID"]);
  assert.ok(read.length > 40, `only ${read.length} variables found: ${read.join(", ")}`);
  assert.deepEqual(read.filter((n) => !setByFly.has(n) && !listed.has(n)), [], "read, not listed");
  assert.deepEqual([...setByFly].filter((n) => !mentioned.has(n)), [], "set by Fly, not mentioned");
  assert.deepEqual([...listed].filter((n) => !read.includes(n)), [], "listed, never read");
});

Deno.test("each default in the Configuration table is the one loadConfig() applies", () => {
  const section = README.split(/^## Configuration$/m)[1]?.split(/^## /m)[0] ?? "";
  const unset = loadConfig({}).config;
  const checked: string[] = [];
  for (const line of section.split("\n").filter((l) => l.startsWith("| `"))) {
    const [variables, defaults] = line.split("|").slice(1, 3).map((cell) => cell.trim());
    // "`fly-client-ip` on Fly (...), else none" and the like: checked below.
    if (defaults.includes("on Fly")) continue;
    const vars = names(variables);
    // One default per variable, or one for all of them ("none (push only)").
    const cells = defaults.split(" / ");
    assert.ok(cells.length === 1 || cells.length === vars.length, `${vars}: ${defaults}`);
    vars.forEach((name, i) => {
      // none, off: unset is the default, nothing to set.
      const value = /^`([^`]+)`/.exec(cells[cells.length === 1 ? 0 : i])?.[1];
      if (value === undefined) return;
      // Setting a variable to its documented default changes nothing.
      assert.deepEqual(loadConfig({ [name]: value }).config, unset, `${name} = ${value}`);
      checked.push(name);
    });
  }
  assert.ok(checked.length > 40, `only ${checked.length} defaults checked`);
  const onFly = { FLY_APP_NAME: "optionstrat-backend", FLY_MACHINE_ID: "e2865013b13986" };
  assert.deepEqual(
    loadConfig({ ...onFly, CLIENT_IP_HEADER: "fly-client-ip", INSTANCE_ID: "e2865013b13986" })
      .config,
    loadConfig(onFly).config,
  );
  assert.deepEqual(loadConfig({ INSTANCE_ID: "local" }).config, unset);
  assert.equal(unset.webhook.clientIpHeader, null);
});

Deno.test("every route the app serves is named in the README", async () => {
  const { db, dispose } = await freshPglite();
  const services = await testServices(db, { env: { OPERATOR_TOKEN: "an-operator-token-0123" } });
  try {
    const paths = new Set(
      services.app.routes
        .filter((r) => r.method !== "ALL" && !r.path.endsWith("*")) // middleware; static files
        .map((r) => r.path),
    );
    assert.ok(paths.size > 15, `only ${paths.size} routes found`);
    // In backticks, alone, after a method or after the app's address; a :param as itself or as a
    // placeholder (`<id>`, `{id}`, `YOUR_ID`), so /gex/chain does not stand for /gex/:symbol.
    const missing = [...paths].filter((path) => {
      const pattern = path.split("/").map((segment) =>
        segment.startsWith(":")
          ? "(?::[a-z]+|<[^>`]+>|\\{[^}`]+\\}|[A-Z][A-Z0-9_]+)"
          : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      ).join("/");
      return !new RegExp("`(?:(?:GET|POST) |https://[^/`\\s]+)?" + pattern + "(?:\\?[^`]*)?`")
        .test(README);
    });
    assert.deepEqual(missing, []);
  } finally {
    await services.close();
    await dispose();
  }
});

/** Every key path of a JSON value (`a.b.c`), objects only. */
function keyPaths(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
  return Object.entries(value).flatMap((
    [k, v],
  ) => [`${prefix}${k}`, ...keyPaths(v, `${prefix}${k}.`)]);
}

/** The README's example answer whose first key is `first`. */
function example(first: string): unknown {
  const block = [...README.matchAll(/```json\n(\{[\s\S]*?)\n```/g)].map((m) => m[1])
    .find((b) => b.startsWith(`{\n  "${first}"`));
  assert.ok(block, `no README example starting with "${first}"`);
  return JSON.parse(block);
}

Deno.test("the README's /health and /metrics examples have the fields of a real answer", async () => {
  const { db, dispose } = await freshPglite();
  // As in the README's run: data pushed, then one signal on a Saturday evening in New York.
  const c = clock("2026-11-21T22:26:00Z");
  const s = await testServices(db, { now: c.now });
  try {
    await pushContext(s, c, "SPY", 500);
    await pushChain(s, c, "SPY", 500);
    assert.equal((await send(s, c, { symbol: "SPY", direction: "CALL" })).status, "ACCEPTED");
    await s.worker.runUntilIdle();
    const get = async (path: string) => {
      const res = await s.app.request(path);
      assert.equal(res.status, 200, path);
      return await res.json();
    };
    const health = await get("/health");
    assert.deepEqual(keyPaths(example("healthy")).sort(), keyPaths(health).sort(), "/health");
    const metrics = await get("/metrics");
    assert.deepEqual(metrics.signals.rejectionsByReason, { MARKET_CLOSED: 1 });
    assert.deepEqual(keyPaths(example("signals")).sort(), keyPaths(metrics).sort(), "/metrics");
  } finally {
    await s.close();
    await dispose();
  }
});

Deno.test("docs/operations.md names the Postgres release the embedded PGlite runs", async () => {
  const named = /embedded PGlite\s+\(Postgres (\d+)\)/.exec(OPERATIONS)?.[1];
  assert.ok(named, "docs/operations.md no longer says which Postgres PGlite is");
  const { db, dispose } = await freshPglite();
  try {
    const [{ version }] = await db.query<{ version: string }>("select version()");
    assert.equal(named, /^PostgreSQL (\d+)/.exec(version)?.[1], version);
  } finally {
    await dispose();
  }
});

/** The deployment guide's appendix: its endpoints and its environment variables. */
const GUIDE_ENDPOINTS: [string, string][] = [
  ["POST", "/webhook"],
  ["GET", "/health"],
  ["GET", "/health/context"],
  ["GET", "/health/gex"],
  ["GET", "/health/database"],
  ["GET", "/metrics"],
  ["GET", "/metrics/signals"],
  ["GET", "/metrics/positions"],
  ["GET", "/metrics/latency"],
];
const GUIDE_VARIABLES = ["SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "WEBHOOK_SECRET", "NODE_ENV"];

Deno.test("the guide's endpoints are served, and its variables read or named as not read", async () => {
  const { db, dispose } = await freshPglite();
  const token = "an-operator-token-0123";
  const s = await testServices(db, { env: { OPERATOR_TOKEN: token } });
  try {
    for (const [method, path] of GUIDE_ENDPOINTS) {
      const res = await s.app.request(path, {
        method,
        headers: { authorization: `Bearer ${token}` },
        body: method === "POST" ? "{}" : undefined,
      });
      await res.body?.cancel();
      // The webhook refuses an unsigned "{}" (401): answered by its route, not a 404 or 405.
      assert.ok(
        method === "POST" ? res.status === 401 : res.status === 200,
        `${path}: ${res.status}`,
      );
    }
  } finally {
    await s.close();
    await dispose();
  }
  // Each one is read: the service's own, or (the Supabase pair) to say it is not used.
  const read = configVariables();
  assert.deepEqual(GUIDE_VARIABLES.filter((v) => !read.includes(v)), []);
  const differences = OPERATIONS.split(/^## Where this differs from the deployment guide$/m)[1]
    ?.split(/^## /m)[0] ?? "";
  for (const named of ["v1.37", "`SUPABASE_URL`", "`SUPABASE_SERVICE_ROLE_KEY`", "<latest>"]) {
    assert.ok(differences.includes(named), `docs/operations.md's differences lack ${named}`);
  }
});
