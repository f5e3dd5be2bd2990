import assert from "node:assert/strict";
import { test } from "node:test";
import { neuronLabel, neuronName, routeLine, rowAt } from "./format";

test("rowAt reads one position of a [pos, k] summary", () => {
  const neurons = new Int32Array([5, 7, 1, 2]);
  const values = new Float32Array([0.9, 0.5, 3, 1]);
  assert.deepEqual(rowAt(neurons, values, 2, 1), [
    { neuron: 1, value: 3 },
    { neuron: 2, value: 1 },
  ]);
});

test("neuronLabel and neuronName name an expert's unit, the shared expert's, or a dense neuron", () => {
  const moe = { n_experts: 4, d_expert: 32, d_shared: 48 };
  assert.equal(neuronLabel(37, moe), "E1·5");
  assert.equal(neuronLabel(4 * 32 + 5, moe), "S5");
  assert.equal(neuronName(37, moe), "neuron 37 (expert 1, unit 5)");
  assert.equal(neuronName(133, moe), "neuron 133 (shared expert, unit 5)");
  const dense = { n_experts: 0, d_expert: 0, d_shared: 0 };
  assert.equal(neuronLabel(37, dense), "N37");
  assert.equal(neuronName(37, dense), "neuron 37");
});

test("routeLine reads one layer of a [layer, k] routing, with the shared gate when there is one", () => {
  const experts = new Int32Array([2, 0, 3, 1]);
  const weights = new Float32Array([0.614, 0.386, 0.5, 0.25]);
  assert.equal(routeLine(experts, weights, 2, 0), "expert 2 · 0.61, expert 0 · 0.39");
  assert.equal(routeLine(experts, weights, 2, 1, new Float32Array([0.1, 0.47])), "expert 3 · 0.50, expert 1 · 0.25, shared · 0.47");
});
