// A control that offers a list of values the kernel sent (SteeringView's slider over `alpha_values`,
// FeatureView's steering scales over `steer_scales`) shows the step nearest a value it is given.

/** The index of the value in `values` nearest `want` (the first of equals; 0 for an empty list). */
export function nearestStep(values: readonly number[], want: number): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) {
    if (Math.abs(values[i]! - want) < Math.abs(values[best]! - want)) best = i;
  }
  return best;
}
