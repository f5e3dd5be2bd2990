// visibleText and tokenTitle are plain functions: testable without a DOM.
import assert from "node:assert/strict";
import { test } from "node:test";
import { tokenKeyTarget, tokenTitle, visibleText } from "./tokens";

test("visibleText shows whitespace", () => {
  assert.equal(visibleText(" the"), "·the");
  assert.equal(visibleText("\n"), "↵");
  assert.equal(visibleText("\n\n"), "↵↵");
  assert.equal(visibleText("\tx"), "→x");
  assert.equal(visibleText("a b"), "a·b");
  assert.equal(visibleText("\r\n"), "␍↵");
  assert.equal(visibleText("\u0000"), "␀");
  assert.equal(visibleText(""), "∅");
  assert.equal(visibleText("<b>é😀</b>"), "<b>é😀</b>");
});

test("tokenTitle", () => {
  assert.equal(tokenTitle(3, 1234, [3, 11]), "#3  id 1234  chars 3–11");
  assert.equal(tokenTitle(0, 1, [0, 0]), "#0  id 1  special (no chars)");
  assert.equal(tokenTitle(5, 9, [20, 24], true), "#5  id 9  chars 20–24  generated");
  assert.equal(tokenTitle(2), "#2");
});

test("tokenKeyTarget: arrows step and clamp, Home/End jump, Escape clears, other keys do nothing", () => {
  assert.equal(tokenKeyTarget("ArrowRight", -1, 5), 0);
  assert.equal(tokenKeyTarget("ArrowRight", 4, 5), 4);
  assert.equal(tokenKeyTarget("ArrowLeft", -1, 5), 4);
  assert.equal(tokenKeyTarget("ArrowLeft", 0, 5), 0);
  assert.equal(tokenKeyTarget("Home", 3, 5), 0);
  assert.equal(tokenKeyTarget("End", 0, 5), 4);
  assert.equal(tokenKeyTarget("Escape", 2, 5), -1);
  assert.equal(tokenKeyTarget("a", 2, 5), null);
  assert.equal(tokenKeyTarget("ArrowRight", -1, 0), null);
});
