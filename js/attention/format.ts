// Text of the attention view: numbers, tooltips, range messages. Plain strings: the view puts them
// on the page with textContent only.

import { visibleText } from "../shared/tokens";

/** `x` with `digits` significant digits, without exponent for ordinary attention weights. */
export function sig(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a < 1e-4 || a >= 1e6) return x.toExponential(digits - 1);
  return x.toPrecision(digits);
}

/** Two decimals, for scores in tooltips. */
export function fixed2(x: number): string {
  return Number.isFinite(x) ? x.toFixed(2) : "–";
}

/** Short labels of the head scores, by the kernel's score name. */
const SCORE_LABELS: Record<string, string> = { entropy: "entropy", prev_token: "prev", sink: "sink" };

/**
 * The tooltip of an overview thumbnail: "L3 H5 · entropy 1.23 · prev 0.45 · sink 0.10", plus
 * " · max 0.92" when a token's row is shown (its sharpness).
 */
export function thumbTooltip(
  layer: number,
  head: number | "mean" | "rollout",
  scores?: { names: readonly string[]; values: readonly number[] },
  sharpness?: number,
): string {
  const parts = [head === "mean" ? `L${layer} mean of heads` : head === "rollout" ? `rollout up to L${layer}` : `L${layer} H${head}`];
  if (scores) {
    scores.names.forEach((name, i) => {
      const v = scores.values[i];
      if (v !== undefined) parts.push(`${SCORE_LABELS[name] ?? name} ${fixed2(v)}`);
    });
  }
  if (sharpness !== undefined && Number.isFinite(sharpness)) parts.push(`max ${fixed2(sharpness)}`);
  return parts.join(" · ");
}

export interface SharpHead {
  layer: number;
  head: number;
  value: number;
}

/** The `k` heads with the largest sharpness ([layer, head] flat), largest first; ties by layer, head. */
export function topSharp(sharpness: ArrayLike<number>, nLayers: number, nHeads: number, k = 5): SharpHead[] {
  const all: SharpHead[] = [];
  for (let l = 0; l < nLayers; l++) {
    for (let h = 0; h < nHeads; h++) {
      const value = sharpness[l * nHeads + h];
      if (value !== undefined && Number.isFinite(value)) all.push({ layer: l, head: h, value });
    }
  }
  all.sort((a, b) => b.value - a.value || a.layer - b.layer || a.head - b.head);
  return all.slice(0, k);
}

/** "L12 H3 0.92" */
export function sharpLabel(s: SharpHead): string {
  return `L${s.layer} H${s.head} ${fixed2(s.value)}`;
}

/** "#12 “·the”" — a token for a tooltip or title, whitespace made visible, long ones cut. */
export function tokenLabel(index: number, token: string | undefined, max = 24): string {
  let text = visibleText(token ?? "");
  if ([...text].length > max) text = [...text].slice(0, max - 1).join("") + "…";
  return `#${index} “${text}”`;
}

/** Why an index cannot be used: "layer 40 is out of range: the model has layers 0..29". */
export function rangeMessage(what: string, value: number, n: number, plural = `${what}s`): string {
  if (n <= 0) return `${what} ${value} is out of range: there are no ${plural}`;
  return `${what} ${value} is out of range: the model has ${plural} 0..${n - 1}`;
}

/** Whether `i` is an integer index into n items. */
export function inRange(i: unknown, n: number): i is number {
  return typeof i === "number" && Number.isInteger(i) && i >= 0 && i < n;
}

/** "tokens 120–183 of 1024" */
export function spanLabel(start: number, end: number, T: number, noun = "tokens"): string {
  return end - start >= T ? `all ${T} ${noun}` : `${noun} ${start}–${end - 1} of ${T}`;
}
