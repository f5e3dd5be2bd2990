// Plain helpers of FeatureView (no DOM): the dashboard's sentences and the grouping of examples.
// Tested in format.test.ts.

import { formatValue, scaleFor } from "../shared/activations";

/** "fires on 3 of 31 tokens (9.7%)": a feature's density over the tokens the SAE reads. */
export function densityText(fires: number, tokens: number): string {
  if (!(tokens > 0)) return "no token is read by the SAE";
  const share = (100 * fires) / tokens;
  const pct = share === 0 || share >= 1 ? share.toFixed(1) : share.toPrecision(2);
  return `fires on ${fires} of ${tokens} token${tokens === 1 ? "" : "s"} (${pct}%)`;
}

/** A corpus band of the sample's examples: "quantile 1 of 4 (strongest): 0.786–0.909". */
export function bandTitle(i: number, n: number, lo: number, hi: number): string {
  const which = n > 1 && i === 0 ? " (strongest)" : n > 1 && i === n - 1 ? " (weakest)" : "";
  return `quantile ${i + 1} of ${n}${which}: activation ${formatValue(lo)}–${formatValue(hi)}`;
}

/** The steering coefficient's label: "+0.5 × the stream's norm" (|α·v| over the stream's median norm). */
export function scaleLabel(scale: number): string {
  if (scale === 0) return "0 (no steering)";
  return `${scale > 0 ? "+" : "−"}${formatValue(Math.abs(scale))} × the stream's norm`;
}

/** "[lo, hi)" labels of log-spaced histogram bins from their `bins + 1` edges. */
export function binLabels(edges: ArrayLike<number>): string[] {
  const out: string[] = [];
  for (let b = 0; b + 1 < edges.length; b++) out.push(`[${formatValue(edges[b]!)}, ${formatValue(edges[b + 1]!)})`);
  return out;
}

/** The largest finite value among the positions the SAE reads (those in `unread` left out); 1 if none. */
export function readScale(values: ArrayLike<number>, unread: ReadonlySet<number>): number {
  return scaleFor(Array.from(values).filter((_, i) => !unread.has(i)));
}
