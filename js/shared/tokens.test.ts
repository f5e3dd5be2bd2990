// visibleText, quoted and tokenTitle are plain functions: testable without a DOM.
import assert from "node:assert/strict";
import { test } from "node:test";
import { chatLabels, quoted, tokenKeyTarget, tokenTitle, visibleStrings, visibleText } from "./tokens";

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

test("chatLabels name template tokens by the turn they open or close, content tokens by their message", () => {
  // <|im_start|> user ↵ 大 ⋯ ! <|im_end|> ↵ <|im_start|> assistant ↵
  const labels = chatLabels({
    messages: [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
    roles: ["user", "user", "user", "user", "user", "user", "user", "user", "assistant", "assistant", "assistant"],
    template: [true, true, true, false, false, false, true, true, true, true, true],
    messageOffsets: [[0, 0], [0, 0], [0, 0], [0, 1], [1, 1], [1, 2], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
  });
  assert.equal(labels[0], "template: start of user message (messages[0])");
  assert.equal(labels[2], "template: start of user message (messages[0])");
  assert.equal(labels[3], "user message (messages[0]), chars 0–1");
  assert.equal(labels[4], "user message (messages[0]), the rest of the character at 0");
  assert.equal(labels[6], "template: end of user message (messages[0])");
  assert.equal(labels[8], "template: start of assistant message (messages[1])");
  assert.equal(labels.length, 11);
  assert.equal(
    tokenTitle(6, { id: 2, offset: [12, 22], chat: labels[6] }),
    "#6  template: end of user message (messages[0])  id 2",
  );
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

// Every slot of every view shows model and user text through visibleText: these are its rules.
const BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"];
const RAW = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u200b]/u;

test("visibleText names every bidi control and the zero-width space, as a token and as text", () => {
  for (const ch of [...BIDI, "\u200b"]) {
    const code = ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    for (const kind of ["token", "text"] as const) {
      const shown = visibleText(`ab${ch}cd`, kind);
      assert.equal(shown, `ab⟨U+${code}⟩cd`, `${code} as ${kind}`);
      assert.doesNotMatch(shown, RAW);
    }
  }
});

test("visibleText as text keeps whitespace, joiners and every script, and names the rest", () => {
  assert.equal(visibleText("my concept\tname\nline", "text"), "my concept\tname\nline");
  assert.equal(visibleText("", "text"), "");
  assert.equal(visibleText("evil\u202ename\u200bhere", "text"), "evil⟨U+202E⟩name⟨U+200B⟩here");
  assert.equal(visibleText("大型语言模型 🤖🧠 naïve café שלום مرحبا", "text"), "大型语言模型 🤖🧠 naïve café שלום مرحبا");
  assert.equal(visibleText("👩\u200d💻 می\u200cخواهم", "text"), "👩\u200d💻 می\u200cخواهم"); // ZWJ emoji, Persian ZWNJ
  assert.equal(visibleText("a\u0000b\u007f\u2028\ufeff", "text"), "a␀b␡⟨U+2028⟩⟨U+FEFF⟩");
  assert.equal(visibleText("\u{e0001}x", "text"), "⟨U+E0001⟩x"); // outside the BMP too
});

test("visibleText is idempotent, so a line built from shown tokens can be shown again", () => {
  for (const s of [" the\u202e", "a\u200bb\n", "大型 🤖\u2066x\u2069", ""]) {
    for (const kind of ["token", "text"] as const) {
      assert.equal(visibleText(visibleText(s, kind), "text"), visibleText(s, kind));
      assert.equal(visibleText(visibleText(s, kind), kind), visibleText(s, kind));
    }
  }
});

test("quoted: the one quoted form, a token's whitespace shown, nothing applied", () => {
  assert.equal(quoted(" Paris"), "“·Paris”");
  assert.equal(quoted("\u202eabc\u200b"), "“⟨U+202E⟩abc⟨U+200B⟩”");
  assert.equal(quoted(""), "“⋯”");
  assert.equal(quoted("my \u202econcept", "text"), "“my ⟨U+202E⟩concept”");
  assert.equal(quoted('"<b>"'), "“\"<b>\"”"); // not JSON: no backslashes, markup stays text
});

test("visibleStrings shows every string of parsed JSON, leaving its shape and other values", () => {
  const item = { doc: { roots: [{ type: "object", attributes: { factors: [["layer 3", "geo\u202egraphy"]], n: 2, ok: true, none: null } }] }, title: "a\u200bb" };
  assert.deepEqual(visibleStrings(item), {
    doc: { roots: [{ type: "object", attributes: { factors: [["layer 3", "geo⟨U+202E⟩graphy"]], n: 2, ok: true, none: null } }] },
    title: "a⟨U+200B⟩b",
  });
  assert.doesNotMatch(JSON.stringify(visibleStrings(item)), RAW);
});

test("no view writes a string with JSON.stringify: a token is quoted by quoted(), which names U+202E", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  // JSON.stringify leaves U+202E and U+200B raw; only these files use it, and not for page text.
  const allowed = new Set(["js/explorer/panel-model.ts", "js/shared/recorded.ts"]);
  const found: string[] = [];
  for (const dir of readdirSync("js")) {
    for (const file of readdirSync(join("js", dir))) {
      const path = `js/${dir}/${file}`;
      if (!file.endsWith(".ts") || file.endsWith(".test.ts") || allowed.has(path)) continue;
      readFileSync(path, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (line.includes("JSON.stringify(")) found.push(`${path}:${i + 1}`);
        });
    }
  }
  assert.deepEqual(found, []);
});
