import assert from "node:assert/strict";
import { test } from "node:test";
import { activationColor, formatValue, maxAbs, scaleFor, splitByLengths } from "./activations";

test("maxAbs is the largest finite magnitude, 0 when there is none", () => {
  assert.equal(maxAbs([1, -3, 2]), 3);
  assert.equal(maxAbs([0.1, -0.4, 0.2]), 0.4);
  assert.equal(maxAbs([1, -5, Infinity, NaN]), 5);
  assert.equal(maxAbs(new Float32Array([NaN, -Infinity, -0.5])), 0.5);
  assert.equal(maxAbs([]), 0);
  assert.equal(maxAbs([0, 0]), 0);
});

test("scaleFor can divide: 1 where there is no magnitude", () => {
  assert.equal(scaleFor([1, -3, 2]), 3);
  assert.equal(scaleFor([0.25, NaN]), 0.25); // a small scale stays small
  assert.equal(scaleFor([]), 1);
  assert.equal(scaleFor([0, 0]), 1);
});

test("activationColor: sign picks the hue, magnitude the alpha", () => {
  assert.equal(activationColor(2, 2), "rgba(230, 120, 0, 0.850)");
  assert.equal(activationColor(-1, 2), "rgba(40, 110, 220, 0.425)");
  assert.equal(activationColor(0, 2), "transparent");
  assert.equal(activationColor(5, 2), "rgba(230, 120, 0, 0.850)"); // clamped
  assert.equal(activationColor(Number.NaN, 2), "transparent");
  assert.equal(activationColor(1, 0), "transparent");
});

test("formatValue", () => {
  assert.equal(formatValue(1.23456), "1.23");
  assert.equal(formatValue(-0.0456), "-0.0456");
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(12345), "1.23e+4");
  assert.equal(formatValue(0.0001234), "1.23e-4");
});

test("splitByLengths", () => {
  assert.deepEqual(splitByLengths([1, 2, 3, 4, 5], [2, 3]), [
    [1, 2],
    [3, 4, 5],
  ]);
  assert.throws(() => splitByLengths([1, 2], [3]), /expected 3 activations, got 2/);
});
