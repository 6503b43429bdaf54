import assert from "node:assert/strict";
import { DEFAULT_RULES, RulesSchema } from "../core/rules.ts";

Deno.test("RulesSchema accepts DEFAULT_RULES unchanged", () => {
  assert.deepEqual(RulesSchema.parse(DEFAULT_RULES), DEFAULT_RULES);
});

Deno.test("RulesSchema refuses unknown keys, so a misspelt setting cannot pass silently", () => {
  const result = RulesSchema.safeParse({ ...DEFAULT_RULES, maxExposre: 1 });
  assert.equal(result.success, false);
});

Deno.test("RulesSchema refuses out-of-range values, naming the field", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ minConfidence: 1.5 }, "minConfidence"],
    [{ baseNotional: 0 }, "baseNotional"],
    [{ maxOpenPositions: 2.5 }, "maxOpenPositions"],
    [{ degraded: { policy: "IGNORE", multiplier: 0.5 } }, "degraded.policy"],
    [{ vix: { cautionLevel: 35, cautionMultiplier: 0.5, noTradeLevel: 30 } }, "vix.cautionLevel"],
    [
      { marketHours: { ...DEFAULT_RULES.marketHours, extraClosedDates: ["2025-1-9"] } },
      "marketHours.extraClosedDates.0",
    ],
  ];
  for (const [change, path] of cases) {
    const result = RulesSchema.safeParse({ ...DEFAULT_RULES, ...change });
    assert.equal(result.success, false, path);
    assert.ok(result.error.issues.some((i) => i.path.join(".") === path), path);
  }
});
