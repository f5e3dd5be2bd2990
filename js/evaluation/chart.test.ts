import assert from "node:assert/strict";
import { test } from "node:test";
import { drawnValues, evenGrid, fromPixelY, markerIndex, niceMax, polylinePoints, rankingOrder, toPixel, trapezoid } from "./chart";

test("a curve's points are evenly spaced on [0, 1], and its trapezoid area is the Evaluation's auc", () => {
  assert.deepEqual(evenGrid(3), [0, 0.5, 1]);
  assert.deepEqual(evenGrid(1), [0, 1]);
  // auc([1, 0.5, 0]) = (sum - first/2 - last/2) / (n - 1) = 0.5
  assert.equal(trapezoid(evenGrid(3), [1, 0.5, 0]), 0.5);
  assert.equal(trapezoid(evenGrid(5), [0.2, 0.4, 0.1, 0.3, 0.0]), (0.2 + 0.4 + 0.1 + 0.3 + 0.0 - 0.1 - 0.0) / 4);
  assert.deepEqual(drawnValues([0.7]), [0.7, 0.7]);
  assert.equal(trapezoid(evenGrid(1), drawnValues([0.7])), 0.7); // auc of one point is the point
});

test("the y axis tops at a round number at or above the largest finite value", () => {
  assert.equal(niceMax([0.003, 0.0021]), 0.005);
  assert.equal(niceMax([0.31, NaN]), 0.5);
  assert.equal(niceMax([1]), 1);
  assert.equal(niceMax([0.2]), 0.2);
  assert.equal(niceMax([NaN, -1]), 1);
});

test("pixels: y = 0 at the bottom, the top value at the top, and back", () => {
  const box = { left: 40, top: 10, width: 200, height: 100 };
  assert.deepEqual(toPixel(0, 0, box, 0.5), [40, 110]);
  assert.deepEqual(toPixel(1, 0.5, box, 0.5), [240, 10]);
  assert.equal(polylinePoints([0, 0.5], [0.25, 0.5], box, 0.5), "40.0,60.0 140.0,10.0");
  assert.ok(Math.abs(fromPixelY(60, box, 0.5) - 0.25) < 1e-12);
});

test("tokens are taken in Python's ranking_order (ties in text order) and marked where they leave each curve", () => {
  assert.deepEqual(rankingOrder([0.1, 0.5, 0.1, -1]), [1, 0, 2, 3]);
  assert.equal(markerIndex("deletion", 0, 5), 1); // 4 tokens: points k = 0..4
  assert.equal(markerIndex("insertion", 3, 5), 4);
  assert.equal(markerIndex("deletion_drop", 3, 4), -1); // never drops the last token
  assert.equal(markerIndex("insertion_drop", 0, 4), 0); // points k = 1..n
});
