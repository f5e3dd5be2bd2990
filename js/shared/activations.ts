// Numbers as the views draw them: the largest magnitude of a list (the end of a colour scale or of a
// bar), and for a unit's activations (a neuron's, an SAE feature's: NeuronView and FeatureView) a colour
// for a signed value, a short number, and the examples' concatenated activations cut per example.
// Plain functions (no DOM), tested in activations.test.ts.

/** The largest finite |value| of a list (0 when there is none). */
export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (Number.isFinite(a) && a > m) m = a;
  }
  return m;
}

/** The scale a list is drawn on: its largest finite |value|, or 1 when that is 0 (so it can divide). */
export function scaleFor(values: ArrayLike<number>): number {
  return maxAbs(values) || 1;
}

/** A background for a signed value: orange for positive, blue for negative, alpha ∝ |value| / scale. */
export function activationColor(value: number, scale: number): string {
  if (!Number.isFinite(value) || !(scale > 0)) return "transparent";
  const a = Math.min(1, Math.abs(value) / scale) * 0.85;
  if (a < 0.005) return "transparent";
  return value >= 0 ? `rgba(230, 120, 0, ${a.toFixed(3)})` : `rgba(40, 110, 220, ${a.toFixed(3)})`;
}

/** A value with 3 significant figures ("1.23", "-0.0456", "1.2e+4"). */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 1e4 || abs < 1e-3) return v.toExponential(2);
  return v.toPrecision(3);
}

/** Cut `flat` into consecutive slices of the given lengths; throws if they do not add up. */
export function splitByLengths(flat: ArrayLike<number>, lengths: readonly number[]): number[][] {
  const total = lengths.reduce((a, b) => a + b, 0);
  if (total !== flat.length) throw new Error(`expected ${total} activations, got ${flat.length}`);
  const out: number[][] = [];
  let at = 0;
  for (const n of lengths) {
    out.push(Array.from({ length: n }, (_, i) => flat[at + i]!));
    at += n;
  }
  return out;
}
