// The colour scale: monotone in lightness, gamma lifts weak values, packing matches ImageData.
import assert from "node:assert/strict";
import { test } from "node:test";
import { colorOf, gammaTable } from "./draw";
import { BLUES, buildLut, cssColor, headColor, lutIndex, packRgb, parseHex, unpackRgb } from "./scale";

const luminance = ([r, g, b]: number[]) => 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;

test("the LUT runs from the first stop to the last, darker at every step", () => {
  const lut = buildLut();
  assert.deepEqual(unpackRgb(lut[0]!).slice(0, 3), parseHex(BLUES[0]!));
  assert.deepEqual(unpackRgb(lut[255]!).slice(0, 3), parseHex(BLUES[BLUES.length - 1]!));
  for (let i = 1; i < 256; i++) {
    assert.ok(luminance(unpackRgb(lut[i]!)) <= luminance(unpackRgb(lut[i - 1]!)) + 1e-9, `step ${i}`);
    assert.equal(unpackRgb(lut[i]!)[3], 255);
  }
});

test("packed colours are ImageData's bytes R, G, B, A", () => {
  const bytes = new Uint8ClampedArray(new Uint32Array([packRgb(1, 2, 3)]).buffer);
  assert.deepEqual(Array.from(bytes), [1, 2, 3, 255]);
});

test("lutIndex: clamped, sqrt gamma", () => {
  assert.equal(lutIndex(0), 0);
  assert.equal(lutIndex(-1), 0);
  assert.equal(lutIndex(NaN), 0);
  assert.equal(lutIndex(1), 255);
  assert.equal(lutIndex(7), 255);
  assert.equal(lutIndex(0.25), 128); // √0.25 = 0.5
  assert.ok(lutIndex(0.01) >= 25); // a weak 1% weight is a tenth of the way, not lost in white
  assert.equal(cssColor(buildLut(), 0), "rgb(247, 251, 255)");
});

test("gammaTable agrees with lutIndex and starts where asked", () => {
  const lut = buildLut();
  const table = gammaTable(lut);
  for (const v of [0, 0.01, 0.25, 0.5, 0.9, 1]) {
    assert.equal(colorOf(table, v), lut[lutIndex(v)], `v=${v}`);
  }
  assert.equal(colorOf(table, 2), lut[255]);
  assert.equal(colorOf(table, NaN), lut[0]);
  const bars = gammaTable(lut, 0.5, 96);
  assert.equal(colorOf(bars, 0), lut[96]);
  assert.equal(colorOf(bars, 1), lut[255]);
});

test("head colours are distinct and cycle", () => {
  const seen = new Set(Array.from({ length: 12 }, (_, h) => headColor(h)));
  assert.equal(seen.size, 12);
  assert.equal(headColor(12), headColor(0));
  assert.equal(headColor(-1), headColor(11));
});
