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

/** Mixture-of-experts shape, from the view's traits (0 experts: a dense MLP). */
export interface Experts {
  n_experts: number;
  d_expert: number;
  d_shared: number;
}

/** A neuron's short label: `N37` in a dense MLP; `E1·5` (expert 1, unit 5) or `S5` (the shared expert's unit 5) in a mixture. */
export function neuronLabel(neuron: number, experts: Experts): string {
  if (!experts.n_experts || !experts.d_expert) return `N${neuron}`;
  const routed = experts.n_experts * experts.d_expert;
  if (neuron >= routed) return `S${neuron - routed}`;
  return `E${Math.floor(neuron / experts.d_expert)}·${neuron % experts.d_expert}`;
}

/** A neuron's long name, for titles: `neuron 37 (expert 1, unit 5)`. */
export function neuronName(neuron: number, experts: Experts): string {
  if (!experts.n_experts || !experts.d_expert) return `neuron ${neuron}`;
  const routed = experts.n_experts * experts.d_expert;
  const where =
    neuron >= routed
      ? `shared expert, unit ${neuron - routed}`
      : `expert ${Math.floor(neuron / experts.d_expert)}, unit ${neuron % experts.d_expert}`;
  return `neuron ${neuron} (${where})`;
}

/** One layer's routing of a token, as a line of text: `expert 2 · 0.61, expert 0 · 0.39` (and the shared gate). */
export function routeLine(experts: Int32Array, weights: Float32Array, k: number, layer: number, shared?: Float32Array): string {
  const parts = [];
  for (let r = 0; r < k; r++) {
    const i = layer * k + r;
    if (i >= experts.length) break;
    parts.push(`expert ${experts[i]} · ${weights[i]!.toFixed(2)}`);
  }
  if (shared && layer < shared.length) parts.push(`shared · ${shared[layer]!.toFixed(2)}`);
  return parts.join(", ");
}
