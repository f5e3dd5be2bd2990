// Geometry of the overview: one canvas holding n_layers rows × (n_heads + mean [+ rollout]) columns
// of thumbnails, in CSS pixels. Columns may be sorted per row by a head score, so a column is not a
// head: `order[layer][column]` says which head a column shows.

export interface GridLayout {
  nLayers: number;
  nHeads: number;
  /** Whether a rollout column follows the mean column (T ≤ rollout_limit). */
  rollout: boolean;
  /** Thumbnail side. */
  cell: number;
  gap: number;
  /** x of the first column, y of the first row (room for the labels). */
  left: number;
  top: number;
  columns: number;
  width: number;
  height: number;
}

export const MIN_CELL = 28; // thumbnails of short texts are upscaled to stay readable and clickable
export const MAX_CELL = 160;

export function gridLayout(nLayers: number, nHeads: number, cell: number, rollout: boolean): GridLayout {
  const c = Math.round(Math.min(MAX_CELL, Math.max(MIN_CELL, Number.isFinite(cell) ? cell : 32)));
  const gap = c >= 24 ? 4 : 2;
  const left = 34;
  const top = 18;
  const columns = Math.max(0, nHeads) + 1 + (rollout ? 1 : 0);
  const layers = Math.max(0, nLayers);
  return {
    nLayers: layers,
    nHeads: Math.max(0, nHeads),
    rollout,
    cell: c,
    gap,
    left,
    top,
    columns,
    width: left + columns * (c + gap) + 2,
    height: top + layers * (c + gap) + 2,
  };
}

/** Top-left corner of (layer, column). */
export function cellOrigin(g: GridLayout, layer: number, column: number): { x: number; y: number } {
  return { x: g.left + column * (g.cell + g.gap), y: g.top + layer * (g.cell + g.gap) };
}

/** The column of the mean over heads, and of the rollout (-1 when there is none). */
export function meanColumn(g: GridLayout): number {
  return g.nHeads;
}
export function rolloutColumn(g: GridLayout): number {
  return g.rollout ? g.nHeads + 1 : -1;
}

export type Cell =
  | { layer: number; column: number; kind: "head"; head: number }
  | { layer: number; column: number; kind: "mean" }
  | { layer: number; column: number; kind: "rollout" };

/** What (layer, column) shows, given each row's head order. */
export function cellOf(g: GridLayout, order: readonly (readonly number[])[], layer: number, column: number): Cell | null {
  if (layer < 0 || layer >= g.nLayers || column < 0 || column >= g.columns) return null;
  if (column < g.nHeads) return { layer, column, kind: "head", head: order[layer]?.[column] ?? column };
  if (column === meanColumn(g)) return { layer, column, kind: "mean" };
  return { layer, column, kind: "rollout" };
}

/** The cell under CSS pixel (x, y) of the canvas, or null in a gap or a label. */
export function hitTest(g: GridLayout, order: readonly (readonly number[])[], x: number, y: number): Cell | null {
  const stride = g.cell + g.gap;
  const cx = x - g.left;
  const cy = y - g.top;
  if (cx < 0 || cy < 0) return null;
  const column = Math.floor(cx / stride);
  const layer = Math.floor(cy / stride);
  if (cx - column * stride >= g.cell || cy - layer * stride >= g.cell) return null;
  return cellOf(g, order, layer, column);
}

/** The column showing `head` in `layer` (the inverse of order). */
export function columnOfHead(order: readonly (readonly number[])[], layer: number, head: number): number {
  const row = order[layer];
  if (!row) return head;
  const i = row.indexOf(head);
  return i < 0 ? head : i;
}

/** Which score sorts which way: low entropy (focused heads) first, high previous/sink weight first. */
export const SORT_ASCENDING: Record<string, boolean> = { entropy: true, prev_token: false, sink: false };

/**
 * Heads of one layer ordered by a score (stable; NaN last). `scores` is [score, head] flat, the
 * row `scoreIndex` is used. Without scores, or scoreIndex < 0, the identity order.
 */
export function headOrder(
  nHeads: number,
  scores: ArrayLike<number> | undefined,
  scoreIndex: number,
  ascending: boolean,
): number[] {
  const heads = Array.from({ length: nHeads }, (_, h) => h);
  if (!scores || scoreIndex < 0 || scores.length < (scoreIndex + 1) * nHeads) return heads;
  const value = (h: number): number => scores[scoreIndex * nHeads + h]!;
  return heads.sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const na = Number.isNaN(va);
    const nb = Number.isNaN(vb);
    if (na || nb) return na === nb ? a - b : na ? 1 : -1;
    if (va === vb) return a - b;
    return ascending ? va - vb : vb - va;
  });
}
