// Colours of the attention view: a perceptual single-hue scale for weights (a 256-entry lookup
// table packed for ImageData, so drawing is one array write per pixel) and one colour per head.

/** ColorBrewer "Blues" (9 classes), light to dark: perceptually ordered, readable in grey. */
export const BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"];

/** Gamma of the weight → colour map: sqrt lifts weak patterns out of the white. */
export const GAMMA = 0.5;

/** One colour per head drawn together (Tableau 10, then two more), as CSS strings. */
export const HEAD_COLORS = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
  "#17becf",
  "#8c564b",
];

export function headColor(head: number): string {
  return HEAD_COLORS[((head % HEAD_COLORS.length) + HEAD_COLORS.length) % HEAD_COLORS.length]!;
}

/** "#rrggbb" → [r, g, b] (0..255). */
export function parseHex(hex: string): [number, number, number] {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex.trim());
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  const n = parseInt(m[1]!, 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** An opaque RGB colour as one Uint32 in ImageData's byte order (R, G, B, A in memory). */
export function packRgb(r: number, g: number, b: number, a = 255): number {
  return LITTLE_ENDIAN ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
}

/** The bytes of a packed colour, [r, g, b, a]. */
export function unpackRgb(c: number): [number, number, number, number] {
  return LITTLE_ENDIAN
    ? [c & 255, (c >>> 8) & 255, (c >>> 16) & 255, c >>> 24]
    : [c >>> 24, (c >>> 16) & 255, (c >>> 8) & 255, c & 255];
}

/** 256 colours interpolated (in sRGB) through `stops`, packed for a Uint32Array view of ImageData. */
export function buildLut(stops: readonly string[] = BLUES): Uint32Array {
  const rgb = stops.map(parseHex);
  const lut = new Uint32Array(256);
  const segments = rgb.length - 1;
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * segments;
    const s = Math.min(segments - 1, Math.floor(t));
    const f = t - s;
    const a = rgb[s]!;
    const b = rgb[s + 1]!;
    lut[i] = packRgb(
      Math.round(a[0] + (b[0] - a[0]) * f),
      Math.round(a[1] + (b[1] - a[1]) * f),
      Math.round(a[2] + (b[2] - a[2]) * f),
    );
  }
  return lut;
}

/** Index into the lookup table of a value in [0, 1] (clamped; NaN → 0), after the gamma. */
export function lutIndex(value: number, gamma = GAMMA): number {
  if (!(value > 0)) return 0;
  if (value >= 1) return 255;
  return Math.round(255 * Math.pow(value, gamma));
}

/** The CSS colour of a value in [0, 1] on the scale (for legends and DOM tints). */
export function cssColor(lut: Uint32Array, value: number, gamma = GAMMA): string {
  const [r, g, b] = unpackRgb(lut[lutIndex(value, gamma)]!);
  return `rgb(${r}, ${g}, ${b})`;
}
