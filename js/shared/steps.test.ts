import assert from "node:assert/strict";
import { test } from "node:test";
import { nearestStep } from "./steps";

test("nearestStep finds the step of a value", () => {
  assert.equal(nearestStep([-2, -1, 0, 1, 2], 0.4), 2); // a slider's coefficient
  assert.equal(nearestStep([-2, -1, 0, 1, 2], 7), 4); // past the end: the last step
  assert.equal(nearestStep([-2, -1, 0, 1, 2], 0.9), 3); // FeatureView's default scale, +1
  assert.equal(nearestStep([-1, 0, 1], 0.5), 1); // a tie: the first
  assert.equal(nearestStep([], 3), 0);
});
