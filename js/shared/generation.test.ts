// steerAnswer and effectLine are plain functions: testable without a DOM.
import assert from "node:assert/strict";
import { test } from "node:test";
import { effectLine, steerAnswer } from "./generation";

test("effectLine says plainly when the steering did nothing", () => {
  const base = { klNext: 0, klMean: 0, metric: null, metricChange: null, changed: 0, total: 5, noEffect: true };
  assert.match(effectLine(base), /^No effect: no generated token changed/);
  const moved = { ...base, klNext: 0.52, klMean: 1.2, metric: "p(' the')", metricChange: -0.25, changed: 3, noEffect: false };
  assert.equal(
    effectLine(moved),
    "3 of 5 generated tokens changed; KL(baseline ‖ steered) of the next token 0.520 nats, mean over the continuation 1.20; p(' the') changed by −0.250.",
  );
});

test("steerAnswer reads SteeringView's and FeatureView's steer answers alike", () => {
  const steering = {
    step: 20, alpha: 60, baseline: [" the", " cat"], steered: [" a", " cat"], changed: [true, false],
    kl_next: 0.5, kl_mean: null, metric: "logit_diff", metric_change: 1.5, no_effect: false,
  };
  const a = steerAnswer(steering);
  assert.equal(a.alpha, 60);
  assert.deepEqual([a.baseline, a.steered, a.changed], [[" the", " cat"], [" a", " cat"], [true, false]]);
  assert.deepEqual(a.effect, { klNext: 0.5, klMean: null, metric: "logit_diff", metricChange: 1.5, changed: 1, total: 2, noEffect: false });
  assert.match(effectLine(a.effect), /^1 of 2 generated tokens changed; .* mean over the continuation —; logit_diff changed by \+1\.50\.$/);
  // FeatureView's: no metric (null), and the same fields otherwise.
  const feature = { ...steering, metric: null, metric_change: null, feature: 3, scale: 2, no_effect: true, changed: [false, false] };
  const f = steerAnswer(feature);
  assert.deepEqual([f.effect.metric, f.effect.metricChange, f.effect.changed, f.effect.noEffect], [null, null, 0, true]);
  assert.doesNotMatch(effectLine(f.effect), /changed by/);
  // A field missing reads as nothing rather than throwing.
  assert.deepEqual(steerAnswer({}).effect, { klNext: null, klMean: null, metric: null, metricChange: null, changed: 0, total: 0, noEffect: false });
});
