// Plain helpers of NeuronView (no DOM): colours for signed activations, number formats, and the
// splitting of the examples' concatenated activations. Tested in format.test.ts.

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

/** The largest |value| of an array (1 when it is empty or all zero, so it can divide). */
export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (Number.isFinite(a) && a > m) m = a;
  }
  return m > 0 ? m : 1;
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

/** The rows of a [pos, k] layer summary at one position: neuron ids and values, largest first. */
export function rowAt(
  neurons: Int32Array,
  values: Float32Array,
  k: number,
  position: number,
): { neuron: number; value: number }[] {
  const out = [];
  for (let r = 0; r < k; r++) {
    const i = position * k + r;
    if (i >= neurons.length) break;
    out.push({ neuron: neurons[i]!, value: values[i]! });
  }
  return out;
}
