// The curve chart's geometry and the numbers it shows: pure functions, tested in node (chart.test.ts).

/** Where the plot sits in the SVG, in pixels. */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** x of a curve of `n` points: evenly spaced on [0, 1] (as the Evaluation's areas read them); one point spans [0, 1]. */
export function evenGrid(n: number): number[] {
  if (n <= 1) return [0, 1];
  return Array.from({ length: n }, (_, i) => i / (n - 1));
}

/** A one-point curve drawn over [0, 1] is that value twice; longer curves are themselves. */
export function drawnValues(ys: ArrayLike<number>): number[] {
  const out = Array.from(ys);
  return out.length === 1 ? [out[0]!, out[0]!] : out;
}

/** The trapezoid area under (xs, ys): the Evaluation's area of a curve, and of a mean curve on its grid. */
export function trapezoid(xs: ArrayLike<number>, ys: ArrayLike<number>): number {
  let area = 0;
  for (let i = 1; i < xs.length; i++) area += ((xs[i]! - xs[i - 1]!) * (ys[i]! + ys[i - 1]!)) / 2;
  return area;
}

/** A round top for the y axis (1, 2 or 5 × 10^k) at or above the largest finite value; 1 when there is none. */
export function niceMax(values: Iterable<number>): number {
  let max = 0;
  for (const v of values) if (Number.isFinite(v) && v > max) max = v;
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * step >= max * (1 - 1e-9)) return m * step;
  return 10 * step;
}

/** Pixel x of `x` in [0, 1] and pixel y of `y` in [0, top]. */
export function toPixel(x: number, y: number, box: Box, top: number): [number, number] {
  return [box.left + x * box.width, box.top + box.height * (1 - y / top)];
}

/** The SVG `points` of a polyline through (xs, ys), in pixels with one decimal. */
export function polylinePoints(xs: ArrayLike<number>, ys: ArrayLike<number>, box: Box, top: number): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    const [px, py] = toPixel(xs[i]!, ys[i]!, box, top);
    parts.push(`${px.toFixed(1)},${py.toFixed(1)}`);
  }
  return parts.join(" ");
}

/** The inverse of `toPixel`'s y (what a drawn point stands for). */
export function fromPixelY(py: number, box: Box, top: number): number {
  return (1 - (py - box.top) / box.height) * top;
}

/**
 * Token positions from the highest score to the lowest, equal scores in text order: the order in which the
 * curves took tokens away (Python's `ranking_order`).
 */
export function rankingOrder(scores: ArrayLike<number>): number[] {
  return Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/**
 * The point of a curve at which the token of rank `rank` (0: first taken) has just been changed: point
 * k + 1 of a deletion or insertion curve (k = 0 is the untouched input), of the dropped deletion curve
 * (k = 0..n-1), and point k of the kept-alone insertion curve (its points are k = 1..n). -1 when the curve
 * ends before (the dropped deletion curve never drops the last token).
 */
export function markerIndex(curve: string, rank: number, length: number): number {
  const i = curve === "insertion_drop" ? rank : rank + 1;
  return i >= 0 && i < length ? i : -1;
}
