import assert from "node:assert/strict";
import { test } from "node:test";
import { activationColor, formatValue, maxAbs, rowAt, splitByLengths } from "./format";

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

test("maxAbs", () => {
  assert.equal(maxAbs([1, -3, 2]), 3);
  assert.equal(maxAbs([]), 1);
  assert.equal(maxAbs([0, 0]), 1);
});

test("splitByLengths", () => {
  assert.deepEqual(splitByLengths([1, 2, 3, 4, 5], [2, 3]), [
    [1, 2],
    [3, 4, 5],
  ]);
  assert.throws(() => splitByLengths([1, 2], [3]), /expected 3 activations, got 2/);
});

test("rowAt reads one position of a [pos, k] summary", () => {
  const neurons = new Int32Array([5, 7, 1, 2]);
  const values = new Float32Array([0.9, 0.5, 3, 1]);
  assert.deepEqual(rowAt(neurons, values, 2, 1), [
    { neuron: 1, value: 3 },
    { neuron: 2, value: 1 },
  ]);
});
