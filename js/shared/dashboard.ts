// The parts of a unit's dashboard that NeuronView (a neuron) and FeatureView (an SAE feature) both draw:
// its activation over the text, the histogram of its activations, the tokens its output weights promote
// and suppress, and corpus examples with the activation at each token. Text through `el`,
// `appendVisibleToken` and `rankRow` (visibleText); styled by dashboard.css, every class prefixed
// lw-dashboard.

import { activationColor, formatValue, scaleFor } from "./activations";
import { tagged } from "./dom";
import { appendVisibleToken, el, rankRow, renderTokenStrip, textStripOptions } from "./tokens";
import type { View } from "./view";
import { floats, ints, type DecodedArray } from "./wire";
import "./dashboard.css";

/** A corpus example as the kernel sends it (a NeuronIndex's or a FeatureIndex's). */
export interface Example {
  text_index: number;
  activation: number;
  tokens: string[];
  peak: number;
}

/**
 * The text's tokens tinted by `acts` on `scale` (testids overlay, overlay-token with data-value); a click
 * selects a token. Positions in `skip` are not tinted but struck through, `why` in their hover text.
 */
export function activationOverlay(view: View, acts: ArrayLike<number>, scale: number, skip: ReadonlySet<number> = new Set(), why = ""): HTMLElement {
  const box = tagged(el("div", "lw-dashboard-overlay"), "overlay");
  const spans = renderTokenStrip(box, view.tokens(), {
    ...textStripOptions(view.model),
    selected: view.selected(),
    onSelect: (i) => view.set({ selected_token: i }),
  });
  spans.forEach((span, i) => {
    tagged(span, "overlay-token", { value: acts[i] });
    if (skip.has(i)) {
      span.classList.add("lw-dashboard-skipped");
      span.title += `  ${why}`;
      return;
    }
    span.style.background = activationColor(acts[i]!, scale);
    span.title += `  activation ${formatValue(acts[i]!)}`;
  });
  return box;
}

export interface HistogramOptions {
  /** Each bin's range as shown on hover; by default `bins` equal bins over [lo, hi). */
  labels?: readonly string[];
  /** The testids of the bars' box and of a bar. */
  testid?: string;
  barTestid?: string;
}

/** A histogram of `counts` and its axis (lo, `axis`, hi): two elements. */
export function histogram(counts: Int32Array, lo: number, hi: number, axis: string, options: HistogramOptions = {}): HTMLElement[] {
  const { labels, testid = "histogram", barTestid = "hist-bar" } = options;
  const peak = Math.max(1, ...counts);
  const width = (hi - lo) / Math.max(1, counts.length);
  const hist = tagged(el("div", "lw-dashboard-hist"), testid);
  counts.forEach((c, b) => {
    const bar = tagged(el("div", "lw-dashboard-hist-bar"), barTestid, { count: c });
    bar.style.height = `${(c / peak) * 100}%`;
    const range = labels?.[b] ?? `[${formatValue(lo + b * width)}, ${formatValue(lo + (b + 1) * width)})`;
    bar.title = `${c} token${c === 1 ? "" : "s"} in ${range}`;
    hist.append(bar);
  });
  const line = el("div", "lw-dashboard-hist-axis");
  line.append(el("span", "", formatValue(lo)), el("span", "", axis), el("span", "", formatValue(hi)));
  return [hist, line];
}

/**
 * The tokens a unit's output weights promote and suppress, side by side (rows promoted-token and
 * suppressed-token, with data-token-id), from an answer's `promoted_tokens`, `promoted`,
 * `promoted_logits` and the same for `suppressed`. `unit` says what a logit is per ("logit per unit").
 */
export function vocabulary(msg: Record<string, unknown>, arrays: Record<string, DecodedArray>, unit: string): HTMLElement {
  const list = (label: string, which: "promoted" | "suppressed"): HTMLElement => {
    const box = el("div");
    const names = msg[`${which}_tokens`];
    const ids = ints(arrays, which);
    const logits = floats(arrays, `${which}_logits`);
    const scale = scaleFor(logits);
    box.append(el("h4", "", `${label} (${unit})`));
    (Array.isArray(names) ? names : []).forEach((name, r) => {
      const row = rankRow(r + 1, String(name), Math.abs(logits[r] ?? 0) / scale, formatValue(logits[r] ?? NaN));
      box.append(tagged(row, `${which}-token`, { tokenId: ids[r] }));
    });
    return box;
  };
  const vocab = el("div", "lw-dashboard-vocab");
  vocab.append(list("Promotes", "promoted"), list("Suppresses", "suppressed"));
  return vocab;
}

/** One corpus example: its activation, then its tokens tinted by `acts` on `scale`, the peak outlined. */
export function exampleRow(e: Example, acts: readonly number[], scale: number, testid: string): HTMLElement {
  const row = tagged(el("div", "lw-dashboard-example"), testid, { activation: e.activation, textIndex: e.text_index });
  row.append(el("span", "lw-dashboard-act", formatValue(e.activation)));
  e.tokens.forEach((tok, j) => {
    const span = el("span", j === e.peak ? "lw-token lw-dashboard-peak" : "lw-token");
    const v = acts[j] ?? 0;
    span.style.background = activationColor(v, scale);
    span.title = `activation ${formatValue(v)}`;
    appendVisibleToken(span, tok);
    row.append(span);
  });
  return row;
}
