import assert from "node:assert/strict";
import { test } from "node:test";
import { bestIndex, FLOOR_COLOUR, fmt, intervalText, methodColour, pValueText, verdict } from "./format";

test("numbers: three significant digits, no negative zero, NaN named", () => {
  assert.equal(fmt(0.0031234), "0.00312");
  assert.equal(fmt(0.48912), "0.489");
  assert.equal(fmt(-1.2), "-1.20");
  assert.equal(fmt(-0.0000001), "-1.00e-7");
  assert.equal(fmt(-0), "0");
  assert.equal(fmt(NaN), "n/a");
  assert.equal(intervalText(0.5, 0.25, 0.75), "0.500 [0.250, 0.750]");
  assert.ok(!intervalText(0, -0, 0).includes("-"));
});

test("p-values", () => {
  assert.equal(pValueText(0.125), "p = 0.13");
  assert.equal(pValueText(0.0001), "p < 0.001");
  assert.equal(pValueText(NaN), "n/a");
});

test("the best method by the metric's direction, NaN left out, the first of equals", () => {
  assert.equal(bestIndex([0.3, NaN, 0.1, 0.1], false), 2);
  assert.equal(bestIndex([0.3, NaN, 0.4, 0.4], true), 2);
  assert.equal(bestIndex([NaN], true), -1);
});

test("each method its own colour; the floor grey", () => {
  const methods = ["saliency", "random", "occlusion"];
  assert.equal(methodColour(methods, 1, "random"), FLOOR_COLOUR);
  assert.notEqual(methodColour(methods, 0, "random"), methodColour(methods, 2, "random"));
  assert.equal(methodColour(methods, 2, "random"), methodColour(["saliency", "occlusion"], 1, ""));
});

test("a difference is better or worse only when the paired test rejects no difference", () => {
  assert.equal(verdict(-0.2, 0.01, false), "better"); // a lower deletion area than the floor
  assert.equal(verdict(-0.2, 0.01, true), "worse");
  assert.equal(verdict(0.2, 0.25, true), "no clear difference"); // 3 prompts: the exact test's smallest p
  assert.equal(verdict(NaN, NaN, true), "no clear difference");
});
