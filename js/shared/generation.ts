// Baseline and steered generations side by side, and the line that says how much the steering changed:
// what SteeringView shows at each slider step and FeatureView under "steer with this feature". Both read
// the same `steer` answer (DESIGN, "SteeringView"). Text through `el`/`appendVisibleToken` (textContent,
// visibleText); styled by generation.css, every class prefixed lw-generation.

import { tagged } from "./dom";
import { appendVisibleToken, el, setText } from "./tokens";
import "./generation.css";

export interface Effect {
  klNext: number | null;
  klMean: number | null;
  metric: string | null;
  metricChange: number | null;
  changed: number;
  total: number;
  noEffect: boolean;
}

/** What the page uses of a `steer` answer. */
export interface SteerAnswer {
  alpha: number;
  baseline: string[];
  steered: string[];
  /** Per steered token: does it differ from the baseline's token there. */
  changed: boolean[];
  effect: Effect;
}

/** Read a `steer` answer's fields (missing lists read as empty, missing numbers as null). */
export function steerAnswer(m: Record<string, unknown>): SteerAnswer {
  const list = <T>(key: string): T[] => (Array.isArray(m[key]) ? (m[key] as T[]) : []);
  const num = (key: string): number | null => (typeof m[key] === "number" ? (m[key] as number) : null);
  const changed = list<boolean>("changed");
  return {
    alpha: Number(m["alpha"]),
    baseline: list<string>("baseline"),
    steered: list<string>("steered"),
    changed,
    effect: {
      klNext: num("kl_next"),
      klMean: num("kl_mean"),
      metric: typeof m["metric"] === "string" ? m["metric"] : null,
      metricChange: num("metric_change"),
      changed: changed.filter(Boolean).length,
      total: changed.length,
      noEffect: m["no_effect"] === true,
    },
  };
}

function fmt(v: number | null, digits = 3): string {
  return v === null || !Number.isFinite(v) ? "—" : v.toPrecision(digits).replace("-", "−");
}

/** One line on how much the steering changed: "No effect: …" when it changed nothing. */
export function effectLine(e: Effect): string {
  const kl = `KL(baseline ‖ steered) of the next token ${fmt(e.klNext)} nats, mean over the continuation ${fmt(e.klMean)}`;
  const metric = e.metric ? `; ${e.metric} changed by ${e.metricChange !== null && e.metricChange > 0 ? "+" : ""}${fmt(e.metricChange)}` : "";
  if (e.noEffect) return `No effect: no generated token changed and the mean KL is below 0.001 (${kl}${metric}).`;
  return `${e.changed} of ${e.total} generated tokens changed; ${kl}${metric}.`;
}

/** The effect line as an element, `prefix` before it: boxed when there was no effect. */
export function effectNode(e: Effect, prefix = ""): HTMLElement {
  const line = e.noEffect ? tagged(el("div", "lw-generation-no-effect"), "no-effect") : tagged(el("div", "lw-generation-effect"), "effect-line");
  setText(line, prefix + effectLine(e)); // the metric's name is the user's
  return line;
}

/**
 * A column's title and text: the prompt faded (only its last `promptTail` tokens, after an ellipsis, for
 * a long prompt), then the generated tokens, those with `changed[i]` marked.
 */
function column(label: string, prompt: readonly string[], tokens: readonly string[], changed: readonly boolean[] | null, promptTail: number): HTMLElement[] {
  const text = el("div", "lw-generation-text");
  const shown = el("span", "lw-generation-prompt");
  const start = Math.max(0, prompt.length - promptTail);
  if (start > 0) shown.append("…");
  // A token carrying the rest of a split character ("") adds nothing to running text: skipped.
  for (const t of prompt.slice(start)) if (t !== "") appendVisibleToken(shown, t);
  text.append(shown);
  tokens.forEach((t, i) => {
    const span = tagged(el("span", "lw-generation-out"), "gen-token", { index: i });
    if (t !== "") appendVisibleToken(span, t);
    if (changed?.[i]) {
      span.classList.add("lw-generation-changed");
      span.dataset.changed = "true";
      span.title = "differs from the baseline's token here";
    }
    text.append(span);
  });
  return [el("div", "lw-generation-title", label), text];
}

/** Two columns, "baseline" and "steered" (their testids), empty until `show` fills them from an answer. */
export function generationColumns(promptTail = Infinity): {
  el: HTMLElement;
  show(prompt: readonly string[], answer: SteerAnswer, labels: readonly [baseline: string, steered: string]): void;
} {
  const baseline = tagged(el("div", "lw-generation-col"), "baseline");
  const steered = tagged(el("div", "lw-generation-col"), "steered");
  const cols = el("div", "lw-generation-cols");
  cols.append(baseline, steered);
  return {
    el: cols,
    show(prompt, answer, [baseLabel, steerLabel]) {
      baseline.replaceChildren(...column(baseLabel, prompt, answer.baseline, null, promptTail));
      steered.replaceChildren(...column(steerLabel, prompt, answer.steered, answer.changed, promptTail));
    },
  };
}
