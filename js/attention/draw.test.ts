// Thumbnail pixels: bars, markers, nearest-neighbour patterns — and that 270 strips of 1024 values
// draw in a few milliseconds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GAMMA_STEPS, colorOf, drawPattern, drawStrip, gammaTable, meanOfHeads, maxOf } from "./draw";
import { maxPool } from "./pool";
import { buildLut, packRgb } from "./scale";

const lut = buildLut();
const style = { bars: gammaTable(lut, 0.5, 96), background: packRgb(1, 1, 1), marker: packRgb(255, 0, 0), markerWidth: 1 };

test("a strip: bar heights √w, background above, marker column", () => {
  const D = 8;
  const out = new Uint32Array(D * D);
  const values = new Float32Array([1, 0.25, 0, 0, 0, 0, 0, 0]);
  drawStrip(out, D, values, 0, 8, 5, style);
  const column = (x: number) => Array.from({ length: D }, (_, y) => out[y * D + x]);
  // Weight 1: full height; 0.25: half (√0.25 = 0.5); 0: background only.
  assert.ok(column(0).every((c) => c === colorOf(style.bars, 1)));
  assert.deepEqual(
    column(1).map((c) => (c === style.background ? 0 : 1)),
    [0, 0, 0, 0, 1, 1, 1, 1],
  );
  assert.ok(column(2).every((c) => c === style.background));
  assert.ok(column(5).every((c) => c === style.marker));
});

test("a row the kernel pooled to the strip's width draws the pixels the whole row draws", () => {
  // AttentionView sends a clicked token's rows max-pooled to the thumbnails' width (views/attention.py).
  const T = 1023;
  const row = new Float32Array(T);
  for (let i = 0; i < T; i++) row[i] = ((i * 7919) % 1000) / 1000 / (1 + (i % 13)) ** 2;
  for (const D of [32, 40]) {
    const whole = new Uint32Array(D * D);
    const fromPooled = new Uint32Array(D * D);
    drawStrip(whole, D, row, 0, T, 700, style);
    drawStrip(fromPooled, D, maxPool(row, 0, T, D), 0, D, 700, style, new Float32Array(D), T);
    assert.deepEqual(fromPooled, whole);
  }
});

test("the marker stays behind a bar in its column, except for its cap", () => {
  const D = 16;
  const out = new Uint32Array(D * D);
  const values = new Float32Array(D);
  values[3] = 1; // a full-height bar where the marker is
  values[9] = 0.25;
  drawStrip(out, D, values, 0, D, 3, style);
  const column = (x: number) => Array.from({ length: D }, (_, y) => out[y * D + x]);
  const cap = column(3).filter((c) => c === style.marker).length;
  assert.equal(cap, 2);
  assert.ok(column(3).slice(2).every((c) => c === colorOf(style.bars, 1)));
  drawStrip(out, D, values, 0, D, 9, style);
  assert.deepEqual(
    column(9).map((c) => (c === style.marker ? "m" : "b")).join(""),
    "mmmmmmmmbbbbbbbb",
  );
});

test("a tiny weight still shows one pixel; no marker when none is selected", () => {
  const D = 4;
  const out = new Uint32Array(D * D);
  drawStrip(out, D, [1e-6, 0, 0, 0], 0, 4, -1, style);
  assert.notEqual(out[(D - 1) * D + 0], style.background);
  assert.equal(out[(D - 2) * D + 0], style.background);
  assert.ok(!out.includes(style.marker));
});

test("a pattern is scaled nearest-neighbour and normalised", () => {
  const table = gammaTable(lut);
  const D = 4;
  const out = new Uint32Array(D * D);
  const data = new Float32Array([9, 0, 0.5, 0.25, 0.5]); // base 1: [[0, 0.5], [0.25, 0.5]]
  drawPattern(out, D, data, 1, 2, 2, 0.5, table);
  assert.equal(out[0], colorOf(table, 0));
  assert.equal(out[3], colorOf(table, 1));
  assert.equal(out[3 * D], colorOf(table, 0.5));
  assert.equal(out[D * D - 1], colorOf(table, 1));
  assert.ok(GAMMA_STEPS >= 1024);
});

test("mean of heads weighted by each head's max", () => {
  const thumbs = new Float32Array([1, 0, /* head 1 */ 0, 1]);
  assert.deepEqual(Array.from(meanOfHeads(thumbs, 2, 2, [0.5, 1])), [0.25, 0.5]);
  assert.deepEqual(Array.from(meanOfHeads(thumbs, 2, 2)), [0.5, 0.5]);
  assert.equal(maxOf(new Float32Array([0.1, 0.7, 0.3]), 1, 2), Math.fround(0.7));
  assert.equal(maxOf(new Float32Array([NaN, -1])), 0);
});

test("270 strips of 1024 values at 96 × 96 pixels draw in well under 150 ms", () => {
  const T = 1024;
  const rows = new Float32Array(30 * 9 * T);
  for (let i = 0; i < rows.length; i++) rows[i] = ((i * 2654435761) % 1000) / 1e6;
  const D = 96;
  const out = new Uint32Array(D * D);
  const pooled = new Float32Array(D);
  drawStrip(out, D, rows, 0, T, 500, style, pooled); // warm up
  const t0 = performance.now();
  for (let h = 0; h < 30 * 9; h++) drawStrip(out, D, rows, h * T, T, 500, style, pooled);
  const ms = performance.now() - t0;
  assert.ok(ms < 150, `took ${ms.toFixed(1)} ms`);
});
