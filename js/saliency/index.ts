// SaliencyView: input tokens coloured by their attribution for a target token. Method, target and
// contrast are picked here and the kernel recomputes (with progress); for a generation, the
// output × input matrix, where selecting an output token lays its row over the text.

import { maxAbs } from "../shared/activations";
import { fillOptions, tagged } from "../shared/dom";
import { appendVisibleToken, el, quoted, setText } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, type DecodedArray } from "../shared/wire";
import { formatScore, normalizeRow, scoreColor, type Normalization } from "../shared/scores";
import "./style.css";

/** What the kernel sent for one result. */
interface Shown {
  version: number;
  method: string;
  signed: boolean;
  targets: string[];
  contrasts: string[];
  positions: number[];
  objective: number[];
  delta: number[] | null;
  rows: number;
  cols: number;
  scores: Float32Array; // [rows, cols]
  mask: Float32Array; // [rows, cols], 1 where the row can depend on the input
}

function labeled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = el("label", undefined, text);
  label.append(control);
  return label;
}

function fillSelect(select: HTMLSelectElement, values: readonly string[], current: string, show = (v: string) => v): void {
  const all = values.includes(current) || current === "" ? values : [current, ...values];
  fillOptions(select, all.map((v) => [v, show(v)] as const));
  select.value = current;
}

function mount(view: View): void {
  const methodSelect = tagged(el("select"), "method-select");
  const targetSelect = tagged(el("select"), "target-select");
  const targetInput = tagged(el("input"), "target-input");
  targetInput.placeholder = "or type a target";
  const contrastInput = tagged(el("input"), "contrast-input");
  contrastInput.placeholder = "none";
  const applyButton = tagged(el("button", "", "Recompute"), "apply");
  // The choices and what each means come from Python (SaliencyView.normalizations).
  const normSelect = tagged(el("select"), "normalize-select");
  const choices = view.list<[string, string]>("normalizations");
  fillSelect(normSelect, choices.map(([v]) => v), view.get("normalize") ?? "");
  normSelect.title = choices.map(([v, label]) => `${v}: ${label}`).join("\n");
  const progress = tagged(el("span", "lw-loading"), "progress");
  progress.hidden = true;
  const retarget = [labeled("target", targetSelect), targetInput, labeled("contrast", contrastInput)];
  const controls = el("div", "lw-controls");
  controls.append(labeled("method", methodSelect), ...retarget, applyButton, labeled("scale", normSelect), progress);

  const convergence = tagged(el("div", "lw-muted"), "convergence");
  const notice = tagged(el("div", "lw-notice"), "notice");
  const error = el("div"); // the error box of the last failed request
  const targets = tagged(el("div", "lw-targets"), "targets");
  const overlay = tagged(el("div"), "overlay");
  overlay.dataset.state = "loading";
  const detail = tagged(el("div", "lw-detail"), "detail");
  const canvas = tagged(el("canvas"), "matrix-canvas");
  canvas.hidden = true;
  const legend = el("div", "lw-legend");

  let shown: Shown | undefined;
  // The strip shows the scores, so it stays inside a host too.
  const strip = view.strip("click one, or use the arrow keys, to see its score", colour);
  overlay.append(strip.el, detail);
  view.root.append(controls, convergence, notice, error, targets, overlay, canvas, legend);

  const row = (): number => Math.max(0, Math.min(view.int("selected_row", 0), (shown?.rows ?? 1) - 1));
  const isMatrix = (): boolean => Boolean(view.get("is_matrix"));

  function renderControls(): void {
    view.setHeader(isMatrix() ? "generation: every output token × the tokens before it" : "token attribution");
    fillSelect(methodSelect, view.list("methods"), view.get("method") ?? "");
    fillSelect(targetSelect, view.list("candidates"), view.get("target") ?? "", (t) => quoted(t));
    contrastInput.value = view.get("contrast") ?? "";
    for (const c of retarget) c.hidden = !view.get("can_retarget");
    setText(notice, view.get("notice") ?? "");
    setText(convergence, view.get("convergence") ?? "");
  }

  function showRow(r: number): void {
    view.set(shown && isMatrix() ? { selected_row: r, selected_token: (shown.positions[r] ?? -1) + 1 } : { selected_row: r });
  }

  function renderTargets(): void {
    targets.replaceChildren();
    if (!shown) return;
    const s = shown;
    targets.append(el("span", "lw-hint", s.rows > 1 ? "targets (click one):" : "target:"));
    s.targets.forEach((t, r) => {
      const chip = tagged(el("span", "lw-row-chip"), "row");
      chip.dataset.row = String(r);
      appendVisibleToken(chip, t);
      const c = s.contrasts[r];
      if (c !== undefined) {
        chip.append(" − ");
        appendVisibleToken(chip, c);
      }
      chip.title = `f(x) = ${formatScore(s.objective[r] ?? NaN)}` + (s.delta ? `  IG completeness gap ${formatScore(s.delta[r] ?? NaN)}` : "");
      chip.classList.toggle("lw-selected", r === row());
      targets.append(chip);
    });
  }

  function rowValues(r: number): { raw: Float32Array; norm: Float32Array } {
    const s = shown!;
    const raw = s.scores.subarray(r * s.cols, (r + 1) * s.cols);
    return { raw, norm: normalizeRow(raw, view.get("normalize") as Normalization, maxAbs(s.scores)) };
  }

  /** Colour the strip's tokens by the selected row's scores (after each redraw of the strip, too). */
  function colour(spans: HTMLSpanElement[]): void {
    if (!shown) return;
    const s = shown;
    const r = row();
    const { raw, norm } = rowValues(r);
    spans.forEach((span, i) => {
      const inside = i < s.cols && s.mask[r * s.cols + i]! > 0;
      const v = inside ? norm[i]! : 0;
      span.style.background = (inside && scoreColor(v, s.signed)) || "";
      span.classList.toggle("lw-nan", inside && Number.isNaN(v));
      if (inside) span.dataset.score = String(raw[i]);
      else delete span.dataset.score;
    });
  }

  function paint(): void {
    renderTargets();
    if (!shown) return;
    colour(strip.spans);
    const r = row();
    const i = view.selected();
    Object.assign(overlay.dataset, { row: String(r), target: shown.targets[r] ?? "", method: shown.method, version: String(shown.version) });
    setText(
      detail,
      i >= 0 && i < shown.cols
        ? `#${i} ${quoted(view.tokens()[i] ?? "")}  score ${formatScore(shown.scores[r * shown.cols + i] ?? NaN)}  for ${quoted(shown.targets[r] ?? "")}`
        : "",
    );
    legend.textContent = shown.signed
      ? "red: raises the target's log-probability · blue: lowers it"
      : "colour: gradient magnitude (unsigned)";
    drawMatrix();
  }

  function drawMatrix(): void {
    const s = shown;
    canvas.hidden = !s || !isMatrix();
    if (!s || canvas.hidden) return;
    const cell = Math.max(3, Math.min(16, Math.floor(640 / Math.max(1, s.cols))));
    canvas.width = s.cols * cell;
    canvas.height = s.rows * cell;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    for (let r = 0; r < s.rows; r++) {
      const { norm } = rowValues(r);
      for (let c = 0; c < s.cols; c++) {
        const inside = s.mask[r * s.cols + c]! > 0;
        const colour = inside ? scoreColor(norm[c]!, s.signed) : undefined;
        ctx.fillStyle = !inside ? "rgba(128,128,128,0.08)" : colour ?? "rgba(211,47,47,0.9)";
        ctx.fillRect(c * cell, r * cell, cell, cell);
      }
    }
    ctx.strokeStyle = "#1976d2";
    ctx.lineWidth = 2;
    ctx.strokeRect(1, row() * cell + 1, canvas.width - 2, cell - 2);
    Object.assign(canvas.dataset, { rows: String(s.rows), cols: String(s.cols), cell: String(cell) });
  }

  function accept(msg: Record<string, unknown>, arrays: Record<string, DecodedArray>): void {
    const version = Number(msg["version"]);
    if (shown && version < shown.version) return; // an older answer: keep the newer one
    const shape = arrays["scores"]!.shape;
    shown = {
      version,
      method: String(msg["method"]),
      signed: Boolean(msg["signed"]),
      targets: (msg["target_tokens"] as string[]) ?? [],
      contrasts: (msg["contrast_tokens"] as string[]) ?? [],
      positions: (msg["positions"] as number[]) ?? [],
      objective: (msg["objective"] as number[]) ?? [],
      delta: (msg["delta"] as number[] | null) ?? null,
      rows: shape[0] ?? 0,
      cols: shape[1] ?? 0,
      scores: floats(arrays, "scores"),
      mask: floats(arrays, "mask"),
    };
    overlay.dataset.nonfinite = String(msg["n_nonfinite"] ?? 0);
    overlay.dataset.state = "ready";
    error.replaceChildren();
    paint();
  }

  function showError(e: unknown): void {
    error.replaceChildren(errorBox(e));
    overlay.dataset.state = shown ? "ready" : "error";
  }

  async function fetchScores(): Promise<void> {
    const version = view.int("version", 0);
    if (shown && shown.version >= version) return;
    const first = version === 0; // a view built on a trace: the kernel computes its first result now
    if (first) showProgress(`computing ${view.get("method")}…`);
    try {
      const response = await view.client.request("scores", "scores", { version }, first ? onProgress : undefined);
      if (response) accept(response.msg, response.arrays);
    } catch (e) {
      showError(e);
    } finally {
      settle();
    }
  }

  /**
   * Hide the progress line once nothing is being computed. (The first result's `version` bump asks for the
   * scores again while the first request is out: the line must go when that second answer comes.)
   */
  function settle(): void {
    if (!view.client.isPending("scores") && !view.client.isPending("recompute")) progress.hidden = true;
  }

  function showProgress(text: string): void {
    overlay.dataset.state = "computing";
    progress.hidden = false;
    setText(progress, text);
    delete progress.dataset.done;
  }

  function onProgress({ done, total }: { done: number; total: number }): void {
    Object.assign(progress.dataset, { done: String(done), total: String(total) });
    progress.textContent = `${progress.textContent?.replace(/ \d+\/\d+$/, "")} ${done}/${total}`;
  }

  async function recompute(): Promise<void> {
    const params = { method: methodSelect.value, target: targetInput.value || targetSelect.value, contrast: contrastInput.value };
    showProgress(`computing ${params.method}…`);
    try {
      const response = await view.client.request("recompute", "recompute", params, onProgress);
      if (response === null) return; // a newer recompute owns the view
      targetInput.value = "";
      accept(response.msg, response.arrays);
    } catch (e) {
      showError(e);
    } finally {
      settle();
    }
  }

  view.listen(methodSelect, "change", () => void recompute());
  view.listen(targetSelect, "change", () => {
    targetInput.value = "";
    void recompute();
  });
  view.listen(applyButton, "click", () => void recompute());
  for (const input of [targetInput, contrastInput]) {
    view.listen(input, "keydown", (e) => {
      if (e.key === "Enter") void recompute();
    });
  }
  view.listen(normSelect, "change", () => view.set({ normalize: normSelect.value }));
  view.listen(targets, "click", (e) => {
    const chip = (e.target as HTMLElement).closest<HTMLElement>(".lw-row-chip");
    if (chip) showRow(Number(chip.dataset.row));
  });
  view.listen(canvas, "click", (e) => {
    if (!shown || canvas.hidden) return;
    const rect = canvas.getBoundingClientRect();
    const r = Math.floor(((e.clientY - rect.top) / rect.height) * shown.rows);
    if (r >= 0 && r < shown.rows) showRow(r);
  });

  view.on("selected_token", () => {
    // In a generation, selecting an output token shows its row.
    const r = shown && isMatrix() ? shown.positions.findIndex((p) => p + 1 === view.selected()) : -1;
    if (r >= 0 && r !== row()) view.set({ selected_row: r }); // which paints
    else paint();
  });
  view.on("selected_row", paint);
  view.on("normalize", () => {
    normSelect.value = view.get("normalize");
    paint();
  });
  view.on("version", () => void fetchScores());
  view.on(["method", "methods", "target", "contrast", "candidates", "can_retarget", "notice", "convergence", "model_name"], renderControls);

  renderControls();
  void fetchScores();
}

export default defineView({ name: "saliency", mount });
