import assert from "node:assert/strict";
import { test } from "node:test";
import { formatScore, normalizeRow, scoreColor } from "./scores";

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

test("sum_abs gives each token's share of the row's whole |attribution|, unlike max_abs", () => {
  const row = [1, -3, 4, NaN];
  const share = normalizeRow(row, "sum_abs", 0);
  assert.deepEqual(Array.from(share.slice(0, 3)), [0.125, -0.375, 0.5]);
  assert.ok(Number.isNaN(share[3]!));
  const sumAbs = Math.abs(share[0]!) + Math.abs(share[1]!) + Math.abs(share[2]!);
  assert.ok(Math.abs(sumAbs - 1) < 1e-6);
  const peak = normalizeRow(row, "max_abs", 0);
  assert.deepEqual(Array.from(peak.slice(0, 3)), [0.25, -0.75, 1]);
});

test("colours: red positive, blue negative, nothing for NaN", () => {
  assert.match(scoreColor(0.5, true)!, /^rgba\(214/);
  assert.match(scoreColor(-0.5, true)!, /^rgba\(31/);
  assert.equal(scoreColor(NaN, true), undefined);
  assert.equal(formatScore(Infinity), "+inf");
  assert.equal(formatScore(0.123456), "0.123");
});
