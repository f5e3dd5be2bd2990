import assert from "node:assert/strict";
import { test } from "node:test";
import { columnWindow, probColor, shorten } from "./grid";

test("columnWindow keeps its start while the selection is inside", () => {
  assert.deepEqual(columnWindow(100, 20, 10, 15), [10, 30]);
  assert.deepEqual(columnWindow(100, 20, 10, -1), [10, 30]);
});

test("columnWindow centres on a selection outside it and stays in range", () => {
  assert.deepEqual(columnWindow(100, 20, 0, 50), [40, 60]);
  assert.deepEqual(columnWindow(100, 20, 0, 99), [80, 100]);
  assert.deepEqual(columnWindow(100, 20, 90, 2), [0, 20]);
  assert.deepEqual(columnWindow(5, 20, 3, 1), [0, 5]);
});

test("probColor", () => {
  assert.equal(probColor(0), "transparent");
  assert.equal(probColor(1), "rgba(25, 118, 210, 0.800)");
  assert.equal(probColor(0.5), "rgba(25, 118, 210, 0.440)");
});

test("shorten", () => {
  assert.equal(shorten("abc"), "abc");
  assert.equal(shorten("abcdefghijk", 5), "abcd…");
  assert.equal(shorten("😀😀😀", 2), "😀…");
});
