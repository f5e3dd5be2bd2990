import assert from "node:assert/strict";
import { test } from "node:test";
import { formatScore, maxAbs, normalizeRow, scoreColor } from "./scale";

test("max_abs scales each row to [-1, 1] and keeps NaN as NaN", () => {
  const out = normalizeRow([2, -4, NaN, 1], "max_abs", 100);
  assert.deepEqual(Array.from(out.slice(0, 2)), [0.5, -1]);
  assert.ok(Number.isNaN(out[2]!));
  assert.equal(out[3], 0.25);
});

test("none divides by the global max so rows stay comparable", () => {
  const out = normalizeRow([2, -4], "none", 8);
  assert.deepEqual(Array.from(out), [0.25, -0.5]);
});

test("sum_abs keeps proportions and shows the largest at full colour", () => {
  const out = normalizeRow([1, -3], "sum_abs", 0);
  assert.ok(Math.abs(out[0]! - 1 / 3) < 1e-6);
  assert.equal(out[1], -1);
});

test("colours: red positive, blue negative, nothing for NaN; maxAbs skips non-finite", () => {
  assert.match(scoreColor(0.5, true)!, /^rgba\(214/);
  assert.match(scoreColor(-0.5, true)!, /^rgba\(31/);
  assert.equal(scoreColor(NaN, true), undefined);
  assert.equal(maxAbs([1, -5, Infinity, NaN]), 5);
  assert.equal(formatScore(Infinity), "+inf");
  assert.equal(formatScore(0.123456), "0.123");
});
