import assert from "node:assert/strict";
import { test } from "node:test";
import { correlation, drawnCell, fmt, kernelCell, NAN_RGBA, orientation, scaleOf, scoreRGBA } from "./grid";

test("token grids draw token rows and layer columns; heads draw layer rows", () => {
  const resid = orientation("resid", 30, 14);
  assert.deepEqual([resid.rows, resid.cols], [14, 30]);
  assert.deepEqual(drawnCell(resid, 15, 9), [9, 15]);
  assert.deepEqual(kernelCell(resid, 9, 15), [15, 9]);
  const heads = orientation("heads", 30, 9);
  assert.deepEqual([heads.rows, heads.cols], [30, 9]);
  assert.deepEqual(drawnCell(heads, 3, 2), [3, 2]);
  assert.deepEqual(kernelCell(heads, 3, 2), [3, 2]);
});

test("the colour scale diverges at 0 and greys NaN", () => {
  assert.deepEqual(scoreRGBA(NaN, 1), NAN_RGBA);
  const [r, , b, a1] = scoreRGBA(1, 1);
  assert.ok(r > b && a1 > 240);
  const [r2, , b2, a2] = scoreRGBA(-0.5, 1);
  assert.ok(b2 > r2 && a2 > 100 && a2 < a1);
  assert.ok(scoreRGBA(0, 1)[3] < 20);
  assert.equal(scaleOf([0.2, NaN, -3, 1.5]), 3);
  assert.equal(scaleOf([0.2, 0.5]), 1);
});

test("fmt and correlation", () => {
  assert.equal(fmt(-5.4912), "−5.49");
  assert.equal(fmt(null), "—");
  assert.equal(fmt(NaN), "NaN");
  assert.ok(Math.abs(correlation([1, 2, 3, NaN], [2, 4, 6, 1]) - 1) < 1e-12);
  assert.ok(Math.abs(correlation([1, 2, 3], [3, 2, 1]) + 1) < 1e-12);
  assert.ok(Number.isNaN(correlation([1, 1], [2, 3])));
});
