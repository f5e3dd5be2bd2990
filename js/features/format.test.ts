import assert from "node:assert/strict";
import { test } from "node:test";
import { bandTitle, binLabels, densityText, readScale, scaleLabel } from "./format";

test("densityText", () => {
  assert.equal(densityText(3, 31), "fires on 3 of 31 tokens (9.7%)");
  assert.equal(densityText(0, 1), "fires on 0 of 1 token (0.0%)");
  assert.equal(densityText(1, 1000), "fires on 1 of 1000 tokens (0.10%)");
  assert.equal(densityText(0, 0), "no token is read by the SAE");
});

test("bandTitle names the strongest and weakest band", () => {
  assert.equal(bandTitle(0, 4, 0.786, 0.909), "quantile 1 of 4 (strongest): activation 0.786–0.909");
  assert.equal(bandTitle(3, 4, 0.1, 0.2), "quantile 4 of 4 (weakest): activation 0.100–0.200");
  assert.equal(bandTitle(0, 1, 1, 2), "quantile 1 of 1: activation 1.00–2.00");
});

test("scaleLabel", () => {
  assert.equal(scaleLabel(0.5), "+0.500 × the stream's norm");
  assert.equal(scaleLabel(-2), "−2.00 × the stream's norm");
  assert.equal(scaleLabel(0), "0 (no steering)");
});

test("binLabels and readScale", () => {
  assert.deepEqual(binLabels([0.01, 0.1, 1]), ["[0.0100, 0.100)", "[0.100, 1.00)"]);
  assert.equal(readScale([100, 2, -3], new Set([0])), 3); // position 0 is not read: its value sets no scale
  assert.equal(readScale([100, 2, -3], new Set()), 100);
  assert.equal(readScale([2, 900, -3], new Set([1])), 3); // nor does a massive token's, wherever it is
  assert.equal(readScale([5], new Set([0])), 1);
});
