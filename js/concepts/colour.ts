// Colours of the concept overlay: a token's cosine with the CAV as a diverging tint (blue towards the
// concept, orange away from it), scaled by the largest magnitude in the text so the strip uses the
// whole range, and a text that is readable on light and dark themes alike.

/** An rgba() background for `value` on the scale [-scale, scale]; transparent for 0 or a bad value. */
export function cosineColour(value: number, scale: number): string {
  if (!Number.isFinite(value) || !(scale > 0)) return "rgba(0, 0, 0, 0)";
  const t = Math.max(-1, Math.min(1, value / scale));
  const alpha = Math.round(Math.abs(t) * 0.85 * 1000) / 1000;
  return t >= 0 ? `rgba(25, 118, 210, ${alpha})` : `rgba(239, 108, 0, ${alpha})`;
}

/** The cosine as shown: signed, three decimals ("+0.213", "−0.050"). */
export function formatCosine(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  const s = Math.abs(value).toFixed(3);
  return value < 0 ? `−${s}` : `+${s}`;
}
