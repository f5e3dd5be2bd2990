// Pure arithmetic of the attention view: pooling a token's T weights to a thumbnail's width, the
// head view's token window, and the matrix view's zoomable window (token coordinates ↔ pixels).

/**
 * Max-pool `length` values starting at `start` into `bins` bins (bin b covers values
 * [⌊b·n/bins⌋, ⌊(b+1)·n/bins⌋), at least one). Max, not mean, so a single sharp weight among 1024
 * keys still shows at full height in a 48-pixel thumbnail.
 */
export function maxPool(
  values: ArrayLike<number>,
  start: number,
  length: number,
  bins: number,
  out: Float32Array = new Float32Array(bins),
): Float32Array {
  for (let b = 0; b < bins; b++) {
    const lo = Math.floor((b * length) / bins);
    const hi = Math.max(lo + 1, Math.floor(((b + 1) * length) / bins));
    let m = 0;
    for (let i = lo; i < hi && i < length; i++) {
      const v = values[start + i]!;
      if (v > m) m = v;
    }
    out[b] = m;
  }
  return out;
}

/**
 * The bins [first, end) that show position `pos` of `length` positions max-pooled into `bins`:
 * exactly the bins whose cover (see maxPool) holds it — one when length ≥ bins, a run when fewer.
 */
export function binRange(pos: number, length: number, bins: number): [number, number] {
  if (length <= 0 || bins <= 0) return [0, 0];
  // Bin b starts at ⌊b·n/bins⌋, so it covers pos iff b < (pos+1)·bins/n and, unless it is the
  // only one, b ≥ pos·bins/n.
  let end = Math.ceil(((pos + 1) * bins) / length);
  let first = Math.ceil((pos * bins) / length);
  end = Math.min(bins, Math.max(1, end));
  if (first >= end) first = end - 1;
  return [Math.max(0, first), end];
}

/** Nearest-neighbour source index of each of `bins` target pixels over `length` source cells. */
export function nearestIndex(length: number, bins: number): Int32Array {
  const out = new Int32Array(bins);
  for (let b = 0; b < bins; b++) out[b] = Math.min(length - 1, Math.floor(((b + 0.5) * length) / bins));
  return out;
}

// -- head view window ---------------------------------------------------------------------------

/** A half-open window [start, end) of token positions. */
export interface Span {
  start: number;
  end: number;
}

/** `rows` positions (at most T) whose middle is `center`, clamped inside [0, T). */
export function centeredSpan(T: number, center: number, rows: number): Span {
  const n = Math.max(0, Math.min(T, rows));
  let start = Math.round(center - n / 2);
  start = Math.max(0, Math.min(T - n, start));
  return { start, end: start + n };
}

/** The window moved by `delta` rows, clamped inside [0, T). */
export function shiftSpan(span: Span, T: number, delta: number): Span {
  const n = span.end - span.start;
  const start = Math.max(0, Math.min(T - n, span.start + Math.round(delta)));
  return { start, end: start + n };
}

/**
 * Where the head view's window should be after the selection moved to `selected`: unchanged while
 * the token sits at least `margin` rows inside it, re-centred on the token otherwise. The window
 * also re-fits when T or `rows` changed.
 */
export function followSpan(span: Span | null, T: number, rows: number, selected: number, margin = 4): Span {
  const n = Math.min(T, rows);
  if (!span || span.end - span.start !== n || span.end > T) {
    return centeredSpan(T, selected >= 0 ? selected : n / 2, rows);
  }
  if (selected < 0) return span;
  const m = Math.min(margin, Math.floor(n / 4));
  const inside = selected >= span.start + m && selected < span.end - m;
  const edge = (selected < m && span.start === 0) || (selected >= T - m && span.end === T);
  return inside || edge ? span : centeredSpan(T, selected, rows);
}

// -- matrix view window -------------------------------------------------------------------------

/** The visible part of the T × T pattern, in (fractional) token coordinates, half-open. */
export interface View {
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

export function fullView(T: number): View {
  return { q0: 0, q1: T, k0: 0, k1: T };
}

/** Clamp one axis [a, b) inside [0, T) with a span between `minSpan` and T. */
function clampAxis(a: number, b: number, T: number, minSpan: number): [number, number] {
  let span = Math.min(T, Math.max(Math.min(minSpan, T), b - a));
  if (!(span > 0)) span = T;
  let lo = Math.max(0, Math.min(T - span, a));
  if (!Number.isFinite(lo)) lo = 0;
  return [lo, lo + span];
}

export function clampView(view: View, T: number, minSpan = 4): View {
  const [q0, q1] = clampAxis(view.q0, view.q1, T, minSpan);
  const [k0, k1] = clampAxis(view.k0, view.k1, T, minSpan);
  return { q0, q1, k0, k1 };
}

/**
 * Zoom by `factor` (< 1 zooms in) around the token coordinates (q, k) under the cursor, which stay
 * under the cursor.
 */
export function zoomView(view: View, T: number, factor: number, q: number, k: number, minSpan = 4): View {
  const f = Number.isFinite(factor) && factor > 0 ? factor : 1;
  const qSpan = Math.min(T, Math.max(Math.min(minSpan, T), (view.q1 - view.q0) * f));
  const kSpan = Math.min(T, Math.max(Math.min(minSpan, T), (view.k1 - view.k0) * f));
  const qt = (q - view.q0) / (view.q1 - view.q0);
  const kt = (k - view.k0) / (view.k1 - view.k0);
  const q0 = q - qt * qSpan;
  const k0 = k - kt * kSpan;
  return clampView({ q0, q1: q0 + qSpan, k0, k1: k0 + kSpan }, T, minSpan);
}

/** Pan by (dq, dk) tokens. */
export function panView(view: View, T: number, dq: number, dk: number): View {
  return clampView({ q0: view.q0 + dq, q1: view.q1 + dq, k0: view.k0 + dk, k1: view.k1 + dk }, T, 0);
}

/** The integer window to ask the kernel for: every position at least partly visible. */
export function requestWindow(view: View, T: number): View {
  const q0 = Math.max(0, Math.floor(view.q0 + 1e-9));
  const k0 = Math.max(0, Math.floor(view.k0 + 1e-9));
  const q1 = Math.min(T, Math.max(q0 + 1, Math.ceil(view.q1 - 1e-9)));
  const k1 = Math.min(T, Math.max(k0 + 1, Math.ceil(view.k1 - 1e-9)));
  return { q0, q1, k0, k1 };
}

/** The token coordinates (fractional) at pixel (x, y) of a width × height heatmap showing `view`. */
export function tokenAt(view: View, x: number, y: number, width: number, height: number): { q: number; k: number } {
  return { q: view.q0 + (y / height) * (view.q1 - view.q0), k: view.k0 + (x / width) * (view.k1 - view.k0) };
}

/** The cell (integer query, key) under pixel (x, y), or null outside [0, T). */
export function cellAt(
  view: View,
  T: number,
  x: number,
  y: number,
  width: number,
  height: number,
): { q: number; k: number } | null {
  const t = tokenAt(view, x, y, width, height);
  const q = Math.floor(t.q);
  const k = Math.floor(t.k);
  if (q < 0 || k < 0 || q >= T || k >= T || x < 0 || y < 0 || x >= width || y >= height) return null;
  return { q, k };
}

/**
 * The index of position `pos` in a received window [p0, p1) pooled into `cells` cells (linear, as
 * adaptive mean pooling lays them out), or -1 outside.
 */
export function cellIndex(pos: number, p0: number, p1: number, cells: number): number {
  if (pos < p0 || pos >= p1 || cells <= 0) return -1;
  return Math.min(cells - 1, Math.floor(((pos - p0) * cells) / (p1 - p0)));
}

/** Whether two views are equal to within a thousandth of a token. */
export function sameView(a: View, b: View): boolean {
  const eq = (x: number, y: number) => Math.abs(x - y) < 1e-3;
  return eq(a.q0, b.q0) && eq(a.q1, b.q1) && eq(a.k0, b.k0) && eq(a.k1, b.k1);
}

/** Round numbers for tick labels: the step among 1, 2, 5 × 10^n that gives about `count` ticks. */
export function tickStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p);
  return Math.max(1, 10 * p);
}
