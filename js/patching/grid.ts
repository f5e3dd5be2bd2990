// Plain helpers of PatchingView (no DOM): the grid's orientation, its diverging colour scale, numbers.

/**
 * The kernel's grid is [layer, position] (or [layer, head]); the view draws token rows and layer
 * columns for the residual stream, attention and MLP (as ROME's plots), layer rows and head columns
 * for heads. `rows`/`cols` are the drawn sizes.
 */
export interface Orientation {
  heads: boolean;
  rows: number;
  cols: number;
}

export function orientation(over: string, nLayers: number, nCols: number): Orientation {
  const heads = over === "heads";
  return heads ? { heads, rows: nLayers, cols: nCols } : { heads, rows: nCols, cols: nLayers };
}

/** The drawn [row, col] of kernel cell (layer, index). */
export function drawnCell(o: Orientation, layer: number, index: number): [number, number] {
  return o.heads ? [layer, index] : [index, layer];
}

/** The kernel cell [layer, index] drawn at (row, col). */
export function kernelCell(o: Orientation, row: number, col: number): [number, number] {
  return o.heads ? [row, col] : [col, row];
}

/** The colour scale's end: the largest finite |score|, at least 1 (so a full restore is full colour). */
export function scaleOf(scores: ArrayLike<number>): number {
  let m = 1;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i]!;
    if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  }
  return m;
}

/** NaN cells (not swept, or not yet computed): a neutral grey. */
export const NAN_RGBA: [number, number, number, number] = [150, 150, 150, 90];

/**
 * A score's colour, diverging around 0 (the corrupt run): red towards the clean run (positive),
 * blue past the corrupt run (negative), alpha by |score| / scale so it reads on light and dark themes.
 */
export function scoreRGBA(v: number, scale: number): [number, number, number, number] {
  if (!Number.isFinite(v)) return NAN_RGBA;
  const a = Math.min(1, Math.abs(v) / (scale > 0 ? scale : 1));
  const alpha = Math.round(255 * (0.04 + 0.91 * a));
  return v >= 0 ? [214, 39, 40, alpha] : [31, 119, 180, alpha];
}

/** A number as text: 3 significant digits ("−" for negatives), "NaN", "—" for none. */
export function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined) return "—";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
  const s = Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(digits - 1) : v.toPrecision(digits);
  return s.replace("-", "−");
}

/** Pearson correlation over the cells both grids have finite (NaN when undefined). */
export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isFinite(a[i]!) && Number.isFinite(b[i]!)) {
      n++;
      sa += a[i]!;
      sb += b[i]!;
    }
  }
  if (n === 0) return NaN;
  const ma = sa / n;
  const mb = sb / n;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    if (!(Number.isFinite(a[i]!) && Number.isFinite(b[i]!))) continue;
    const x = a[i]! - ma;
    const y = b[i]! - mb;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : NaN;
}
