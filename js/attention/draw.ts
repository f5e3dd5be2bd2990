// Pixels of the overview thumbnails, written straight into a Uint32Array view of an ImageData (one
// write per device pixel, no fillRect per cell): 270 thumbnails of a 1024-token row draw in a few ms.

import { binRange, maxPool, nearestIndex } from "./pool";
import { GAMMA, packRgb } from "./scale";

/** Steps of the linear value → colour table (after gamma): fine enough that no two LUT colours merge. */
export const GAMMA_STEPS = 4096;

/**
 * The colour of each linear value v = i / GAMMA_STEPS (i = 0..GAMMA_STEPS), through `gamma`, from
 * lut index `from` to 255: one lookup per pixel instead of a pow.
 */
export function gammaTable(lut: Uint32Array, gamma = GAMMA, from = 0): Uint32Array {
  const out = new Uint32Array(GAMMA_STEPS + 1);
  for (let i = 0; i <= GAMMA_STEPS; i++) {
    const t = Math.pow(i / GAMMA_STEPS, gamma);
    out[i] = lut[Math.round(from + (255 - from) * t)]!;
  }
  return out;
}

/** Look a value in [0, 1] up in a gammaTable (clamped, NaN → 0). */
export function colorOf(table: Uint32Array, v: number): number {
  if (!(v > 0)) return table[0]!;
  return table[v >= 1 ? GAMMA_STEPS : (v * GAMMA_STEPS + 0.5) | 0]!;
}

/**
 * A pattern thumbnail: `rows × cols` values (from `data[base]`, row-major) divided by `norm`,
 * scaled nearest-neighbour to D × D pixels written into `out` (length ≥ D²).
 */
export function drawPattern(
  out: Uint32Array,
  D: number,
  data: ArrayLike<number>,
  base: number,
  rows: number,
  cols: number,
  norm: number,
  table: Uint32Array,
): void {
  const xs = nearestIndex(cols, D);
  const ys = nearestIndex(rows, D);
  const inv = norm > 0 && Number.isFinite(norm) ? 1 / norm : 0;
  // Colour each source cell once, then copy: a thumbnail has at most size² distinct cells.
  const colors = new Uint32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) colors[i] = colorOf(table, data[base + i]! * inv);
  for (let y = 0; y < D; y++) {
    const src = ys[y]! * cols;
    const dst = y * D;
    for (let x = 0; x < D; x++) out[dst + x] = colors[src + xs[x]!]!;
  }
}

export interface StripStyle {
  /** Colours of a bar by its weight (a gammaTable starting well above white, so bars show). */
  bars: Uint32Array;
  background: number;
  marker: number;
  /** Width of the selected-token marker in device pixels. */
  markerWidth: number;
}

/**
 * A token's row (or column) in one head as a D × D bar plot: the `width` weights from `values[base]`
 * (the T weights of a T-token text, or them already max-pooled into `width` bins by the kernel)
 * max-pooled into D columns, each a bar of height √w · D (weights are absolute, 0..1, so heads
 * compare), coloured by weight; a vertical marker at `marker` (the selected token, -1 for none)
 * drawn behind the bars — at T = 1024 a previous-token peak shares the token's pixel column — with a
 * cap on top that always shows.
 */
export function drawStrip(
  out: Uint32Array,
  D: number,
  values: ArrayLike<number>,
  base: number,
  width: number,
  marker: number,
  style: StripStyle,
  pooled: Float32Array = new Float32Array(D),
  T: number = width,
): void {
  maxPool(values, base, width, D, pooled);
  // Height (from the bottom) and colour of each column's bar.
  const heights = new Int32Array(D);
  const colors = new Uint32Array(D);
  for (let x = 0; x < D; x++) {
    const v = pooled[x]!;
    if (v > 0) {
      heights[x] = Math.max(1, Math.round(Math.sqrt(Math.min(1, v)) * D));
      colors[x] = colorOf(style.bars, v);
    }
  }
  let m0 = -1;
  let m1 = -1;
  if (marker >= 0 && marker < T && T > 0) {
    // A thin line in the middle of the pixel columns that show the token.
    const [a, b] = binRange(marker, T, D);
    const w = Math.max(1, Math.min(style.markerWidth, b - a > 2 ? style.markerWidth : b - a));
    m0 = Math.max(0, Math.min(D - w, Math.round((a + b - w) / 2)));
    m1 = m0 + w;
  }
  const cap = Math.max(2, Math.round(D / 16));
  for (let y = 0; y < D; y++) {
    const level = D - y; // a bar of height h covers rows with level ≤ h
    const row = y * D;
    for (let x = 0; x < D; x++) out[row + x] = heights[x]! >= level ? colors[x]! : style.background;
    for (let x = m0; x < m1; x++) if (y < cap || heights[x]! < level) out[row + x] = style.marker;
  }
}

/** Fill D × D pixels with one colour (a row not yet arrived). */
export function fillSolid(out: Uint32Array, D: number, color: number): void {
  out.fill(color, 0, D * D);
}

/** The mean over heads of `n` arrays of `len` values laid end to end (head h at h·len), each × weights[h]. */
export function meanOfHeads(data: ArrayLike<number>, n: number, len: number, weights?: ArrayLike<number>): Float32Array {
  const out = new Float32Array(len);
  if (n <= 0) return out;
  for (let h = 0; h < n; h++) {
    const w = weights ? weights[h]! : 1;
    const base = h * len;
    for (let i = 0; i < len; i++) out[i]! += data[base + i]! * w;
  }
  for (let i = 0; i < len; i++) out[i]! /= n;
  return out;
}

/** The largest of `len` values from `base` (0 when all are ≤ 0 or NaN). */
export function maxOf(data: ArrayLike<number>, base = 0, len = data.length - base): number {
  let m = 0;
  for (let i = 0; i < len; i++) {
    const v = data[base + i]!;
    if (v > m) m = v;
  }
  return m;
}

export const STRIP_BACKGROUND = packRgb(0xee, 0xf1, 0xf5);
export const PLACEHOLDER = packRgb(0xe4, 0xe7, 0xec);
export const MARKER = packRgb(0xef, 0x8a, 0x00);
