// SaliencyView: input tokens coloured by their attribution for a target token. Method, target and
// contrast are picked here and the kernel recomputes (with progress); for a generation, the
// output × input matrix, where clicking an output token lays its row over the text.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { appendVisibleToken, el, renderTokenStrip, setSelected, textStripOptions, type TokenTraits } from "../shared/tokens";
import { floats, type DecodedArray } from "../shared/wire";
import { formatScore, maxAbs, normalizeRow, scoreColor, type Normalization } from "./scale";

interface SaliencyModel extends TokenTraits {
  method: string;
  methods: string[];
  target: string;
  contrast: string;
  candidates: string[];
  target_tokens: string[];
  is_matrix: boolean;
  can_retarget: boolean;
  normalize: Normalization;
  selected_row: number;
  version: number;
  notice: string;
  convergence: string;
}

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
  nonfinite: number;
  rows: number;
  cols: number;
  scores: Float32Array; // [rows, cols]
  mask: Float32Array; // [rows, cols], 1 where the row can depend on the input
}

const css = `
.lw-saliency .lw-controls { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin-bottom: 8px; }
.lw-saliency label { color: var(--lw-fg-muted); display: inline-flex; gap: 4px; align-items: center; }
.lw-saliency select, .lw-saliency input { font: inherit; font-family: var(--lw-mono); max-width: 14em; }
.lw-saliency .lw-targets { margin: 6px 0; display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.lw-saliency .lw-row-chip { font-family: var(--lw-mono); white-space: pre; border: 1px solid var(--lw-border);
  border-radius: 3px; padding: 0 4px; background: var(--lw-generated-tint); cursor: pointer; }
.lw-saliency .lw-row-chip.lw-selected { outline: 2px solid var(--lw-accent); }
.lw-saliency .lw-token.lw-nan { background: repeating-linear-gradient(45deg, var(--lw-tint), var(--lw-tint) 3px,
  rgba(211, 47, 47, 0.35) 3px, rgba(211, 47, 47, 0.35) 6px); }
.lw-saliency .lw-notice { color: var(--lw-error); margin: 4px 0; }
.lw-saliency .lw-detail { color: var(--lw-fg-muted); min-height: 1.5em; font-family: var(--lw-mono); white-space: pre; }
.lw-saliency canvas { display: block; margin-top: 6px; cursor: pointer; image-rendering: pixelated; }
.lw-saliency .lw-legend { color: var(--lw-fg-muted); font-size: 0.9em; }
`;

function labeled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = el("label", undefined, text);
  label.append(control);
  return label;
}

function fillSelect(select: HTMLSelectElement, values: readonly string[], current: string, show = (v: string) => v): void {
  select.replaceChildren();
  const all = values.includes(current) || current === "" ? values : [current, ...values];
  for (const v of all) {
    const option = el("option", undefined, show(v));
    option.value = v;
    select.append(option);
  }
  select.value = current;
}

function quoted(token: string): string {
  return JSON.stringify(token);
}

function render({ model, el: root }: RenderProps<SaliencyModel>): () => void {
  root.classList.add("lw-root", "lw-saliency");
  injectStyle(root, sharedCss + css);
  const client = new Client(model);

  const header = el("div", "lw-header");
  const methodSelect = el("select");
  methodSelect.dataset.testid = "method-select";
  const targetSelect = el("select");
  targetSelect.dataset.testid = "target-select";
  const targetInput = el("input");
  targetInput.dataset.testid = "target-input";
  targetInput.placeholder = "or type a target";
  const contrastInput = el("input");
  contrastInput.dataset.testid = "contrast-input";
  contrastInput.placeholder = "none";
  const applyButton = el("button", undefined, "Recompute");
  applyButton.dataset.testid = "apply";
  const normSelect = el("select");
  normSelect.dataset.testid = "normalize-select";
  fillSelect(normSelect, ["max_abs", "sum_abs", "none"], "max_abs");
  normSelect.title =
    "max_abs: each row divided by its largest |score| (the strongest token at full colour)\n" +
    "sum_abs: each score as its share of the row's total |score| (a spread-out row stays pale)\n" +
    "none: every row divided by the largest |score| of all rows (rows comparable)";
  const progress = el("span", "lw-loading");
  progress.dataset.testid = "progress";
  progress.hidden = true;
  const controls = el("div", "lw-controls");
  const retarget = [labeled("target", targetSelect), targetInput, labeled("contrast", contrastInput)];
  controls.append(labeled("method", methodSelect), ...retarget, applyButton, labeled("scale", normSelect), progress);

  const notice = el("div", "lw-notice");
  notice.dataset.testid = "notice";
  const convergence = el("div", "lw-muted");
  convergence.dataset.testid = "convergence";
  const targets = el("div", "lw-targets");
  targets.dataset.testid = "targets";
  const overlay = el("div");
  overlay.dataset.testid = "overlay";
  overlay.dataset.state = "loading";
  const strip = el("div", "lw-strip");
  strip.dataset.testid = "token-strip";
  const detail = el("div", "lw-detail");
  detail.dataset.testid = "detail";
  const canvas = el("canvas");
  canvas.dataset.testid = "matrix-canvas";
  const legend = el("div", "lw-legend");
  const error = el("div", "lw-error");
  error.dataset.testid = "error";
  error.hidden = true;
  overlay.append(strip, detail);
  root.append(header, controls, convergence, notice, error, targets, overlay, canvas, legend);

  let shown: Shown | undefined;
  let spans: HTMLSpanElement[] = [];

  const row = (): number => Math.max(0, Math.min(model.get("selected_row") ?? 0, (shown?.rows ?? 1) - 1));

  function renderHeader(): void {
    header.replaceChildren();
    const name = model.get("model_name");
    if (name) header.append(el("span", "lw-model", name), " · ");
    header.append(model.get("is_matrix") ? "generation: every output token × the tokens before it" : "token attribution");
    fillSelect(methodSelect, model.get("methods") ?? [], model.get("method") ?? "");
    fillSelect(targetSelect, model.get("candidates") ?? [], model.get("target") ?? "", quoted);
    contrastInput.value = model.get("contrast") ?? "";
    const can = model.get("can_retarget");
    for (const c of retarget) c.hidden = !can;
    notice.textContent = model.get("notice") ?? "";
    convergence.textContent = model.get("convergence") ?? "";
  }

  function renderStrip(): void {
    spans = renderTokenStrip(strip, model.get("tokens") ?? [], {
      ...textStripOptions(model),
      selected: model.get("selected_token") ?? -1,
      onSelect: select,
    });
    paint();
  }

  function select(i: number): void {
    model.set("selected_token", i);
    // In a generation, clicking an output token shows its row.
    const r = shown ? shown.positions.findIndex((p) => p + 1 === i) : -1;
    if (model.get("is_matrix") && r >= 0) model.set("selected_row", r);
    model.save_changes();
  }

  function showRow(r: number): void {
    model.set("selected_row", r);
    if (shown && model.get("is_matrix")) model.set("selected_token", (shown.positions[r] ?? -1) + 1);
    model.save_changes();
  }

  function renderTargets(): void {
    targets.replaceChildren();
    if (!shown) return;
    targets.append(el("span", "lw-hint", shown.rows > 1 ? "targets (click one):" : "target:"));
    shown.targets.forEach((t, r) => {
      const chip = el("span", "lw-row-chip");
      chip.dataset.testid = "row";
      chip.dataset.row = String(r);
      appendVisibleToken(chip, t);
      const c = shown!.contrasts[r];
      if (c !== undefined) {
        chip.append(" − ");
        appendVisibleToken(chip, c);
      }
      chip.title = `f(x) = ${formatScore(shown!.objective[r] ?? NaN)}` +
        (shown!.delta ? `  IG completeness gap ${formatScore(shown!.delta[r] ?? NaN)}` : "");
      chip.classList.toggle("lw-selected", r === row());
      chip.addEventListener("click", () => showRow(r));
      targets.append(chip);
    });
  }

  function rowValues(r: number): { raw: Float32Array; norm: Float32Array } {
    const s = shown!;
    const raw = s.scores.subarray(r * s.cols, (r + 1) * s.cols);
    const how = (model.get("normalize") ?? "max_abs") as Normalization;
    return { raw, norm: normalizeRow(raw, how, maxAbs(s.scores)) };
  }

  function paint(): void {
    setSelected(spans, model.get("selected_token") ?? -1);
    renderTargets();
    if (!shown) return;
    const r = row();
    const { raw, norm } = rowValues(r);
    overlay.dataset.row = String(r);
    overlay.dataset.target = shown.targets[r] ?? "";
    overlay.dataset.method = shown.method;
    overlay.dataset.version = String(shown.version);
    spans.forEach((span, i) => {
      const inside = i < shown!.cols && shown!.mask[r * shown!.cols + i]! > 0;
      const v = inside ? norm[i]! : 0;
      span.style.background = (inside && scoreColor(v, shown!.signed)) || "";
      span.classList.toggle("lw-nan", inside && Number.isNaN(v));
      if (inside) span.dataset.score = String(raw[i]);
      else delete span.dataset.score;
    });
    const i = model.get("selected_token") ?? -1;
    detail.textContent =
      i >= 0 && i < shown.cols
        ? `#${i} ${quoted(model.get("tokens")?.[i] ?? "")}  score ${formatScore(raw[i] ?? NaN)}  for ${quoted(shown.targets[r] ?? "")}`
        : "";
    legend.textContent = shown.signed
      ? "red: raises the target's log-probability · blue: lowers it"
      : "colour: gradient magnitude (unsigned)";
    drawMatrix();
  }

  function drawMatrix(): void {
    const s = shown;
    canvas.hidden = !s || !model.get("is_matrix");
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
    canvas.dataset.rows = String(s.rows);
    canvas.dataset.cols = String(s.cols);
    canvas.dataset.cell = String(cell);
  }

  canvas.addEventListener("click", (event) => {
    const cell = Number(canvas.dataset.cell ?? "0");
    if (!shown || cell <= 0) return;
    const rect = canvas.getBoundingClientRect();
    const r = Math.floor(((event.clientY - rect.top) / rect.height) * shown.rows);
    if (r >= 0 && r < shown.rows) showRow(r);
  });

  function accept(msg: Record<string, unknown>, arrays: Record<string, DecodedArray>): void {
    const version = Number(msg["version"]);
    if (shown && version < shown.version) return; // an older answer: keep the newer one
    const scores = floats(arrays, "scores");
    const mask = floats(arrays, "mask");
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
      nonfinite: Number(msg["n_nonfinite"] ?? 0),
      rows: shape[0] ?? 0,
      cols: shape[1] ?? 0,
      scores,
      mask,
    };
    overlay.dataset.nonfinite = String(shown.nonfinite);
    overlay.dataset.state = "ready";
    error.hidden = true;
    paint();
  }

  function showError(message: string): void {
    error.textContent = message;
    error.hidden = false;
    overlay.dataset.state = shown ? "ready" : "error";
  }

  async function fetchScores(): Promise<void> {
    const version = model.get("version");
    if (shown && shown.version >= version) return;
    try {
      const response = await client.request("scores", "scores", { version });
      if (response) accept(response.msg, response.arrays);
    } catch (e) {
      showError(e instanceof Error ? e.message : String(e));
    }
  }

  async function recompute(): Promise<void> {
    const params = {
      method: methodSelect.value,
      target: targetInput.value || targetSelect.value,
      contrast: contrastInput.value,
    };
    overlay.dataset.state = "computing";
    progress.hidden = false;
    progress.textContent = `computing ${params.method}…`;
    delete progress.dataset.done;
    try {
      const response = await client.request("recompute", "recompute", params, ({ done, total }) => {
        progress.dataset.done = String(done);
        progress.dataset.total = String(total);
        progress.textContent = `computing ${params.method}… ${done}/${total}`;
      });
      if (response === null) return; // a newer recompute owns the view
      targetInput.value = "";
      accept(response.msg, response.arrays);
    } catch (e) {
      showError(e instanceof Error ? e.message : String(e));
    } finally {
      if (!client.isPending("recompute")) progress.hidden = true;
    }
  }

  methodSelect.addEventListener("change", () => void recompute());
  targetSelect.addEventListener("change", () => {
    targetInput.value = "";
    void recompute();
  });
  applyButton.addEventListener("click", () => void recompute());
  for (const input of [targetInput, contrastInput]) {
    input.setAttribute("data-lm-suppress-shortcuts", "true");
    input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // typing here must not trigger notebook shortcuts
      if (e.key === "Enter") void recompute();
    });
  }
  normSelect.addEventListener("change", () => {
    model.set("normalize", normSelect.value as Normalization);
    model.save_changes();
  });

  const handlers: [string, () => void][] = [
    ["change:tokens", renderStrip],
    ["change:selected_token", paint],
    ["change:selected_row", paint],
    ["change:normalize", () => {
      normSelect.value = model.get("normalize");
      paint();
    }],
    ["change:version", () => void fetchScores()],
    ["change:method", renderHeader],
    ["change:target", renderHeader],
    ["change:contrast", renderHeader],
    ["change:candidates", renderHeader],
    ["change:notice", renderHeader],
    ["change:convergence", renderHeader],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);

  normSelect.value = model.get("normalize") ?? "max_abs";
  renderHeader();
  renderStrip();
  void fetchScores();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof SaliencyModel}`, handler);
    client.dispose();
  };
}

export default { render };
