// Plain helper of NeuronView (no DOM): one position of a layer's summary. Tested in format.test.ts.
// The colours and numbers of activations are js/shared/activations.ts's.

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
