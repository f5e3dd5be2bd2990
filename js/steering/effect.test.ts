import assert from "node:assert/strict";
import { test } from "node:test";
import { effectLine } from "./effect";

test("effectLine says plainly when the steering did nothing", () => {
  const base = { klNext: 0, klMean: 0, metric: null, metricChange: null, changed: 0, total: 5, noEffect: true };
  assert.match(effectLine(base), /^No effect: no generated token changed/);
  const moved = { ...base, klNext: 0.52, klMean: 1.2, metric: "p(' the')", metricChange: -0.25, changed: 3, noEffect: false };
  assert.equal(
    effectLine(moved),
    "3 of 5 generated tokens changed; KL(baseline ‖ steered) of the next token 0.520 nats, mean over the continuation 1.20; p(' the') changed by −0.250.",
  );
});
