// Normalisation and the diverging colour scale of attribution scores (SaliencyView, EvaluationView). Pure functions, tested in node.

export type Normalization = "max_abs" | "sum_abs" | "none";

/**
 * Scale one row of scores for display. Non-finite scores stay NaN (they are drawn hatched, never
 * coloured as if they were numbers).
 * - "max_abs": divided by the row's largest |score|, so the strongest token is at full colour.
 * - "sum_abs": divided by the row's Σ|score|, so each value is that token's share of the row's whole
 *   attribution (|values| sum to 1): a row spread over many tokens stays pale, a concentrated one is
 *   strong. Equal to Attribution.normalized("sum_abs") in Python.
 * - "none": divided by `globalMaxAbs`, the largest |score| of every row, so rows stay comparable.
 */
export function normalizeRow(row: ArrayLike<number>, how: Normalization, globalMaxAbs: number): Float32Array {
  const out = new Float32Array(row.length);
  let denom = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (!Number.isFinite(v)) continue;
    if (how === "sum_abs") denom += Math.abs(v);
    else if (how === "max_abs") denom = Math.max(denom, Math.abs(v));
  }
  if (how === "none") denom = globalMaxAbs;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    out[i] = Number.isFinite(v) ? (denom > 0 ? v / denom : 0) : NaN;
  }
  return out;
}

/**
 * Colour of a normalised value in [-1, 1]: red for positive (supports the target), blue for
 * negative, alpha by magnitude. Unsigned methods (saliency) use one hue. NaN: undefined.
 */
export function scoreColor(v: number, signed: boolean): string | undefined {
  if (!Number.isFinite(v)) return undefined;
  const a = Math.min(1, Math.abs(v));
  const alpha = (0.85 * a).toFixed(3);
  if (!signed) return `rgba(120, 60, 200, ${alpha})`;
  return v >= 0 ? `rgba(214, 39, 40, ${alpha})` : `rgba(31, 119, 180, ${alpha})`;
}

/** A score as text: 3 significant digits, or "NaN" / "inf". */
export function formatScore(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
  return v.toPrecision(3);
}
