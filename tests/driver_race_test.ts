/**
 * The guard against postgres.js's write on a closed connection (it crashed
 * the service in the outage fault test): that error, thrown uncaught from a
 * setImmediate as the driver does, leaves the process running; any other
 * uncaught error still ends it.
 */
import assert from "node:assert/strict";

async function runChild(mode: "race" | "other") {
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
