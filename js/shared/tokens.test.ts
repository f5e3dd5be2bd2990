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
  assert.equal(visibleText(""), "⋯");
  assert.equal(visibleText("<b>é😀</b>"), "<b>é😀</b>");
});

test("visibleText names invisible and control characters instead of applying them", () => {
  assert.equal(visibleText("a\u200bb"), "a⟨U+200B⟩b"); // zero-width space
  assert.equal(visibleText("\u202eabc"), "⟨U+202E⟩abc"); // right-to-left override
  assert.equal(visibleText("\u2066x\u2069"), "⟨U+2066⟩x⟨U+2069⟩"); // isolates
  assert.equal(visibleText("\u0085\u2028\ufeff"), "⟨U+0085⟩⟨U+2028⟩⟨U+FEFF⟩");
  assert.equal(visibleText("大型 🤖🧠 naïve"), "大型·🤖🧠·naïve"); // ordinary text of any script stays
  assert.equal(visibleText("שלום"), "שלום");
});

test("tokenTitle", () => {
  assert.equal(tokenTitle(3, { id: 1234, offset: [3, 11] }), "#3  id 1234  chars 3–11");
  assert.equal(tokenTitle(0, { id: 1, offset: [0, 0] }), "#0  id 1  special (no chars)");
  assert.equal(tokenTitle(5, { id: 9, offset: [20, 24], generated: true }), "#5  id 9  chars 20–24  generated");
  assert.equal(
    tokenTitle(4, { id: 7, offset: [2, 3], bytes: "ad", text: "" }),
    "#4  id 7  chars 2–3  bytes ad  (the rest of the character before)",
  );
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
