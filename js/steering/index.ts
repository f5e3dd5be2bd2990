// SteeringView: a coefficient slider; each position asks the kernel to generate with and without
// alpha × direction added to the residual stream, and shows both generations side by side, the
// steered tokens that changed marked, and the effect size (KL, metric change) or a plain "no effect".

import { fillOptions } from "../shared/dom";
import { effectNode, generationColumns, steerAnswer } from "../shared/generation";
import { nearestStep } from "../shared/steps";
import { el } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import "./style.css";

const DEBOUNCE_MS = 150; // while the slider is dragged, ask once it rests this long

function mount(view: View): void {
  const alphas = (): number[] => view.list<number>("alpha_values");

  const controls = el("div", "lw-controls");
  const slider = el("input");
  slider.type = "range";
  slider.dataset.testid = "alpha-slider";
  slider.setAttribute("aria-label", "steering coefficient alpha");
  const alphaText = el("span", "lw-mono lw-alpha");
  alphaText.dataset.testid = "alpha";
  const positions = el("select");
  positions.dataset.testid = "positions";
  controls.append(el("span", "", "α "), slider, alphaText, el("span", "lw-muted", " added at "), positions);
  const scale = el("div", "lw-muted lw-scale");
  const effect = el("div", "lw-effect");
  effect.dataset.testid = "effect";
  effect.setAttribute("aria-live", "polite");
  const columns = generationColumns();
  view.root.append(controls, scale, effect, columns.el);

  let shownStep = -1;
  let timer: ReturnType<typeof setTimeout> | undefined;
  view.onDispose(() => clearTimeout(timer));

  function renderControls(): void {
    const values = alphas();
    slider.min = "0";
    slider.max = String(Math.max(0, values.length - 1));
    slider.step = "1";
    slider.value = String(nearestStep(values, Number(view.get("alpha") ?? 0)));
    fillOptions(positions, view.list<string>("steer_positions").map((p) => [p, p] as const));
    positions.value = String(view.get("positions") ?? "all");
    const norm = Number(view.get("direction_norm"));
    const stream = Number(view.get("stream_norm"));
    view.setHeader(
      `steering · ${String(view.get("direction_name") ?? "")} added to the residual stream entering layer ${view.int("layer", 0)}`,
    );
    scale.textContent =
      `|direction| = ${norm.toPrecision(3)}, the stream's median norm there = ${stream.toPrecision(3)}; ` +
      `the slider runs α from ${(values[0] ?? 0).toPrecision(3)} to ${(values[values.length - 1] ?? 0).toPrecision(3)}`;
    showAlpha();
  }

  function showAlpha(): void {
    const values = alphas();
    const a = values[Number(slider.value)] ?? 0;
    const norm = Number(view.get("direction_norm"));
    const stream = Number(view.get("stream_norm"));
    const ratio = stream > 0 ? (Math.abs(a) * norm) / stream : NaN;
    alphaText.textContent = `${a.toPrecision(3)}  (|α·v| = ${Number.isFinite(ratio) ? ratio.toFixed(2) : "?"} × the stream's norm)`;
  }

  async function run(): Promise<void> {
    const step = Number(slider.value);
    const pos = positions.value || String(view.get("positions") ?? "all");
    shownStep = step;
    view.set({ alpha: alphas()[step] ?? 0, positions: pos }); // Python sees what the page shows
    Object.assign(effect.dataset, { state: "loading", step: String(step) });
    effect.replaceChildren(el("div", "lw-loading", "Generating with and without the direction…"));
    try {
      const r = await view.client.request("steer", "steer", { step, positions: pos });
      if (r === null) return;
      const answer = steerAnswer(r.msg);
      columns.show(view.tokens(), answer, ["baseline (α = 0)", `steered (α = ${answer.alpha.toPrecision(3)})`]);
      effect.dataset.state = answer.effect.noEffect ? "no-effect" : "ready";
      effect.dataset.changed = String(answer.effect.changed);
      effect.replaceChildren(effectNode(answer.effect));
    } catch (e) {
      if (shownStep !== step) return;
      effect.dataset.state = "error";
      effect.replaceChildren(errorBox(e, "steer-error"));
    }
  }

  view.listen(slider, "input", () => {
    showAlpha();
    clearTimeout(timer);
    timer = setTimeout(() => void run(), DEBOUNCE_MS);
  });
  view.listen(slider, "change", () => {
    clearTimeout(timer);
    if (Number(slider.value) !== shownStep) void run();
  });
  view.listen(positions, "change", () => void run());
  view.on(["alpha_values", "direction_norm", "stream_norm", "direction_name", "layer", "model_name"], renderControls);
  view.on("alpha", () => {
    // Set from Python (or by the kernel after a run): follow it if it moved elsewhere.
    const step = nearestStep(alphas(), Number(view.get("alpha") ?? 0));
    if (step === Number(slider.value)) return;
    slider.value = String(step);
    showAlpha();
    void run();
  });

  renderControls();
  void run();
}

export default defineView({ name: "steering", mount });
