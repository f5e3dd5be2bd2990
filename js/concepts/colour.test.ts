import assert from "node:assert/strict";
import { test } from "node:test";
import { cosineColour, formatCosine } from "./colour";

test("positive cosines are blue, negative orange, opacity grows with magnitude", () => {
  assert.equal(cosineColour(0.4, 0.4), "rgba(25, 118, 210, 0.85)");
  assert.equal(cosineColour(-0.2, 0.4), "rgba(239, 108, 0, 0.425)");
  assert.equal(cosineColour(0, 0.4), "rgba(25, 118, 210, 0)");
  assert.equal(cosineColour(2, 0.4), "rgba(25, 118, 210, 0.85)"); // clamped
  assert.equal(cosineColour(NaN, 0.4), "rgba(0, 0, 0, 0)");
  assert.equal(cosineColour(0.1, 0), "rgba(0, 0, 0, 0)");
});

test("cosines are shown signed with three decimals", () => {
  assert.equal(formatCosine(0.2134), "+0.213");
  assert.equal(formatCosine(-0.05), "−0.050");
  assert.equal(formatCosine(NaN), "n/a");
});
