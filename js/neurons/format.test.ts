import assert from "node:assert/strict";
import { test } from "node:test";
import { rowAt } from "./format";

test("rowAt reads one position of a [pos, k] summary", () => {
  const neurons = new Int32Array([5, 7, 1, 2]);
  const values = new Float32Array([0.9, 0.5, 3, 1]);
  assert.deepEqual(rowAt(neurons, values, 2, 1), [
    { neuron: 1, value: 3 },
    { neuron: 2, value: 1 },
  ]);
});
