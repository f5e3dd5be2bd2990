// Pooling a token's row to a thumbnail, the head view's window and the matrix view's zoom window.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  binRange,
  cellAt,
  cellIndex,
  centeredSpan,
  clampView,
  followSpan,
  fullView,
  maxPool,
  nearestIndex,
  panView,
  requestWindow,
  shiftSpan,
  tickStep,
  tokenAt,
  zoomView,
} from "./pool";

describe("maxPool", () => {
  test("keeps a single sharp weight at full height", () => {
    const row = new Float32Array(1024).fill(0.0005);
    row[700] = 0.9;
    const pooled = maxPool(row, 0, 1024, 48);
    assert.equal(pooled.length, 48);
    assert.ok(Math.abs(pooled[binRange(700, 1024, 48)[0]]! - 0.9) < 1e-6);
    assert.equal(Math.max(...pooled), pooled[binRange(700, 1024, 48)[0]]);
    assert.ok(Math.abs(pooled[0]! - 0.0005) < 1e-7);
  });

  test("covers every value exactly once when bins divide the length", () => {
    const values = Float32Array.from({ length: 12 }, (_, i) => i);
    assert.deepEqual(Array.from(maxPool(values, 0, 12, 4)), [2, 5, 8, 11]);
    assert.deepEqual(Array.from(maxPool(values, 0, 12, 3)), [3, 7, 11]);
  });

  test("fewer values than bins: each bin shows its nearest value", () => {
    const values = [0.1, 0.5, 0.2];
    const pooled = Array.from(maxPool(values, 0, 3, 6)).map((v) => Number(v.toFixed(3)));
    assert.deepEqual(pooled, [0.1, 0.1, 0.5, 0.5, 0.2, 0.2]);
  });

  test("reads from an offset (one head of a [layer, head, T] array)", () => {
    const flat = new Float32Array([9, 9, 9, 1, 2, 3, 4, 9]);
    assert.deepEqual(Array.from(maxPool(flat, 3, 4, 2)), [2, 4]);
  });

  test("binRange is where maxPool puts a position", () => {
    for (const [T, D] of [
      [1024, 48],
      [7, 32],
      [100, 100],
      [3, 96],
    ] as const) {
      for (let p = 0; p < T; p++) {
        const row = new Float32Array(T);
        row[p] = 1;
        const pooled = maxPool(row, 0, T, D);
        const [a, b] = binRange(p, T, D);
        assert.equal(pooled[b - 1], 1, `T=${T} D=${D} p=${p}`);
        for (let x = 0; x < D; x++) {
          const covers = Math.floor((x * T) / D) <= p && p < Math.max(Math.floor((x * T) / D) + 1, Math.floor(((x + 1) * T) / D));
          assert.equal(x >= a && x < b, covers, `T=${T} D=${D} p=${p} x=${x}`);
        }
      }
    }
  });

  test("nearestIndex maps pixels to source cells in order, ends included", () => {
    assert.deepEqual(Array.from(nearestIndex(4, 8)), [0, 0, 1, 1, 2, 2, 3, 3]);
    assert.deepEqual(Array.from(nearestIndex(8, 4)), [1, 3, 5, 7]);
    const idx = nearestIndex(48, 96);
    assert.equal(idx[0], 0);
    assert.equal(idx[95], 47);
  });
});

describe("head view window", () => {
  test("centred and clamped", () => {
    assert.deepEqual(centeredSpan(1000, 500, 64), { start: 468, end: 532 });
    assert.deepEqual(centeredSpan(1000, 3, 64), { start: 0, end: 64 });
    assert.deepEqual(centeredSpan(1000, 998, 64), { start: 936, end: 1000 });
    assert.deepEqual(centeredSpan(20, 10, 64), { start: 0, end: 20 });
  });

  test("follows the selection only when it leaves the window", () => {
    let span = followSpan(null, 1000, 64, 500);
    assert.deepEqual(span, { start: 468, end: 532 });
    assert.equal(followSpan(span, 1000, 64, 510), span); // inside: unchanged
    span = followSpan(span, 1000, 64, 900);
    assert.deepEqual(span, { start: 868, end: 932 });
    assert.equal(followSpan(span, 1000, 64, -1), span); // nothing selected: stays
    // At the text's edges the window cannot centre: it stays at the edge.
    const first = followSpan(null, 1000, 64, 0);
    assert.deepEqual(first, { start: 0, end: 64 });
    assert.equal(followSpan(first, 1000, 64, 1), first);
    // T shrank: re-fit.
    assert.deepEqual(followSpan({ start: 900, end: 964 }, 30, 64, 5), { start: 0, end: 30 });
  });

  test("shift is clamped", () => {
    assert.deepEqual(shiftSpan({ start: 10, end: 74 }, 100, 32), { start: 36, end: 100 });
    assert.deepEqual(shiftSpan({ start: 10, end: 74 }, 100, -32), { start: 0, end: 64 });
  });
});

describe("matrix view window", () => {
  test("zoom keeps the point under the cursor and clamps", () => {
    const T = 1000;
    const v = zoomView(fullView(T), T, 0.5, 250, 750);
    assert.ok(Math.abs(v.q1 - v.q0 - 500) < 1e-9);
    // The cursor's token coordinates are the same fraction of the window before and after.
    const before = (250 - 0) / 1000;
    const after = (250 - v.q0) / (v.q1 - v.q0);
    assert.ok(Math.abs(before - after) < 1e-9);
    assert.ok(Math.abs((750 - v.k0) / (v.k1 - v.k0) - 0.75) < 1e-9);
    // Zooming out past the text returns to the full view.
    assert.deepEqual(zoomView(v, T, 10, 500, 500), fullView(T));
    // Zooming in stops at the minimum span.
    const tiny = zoomView(fullView(T), T, 1e-6, 10, 10);
    assert.ok(Math.abs(tiny.q1 - tiny.q0 - 4) < 1e-9);
  });

  test("pan is clamped inside the text", () => {
    const v = { q0: 100, q1: 200, k0: 0, k1: 100 };
    assert.deepEqual(panView(v, 1000, -500, -5), { q0: 0, q1: 100, k0: 0, k1: 100 });
    assert.deepEqual(panView(v, 1000, 2000, 50), { q0: 900, q1: 1000, k0: 50, k1: 150 });
    assert.deepEqual(clampView({ q0: -5, q1: 2000, k0: 3, k1: 3 }, 10), { q0: 0, q1: 10, k0: 3, k1: 7 });
  });

  test("request window covers every visible position", () => {
    assert.deepEqual(requestWindow({ q0: 10.2, q1: 20.7, k0: 0, k1: 5 }, 100), { q0: 10, q1: 21, k0: 0, k1: 5 });
    assert.deepEqual(requestWindow({ q0: 0, q1: 100, k0: 99.5, k1: 100 }, 100), { q0: 0, q1: 100, k0: 99, k1: 100 });
  });

  test("pixel ↔ cell round trip (what browser tests rely on)", () => {
    const v = { q0: 100, q1: 164, k0: 20, k1: 84 };
    for (const [q, k] of [
      [100, 20],
      [131, 50],
      [163, 83],
    ] as const) {
      // The centre of cell (q, k): where the browser test hovers to read it.
      const x = ((k + 0.5 - v.k0) / (v.k1 - v.k0)) * 480;
      const y = ((q + 0.5 - v.q0) / (v.q1 - v.q0)) * 480;
      assert.deepEqual(cellAt(v, 1000, x, y, 480, 480), { q, k });
    }
    assert.equal(cellAt(v, 1000, -1, 10, 480, 480), null);
    assert.equal(cellAt(v, 1000, 10, 480, 480, 480), null);
    const t = tokenAt(fullView(8), 240, 0, 480, 480);
    assert.deepEqual(t, { q: 0, k: 4 });
  });

  test("cellIndex maps a position into a pooled window", () => {
    assert.equal(cellIndex(0, 0, 1024, 512), 0);
    assert.equal(cellIndex(1023, 0, 1024, 512), 511);
    assert.equal(cellIndex(101, 100, 110, 10), 1);
    assert.equal(cellIndex(99, 100, 110, 10), -1);
    assert.equal(cellIndex(110, 100, 110, 10), -1);
  });

  test("tick steps are round", () => {
    assert.equal(tickStep(1024, 12), 100);
    assert.equal(tickStep(60, 12), 5);
    assert.equal(tickStep(3, 12), 1);
  });
});
