// Plain helpers of SteeringView (no DOM): the effect line's text.

export interface Effect {
  klNext: number | null;
  klMean: number | null;
  metric: string | null;
  metricChange: number | null;
  changed: number;
  total: number;
  noEffect: boolean;
}

function num(v: number | null, digits = 3): string {
  return v === null || !Number.isFinite(v) ? "—" : v.toPrecision(digits).replace("-", "−");
}

/** One line on how much the steering changed: "No effect: …" when it changed nothing. */
export function effectLine(e: Effect): string {
  const kl = `KL(baseline ‖ steered) of the next token ${num(e.klNext)} nats, mean over the continuation ${num(e.klMean)}`;
  const metric = e.metric ? `; ${e.metric} changed by ${e.metricChange !== null && e.metricChange > 0 ? "+" : ""}${num(e.metricChange)}` : "";
  if (e.noEffect) return `No effect: no generated token changed and the mean KL is below 0.001 (${kl}${metric}).`;
  return `${e.changed} of ${e.total} generated tokens changed; ${kl}${metric}.`;
}
