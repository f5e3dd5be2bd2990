// Tooltip and label text.
import assert from "node:assert/strict";
import { test } from "node:test";
import { inRange, rangeMessage, sharpLabel, sig, spanLabel, thumbTooltip, tokenLabel, topSharp } from "./format";

test("sig gives 4 significant digits", () => {
  assert.equal(sig(0.123456), "0.1235");
  assert.equal(sig(0.5), "0.5000");
  assert.equal(sig(1), "1.000");
  assert.equal(sig(0), "0");
  assert.equal(sig(0.00001234), "1.234e-5");
  assert.equal(sig(0.0012345), "0.001234");
  assert.equal(sig(NaN), "NaN");
});

test("thumbnail tooltip", () => {
  const scores = { names: ["entropy", "prev_token", "sink"], values: [1.234, 0.4512, 0.1] };
  assert.equal(thumbTooltip(3, 5, scores), "L3 H5 · entropy 1.23 · prev 0.45 · sink 0.10");
  assert.equal(thumbTooltip(3, 5, scores, 0.923), "L3 H5 · entropy 1.23 · prev 0.45 · sink 0.10 · max 0.92");
  assert.equal(thumbTooltip(0, 2), "L0 H2");
  assert.equal(thumbTooltip(7, "mean"), "L7 mean of heads");
  assert.equal(thumbTooltip(7, "rollout", undefined, 0.5), "rollout up to L7 · max 0.50");
});

test("sharpest heads, largest first", () => {
  const sharp = new Float32Array([0.1, 0.9, 0.3, /* L1 */ 0.95, 0.2, NaN]);
  const top = topSharp(sharp, 2, 3, 3);
  assert.deepEqual(
    top.map((s) => [s.layer, s.head]),
    [
      [1, 0],
      [0, 1],
      [0, 2],
    ],
  );
  assert.equal(sharpLabel(top[0]!), "L1 H0 0.95");
  assert.equal(topSharp(sharp, 2, 3, 10).length, 5);
});

test("token labels show whitespace and cut long tokens", () => {
  assert.equal(tokenLabel(12, " the"), "#12 “·the”");
  assert.equal(tokenLabel(0, "\n"), "#0 “↵”");
  assert.equal(tokenLabel(1, "<img src=x onerror=alert(1)>", 10), "#1 “<img·src=…”");
  assert.equal(tokenLabel(2, undefined), "#2 “⋯”");
});

test("range messages and checks", () => {
  assert.equal(rangeMessage("layer", 40, 30), "layer 40 is out of range: the model has layers 0..29");
  assert.equal(inRange(3, 4), true);
  assert.equal(inRange(4, 4), false);
  assert.equal(inRange(-1, 4), false);
  assert.equal(inRange(1.5, 4), false);
  assert.equal(inRange("1", 4), false);
  assert.equal(spanLabel(0, 64, 1024), "tokens 0–63 of 1024");
  assert.equal(spanLabel(0, 12, 12), "all 12 tokens");
});
