// Plain helpers of LensView (no DOM): which positions the grid shows, and a cell's shade.

/**
 * The half-open window [start, end) of at most `width` positions out of `n` that the grid shows:
 * it keeps `start` when `selected` is inside it, else centres on `selected`.
 */
export function columnWindow(n: number, width: number, start: number, selected: number): [number, number] {
  const w = Math.max(1, Math.min(width, n));
  let s = Math.max(0, Math.min(start, n - w));
  if (selected >= 0 && selected < n && (selected < s || selected >= s + w)) {
    s = Math.max(0, Math.min(selected - Math.floor(w / 2), n - w));
  }
  return [s, s + w];
}

/** The background of a cell whose top token has probability `p` (more opaque = more confident). */
export function probColor(p: number): string {
  if (!Number.isFinite(p) || p <= 0) return "transparent";
  return `rgba(25, 118, 210, ${(0.08 + 0.72 * Math.min(1, p)).toFixed(3)})`;
}

/** A token shortened for a grid cell: at most `max` characters, with an ellipsis. */
export function shorten(token: string, max = 8): string {
  const chars = Array.from(token);
  return chars.length <= max ? token : chars.slice(0, max - 1).join("") + "…";
}
