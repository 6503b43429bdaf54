/**
 * The guard against the driver's errors that reach the top uncaught during
 * an outage (each crashed the service in the outage fault test): postgres.js's
 * write on a closed connection, thrown from a setImmediate as the driver
 * does, and a refused connect on a socket the driver has dropped, reported
 * by Deno's node:net with no listener (a real socket here) or as an
 * unhandled rejection. Each leaves the process running and logged; any other
 * uncaught error, a look-alike of the refused connect included, still ends it.
 */
import assert from "node:assert/strict";

type Mode = "race" | "other" | "connect" | "connect-rejection" | "connect-lookalike";

async function runChild(mode: Mode) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "tests/fixtures/driver_race.ts", mode],
    cwd: new URL("../", import.meta.url),
    env: { NO_COLOR: "1" },
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("the driver's closed-socket write is logged and survived; other uncaught errors are not", async () => {
  const race = await runChild("race");
  assert.equal(race.code, 0);
  assert.match(race.stdout, /Ignored a postgres\.js write on an already closed connection/);
  assert.match(race.stdout, /still alive/);
  const other = await runChild("other");
  assert.notEqual(other.code, 0);
  assert.doesNotMatch(other.stdout, /still alive/);
});

Deno.test("a refused connect on a socket the driver dropped is logged and survived, raised either way", async () => {
  for (const mode of ["connect", "connect-rejection"] as const) {
    const child = await runChild(mode);
    assert.equal(child.code, 0, `${mode}: ${child.stdout}`);
    assert.match(
      child.stdout,
      /Ignored a refused connect on a connection postgres\.js had dropped: Error: connect ECONNREFUSED/,
      mode,
    );
    assert.match(child.stdout, /still alive/, mode);
  }
});

Deno.test("an error that only looks like a refused connect still ends the process", async () => {
  const lookalike = await runChild("connect-lookalike");
  assert.notEqual(lookalike.code, 0);
  assert.doesNotMatch(lookalike.stdout, /still alive/);
  assert.doesNotMatch(lookalike.stdout, /Ignored/);
});
