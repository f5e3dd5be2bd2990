// Overview geometry: hit-testing thumbnails, sorted columns keep their heads.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cellOf, cellOrigin, columnOfHead, gridLayout, headOrder, MIN_CELL, hitTest, meanColumn, rolloutColumn } from "./grid";

test("layout of 30 layers × 9 heads with mean and rollout", () => {
  const g = gridLayout(30, 9, 32, true);
  assert.equal(g.columns, 11);
  assert.equal(meanColumn(g), 9);
  assert.equal(rolloutColumn(g), 10);
  assert.equal(g.width, g.left + 11 * (32 + g.gap) + 2);
  assert.equal(g.height, g.top + 30 * (32 + g.gap) + 2);
  const noRollout = gridLayout(30, 9, 32, false);
  assert.equal(noRollout.columns, 10);
  assert.equal(rolloutColumn(noRollout), -1);
});

test("hit-testing finds the thumbnail under a pixel, nothing in gaps and labels", () => {
  const g = gridLayout(30, 9, 32, true);
  const order: number[][] = [];
  const { x, y } = cellOrigin(g, 3, 5);
  assert.deepEqual(hitTest(g, order, x + 1, y + 1), { layer: 3, column: 5, kind: "head", head: 5 });
  assert.deepEqual(hitTest(g, order, x + 31.9, y + 31.9), { layer: 3, column: 5, kind: "head", head: 5 });
  assert.equal(hitTest(g, order, x + 32 + g.gap / 2, y + 5), null); // the gap
  assert.equal(hitTest(g, order, 5, y + 5), null); // the row label
  assert.equal(hitTest(g, order, x + 5, 5), null); // the column labels
  const m = cellOrigin(g, 29, 9);
  assert.deepEqual(hitTest(g, order, m.x + 16, m.y + 16), { layer: 29, column: 9, kind: "mean" });
  const r = cellOrigin(g, 0, 10);
  assert.deepEqual(hitTest(g, order, r.x + 16, r.y + 16), { layer: 0, column: 10, kind: "rollout" });
  const below = cellOrigin(g, 30, 0);
  assert.equal(hitTest(g, order, below.x + 5, below.y + 5), null);
});

test("sorted rows: a column shows the head its row's order says", () => {
  const g = gridLayout(2, 3, 32, false);
  // scores [score, head]: entropy row then prev row.
  const scores = new Float32Array([2.0, 0.5, 1.0, /* prev */ 0.1, 0.9, 0.3]);
  const byEntropy = headOrder(3, scores, 0, true);
  assert.deepEqual(byEntropy, [1, 2, 0]);
  assert.deepEqual(headOrder(3, scores, 1, false), [1, 2, 0]);
  assert.deepEqual(headOrder(3, undefined, 0, true), [0, 1, 2]);
  assert.deepEqual(headOrder(3, scores, -1, true), [0, 1, 2]);
  const order = [byEntropy, [0, 1, 2]];
  const { x, y } = cellOrigin(g, 0, 0);
  assert.deepEqual(hitTest(g, order, x + 2, y + 2), { layer: 0, column: 0, kind: "head", head: 1 });
  assert.deepEqual(cellOf(g, order, 1, 0), { layer: 1, column: 0, kind: "head", head: 0 });
  assert.equal(columnOfHead(order, 0, 0), 2);
  assert.equal(columnOfHead(order, 1, 2), 2);
});

test("ties and NaN keep a stable order", () => {
  const scores = new Float32Array([NaN, 1, 1, 0]);
  assert.deepEqual(headOrder(4, scores, 0, false), [1, 2, 3, 0]);
  assert.deepEqual(headOrder(4, scores, 0, true), [3, 1, 2, 0]);
});

test("cell size is clamped", () => {
  assert.equal(gridLayout(1, 1, 2, false).cell, MIN_CELL);
  assert.equal(gridLayout(1, 1, 1000, false).cell, 160);
  assert.equal(gridLayout(1, 1, NaN, false).cell, 32);
});
