// PatchingView: an activation-patching grid on a canvas (token rows × layer columns, or layer rows ×
// head columns), streamed from the kernel group by group; a method toggle (exact / attribution); a
// click on a cell selects it (selected_layer with selected_token or selected_head, the shared names)
// and shows that patched run's metric and top predictions, computed by the kernel.

import { appendVisibleToken, el, quoted, quotedToken, rankRow, setTitle } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, ints } from "../shared/wire";
import { correlation, drawnCell, fmt, kernelCell, orientation, scaleOf, scoreRGBA, type Orientation } from "./grid";
import "./style.css";

const AXIS = 18; // pixels above the cells for the column numbers
const CELL_H = 20;

const SITE_NAMES: Record<string, string> = {
  resid: "residual stream (blocks.{l}.hook_resid_pre)",
  attn: "attention output (blocks.{l}.hook_attn_out)",
  mlp: "MLP output (blocks.{l}.hook_mlp_out)",
  heads: "attention heads (blocks.{l}.attn.hook_z, at every patched position)",
};

interface Grid {
  scores: Float32Array; // [layer, index], kernel order; NaN until computed
  values: Float32Array;
  done: boolean;
  seconds: number | null;
}

function mount(view: View): void {
  const nLayers = (): number => view.int("n_layers", 0);
  const over = (): string => String(view.get("over") ?? "resid");
  const nCols = (): number => (over() === "heads" ? view.int("n_heads", 0) : view.tokens().length);
  const orient = (): Orientation => orientation(over(), nLayers(), nCols());

  const metrics = el("div", "lw-metrics");
  metrics.dataset.testid = "metrics";
  const differs = el("div", "lw-differs");
  differs.dataset.testid = "differs";
  const bar = el("div", "lw-bar-row");
  const methodBox = el("span", "lw-methods");
  const rerun = el("button", "", "re-run");
  rerun.dataset.testid = "rerun";
  rerun.title = "Compute this grid again in the kernel";
  const status = el("span", "lw-muted lw-status");
  status.dataset.testid = "progress";
  const progress = el("progress");
  progress.hidden = true;
  bar.append(methodBox, rerun, progress, status);
  const corr = el("div", "lw-muted lw-corr");
  corr.dataset.testid = "correlation";
  const legend = el("div", "lw-legend lw-muted");
  const labels = el("div", "lw-labels");
  const canvas = el("canvas", "lw-grid");
  canvas.dataset.testid = "patch-grid";
  const wrap = el("div", "lw-grid-wrap");
  const inner = el("div", "lw-grid-inner");
  inner.append(labels, canvas);
  wrap.append(inner);
  const cell = el("div", "lw-cell");
  cell.dataset.testid = "cell-predictions";
  cell.setAttribute("aria-live", "polite");
  view.root.append(metrics, differs, bar, corr, legend, wrap, cell);

  const grids = new Map<string, Grid>();
  let kernelCorrelation: number | null = null;
  let cellKey = "";
  let sweepKey = "";
  let sweepNo = 0;
  let cellW = 24;
  let hover: [number, number] | null = null;
  let firstChunkDrawn = false;

  function empty(): Grid {
    const n = nLayers() * nCols();
    return { scores: new Float32Array(n).fill(NaN), values: new Float32Array(n).fill(NaN), done: false, seconds: null };
  }

  // -- header, metrics, the corrupt prompt's differences -------------------------------------------
  function renderInfo(): void {
    const dir = String(view.get("patch_direction") ?? "denoise");
    view.setHeader(
      `activation patching · ${SITE_NAMES[over()] ?? over()} · ${dir === "denoise" ? "clean into corrupt (denoising)" : "corrupt into clean (noising)"}`,
    );
    metrics.replaceChildren(
      el("span", "", "metric "),
      el("span", "lw-mono lw-metric-name", String(view.get("metric_name") ?? "")),
      el("span", "", ": clean "),
      el("b", "lw-clean", fmt(Number(view.get("clean_metric")))),
      el("span", "", " · corrupt "),
      el("b", "lw-corrupt", fmt(Number(view.get("corrupt_metric")))),
      el("span", "lw-muted", " · score 0 = corrupt, 1 = clean"),
    );
    const tokens = view.tokens();
    const corrupt = view.list<string>("corrupt_tokens");
    const diff = view.list<boolean>("differs");
    const parts: Node[] = [el("span", "lw-muted", "corrupt prompt differs at ")];
    diff.forEach((d, i) => {
      if (!d) return;
      const item = el("span", "lw-diff");
      item.dataset.testid = "diff";
      item.append(`#${i} `);
      const a = el("span", "lw-clean-tok");
      appendVisibleToken(a, tokens[i] ?? "");
      const b = el("span", "lw-corrupt-tok");
      appendVisibleToken(b, corrupt[i] ?? "");
      item.append(a, " → ", b);
      parts.push(item);
    });
    differs.replaceChildren(...parts);
    methodBox.replaceChildren(
      ...view.list<string>("methods").map((m) => {
        const b = el("button", m === view.get("method") ? "lw-on" : "", m);
        b.dataset.testid = `method-${m}`;
        b.addEventListener("click", () => view.set({ method: m }));
        return b;
      }),
    );
  }

  // -- the grid --------------------------------------------------------------------------------------
  function renderLabels(): void {
    const o = orient();
    const tokens = view.tokens();
    const corrupt = view.list<string>("corrupt_tokens");
    const diff = view.list<boolean>("differs");
    const rows: HTMLElement[] = [el("div", "lw-axis-label", o.heads ? "layer \\ head" : "token \\ layer")];
    const selected = selectedCell();
    for (let r = 0; r < o.rows; r++) {
      const row = el("div", "lw-row-label");
      row.style.height = `${CELL_H}px`;
      row.dataset.row = String(r);
      if (o.heads) row.append(`L${r}`);
      else {
        row.append(el("span", "lw-muted", `${r} `));
        const t = el("span", "lw-tok");
        appendVisibleToken(t, tokens[r] ?? "");
        row.append(t);
        if (diff[r]) {
          row.classList.add("lw-differs-row");
          const c = el("span", "lw-corrupt-tok");
          appendVisibleToken(c, corrupt[r] ?? "");
          row.append(" ← ", c);
        }
      }
      if (selected && drawnCell(o, selected[0], selected[1])[0] === r) row.classList.add("lw-selected");
      rows.push(row);
    }
    labels.replaceChildren(...rows);
  }

  function draw(): void {
    const o = orient();
    const grid = grids.get(String(view.get("method")));
    const avail = Math.max(200, (view.root.clientWidth || 800) - 220);
    cellW = Math.max(10, Math.min(28, Math.floor(avail / Math.max(1, o.cols))));
    const dpr = window.devicePixelRatio || 1;
    const w = o.cols * cellW;
    const h = AXIS + o.rows * CELL_H;
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    if (!g) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const muted = getComputedStyle(view.root).getPropertyValue("--lw-fg-muted").trim() || "#666";
    g.fillStyle = muted;
    g.font = "10px sans-serif";
    g.textAlign = "center";
    g.textBaseline = "middle";
    const every = cellW >= 18 ? 1 : cellW >= 12 ? 2 : 5;
    for (let c = 0; c < o.cols; c += every) g.fillText(String(c), c * cellW + cellW / 2, AXIS / 2);
    const scores = grid?.scores;
    const scale = scores ? scaleOf(scores) : 1;
    const cols = nCols();
    for (let r = 0; r < o.rows; r++) {
      for (let c = 0; c < o.cols; c++) {
        const [layer, index] = kernelCell(o, r, c);
        const v = scores ? scores[layer * cols + index]! : NaN;
        const [R, G, B, A] = scoreRGBA(v, scale);
        g.fillStyle = `rgba(${R}, ${G}, ${B}, ${(A / 255).toFixed(3)})`;
        g.fillRect(c * cellW + 0.5, AXIS + r * CELL_H + 0.5, cellW - 1, CELL_H - 1);
      }
    }
    const sel = selectedCell();
    if (sel) {
      const [r, c] = drawnCell(o, sel[0], sel[1]);
      g.strokeStyle = getComputedStyle(view.root).getPropertyValue("--lw-accent").trim() || "#1976d2";
      g.lineWidth = 2;
      g.strokeRect(c * cellW + 1, AXIS + r * CELL_H + 1, cellW - 2, CELL_H - 2);
    }
    legend.textContent = `colour: score from −${fmt(scale, 2)} (blue) through 0 (corrupt, clear) to +${fmt(scale, 2)} (red; 1 = clean); grey: not computed`;
    Object.assign(canvas.dataset, { method: String(view.get("method")), rows: String(o.rows), cols: String(o.cols), cellW: String(cellW) });
    canvas.dataset.filled = String(scores ? scores.reduce((n, v) => n + (Number.isFinite(v) ? 1 : 0), 0) : 0);
  }

  let frame = 0;
  function scheduleDraw(): void {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  }
  view.onDispose(() => cancelAnimationFrame(frame));

  function cellFromEvent(e: MouseEvent): [number, number] | null {
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top - AXIS;
    const o = orient();
    const c = Math.floor(x / cellW);
    const r = Math.floor(y / CELL_H);
    if (y < 0 || r < 0 || c < 0 || r >= o.rows || c >= o.cols) return null;
    return kernelCell(o, r, c);
  }

  view.listen(canvas, "click", (e) => {
    const hit = cellFromEvent(e);
    if (!hit) return;
    const [layer, index] = hit;
    if (over() === "heads") view.set({ selected_layer: layer, selected_head: index });
    else view.set({ selected_layer: layer, selected_token: index });
  });
  view.listen(canvas, "mousemove", (e) => {
    const hit = cellFromEvent(e);
    if (hit?.[0] === hover?.[0] && hit?.[1] === hover?.[1]) return;
    hover = hit;
    if (!hit) {
      canvas.title = "";
      return;
    }
    const [layer, index] = hit;
    const grid = grids.get(String(view.get("method")));
    const at = layer * nCols() + index;
    const where = over() === "heads" ? `layer ${layer}, head ${index}` : `layer ${layer}, position ${index} ${quoted(view.tokens()[index] ?? "")}`;
    setTitle(canvas, `${where}: score ${fmt(grid?.scores[at])}, metric ${fmt(grid?.values[at])}`);
  });

  // -- the sweep: streamed, one request at a time (a new one interrupts the kernel's) -----------------
  function requestSweep(rerun = false): void {
    const method = String(view.get("method"));
    const have = grids.get(method);
    if (have?.done && !rerun) {
      setStatus("ready", `${method}: ${have.seconds !== null ? `computed in ${fmt(have.seconds)} s` : "ready"}`);
      showCorrelation();
      scheduleDraw();
      return;
    }
    const key = `${method}:${++sweepNo}`;
    sweepKey = key;
    const grid = empty();
    grids.set(method, grid);
    setStatus("loading", `computing the ${method} grid…`);
    progress.hidden = false;
    progress.removeAttribute("value");
    scheduleDraw();
    const params: Record<string, unknown> = { method };
    if (rerun) params["rerun"] = true;
    const cols = nCols();
    view.client
      .request("sweep", "sweep", params, undefined, {
        onChunk: (msg, arrays) => {
          if (sweepKey !== key) return;
          const layers = ints(arrays, "layers");
          const indices = ints(arrays, "indices");
          const scores = floats(arrays, "scores");
          const values = floats(arrays, "values");
          for (let i = 0; i < layers.length; i++) {
            const at = layers[i]! * cols + indices[i]!;
            grid.scores[at] = scores[i]!;
            grid.values[at] = values[i]!;
          }
          const done = Number(msg["done"]);
          const total = Number(msg["total"]);
          progress.max = total;
          progress.value = done;
          setStatus("loading", `${method}: ${done} / ${total} cells`);
          status.dataset.done = String(done);
          status.dataset.total = String(total);
          if (!firstChunkDrawn) {
            firstChunkDrawn = true;
            requestAnimationFrame(() => {
              draw();
              canvas.dataset.firstChunkAt = String(Date.now());
            });
          } else scheduleDraw();
          if (layers.length && !canvas.dataset.firstComputedAt && done > layers.length) {
            requestAnimationFrame(() => (canvas.dataset.firstComputedAt = String(Date.now())));
          }
        },
      })
      .then(
        (r) => {
          if (r === null || sweepKey !== key) return;
          grid.scores = floats(r.arrays, "scores");
          grid.values = floats(r.arrays, "values");
          grid.done = true;
          grid.seconds = typeof r.msg["seconds"] === "number" ? r.msg["seconds"] : null;
          const c = r.msg["correlation"];
          if (typeof c === "number") kernelCorrelation = c;
          progress.hidden = true;
          setStatus("ready", `${method}: ${grid.seconds !== null ? `computed in ${fmt(grid.seconds)} s` : "ready"}`);
          showCorrelation();
          scheduleDraw();
        },
        (e: unknown) => {
          if (sweepKey !== key) return;
          grids.delete(method);
          progress.hidden = true;
          status.dataset.state = "error";
          status.replaceChildren(errorBox(e, "sweep-error"));
        },
      );
  }

  function setStatus(state: string, text: string): void {
    status.dataset.state = state;
    status.dataset.method = String(view.get("method"));
    status.textContent = text;
  }

  function showCorrelation(): void {
    const exact = grids.get("exact");
    const attribution = grids.get("attribution");
    let r = kernelCorrelation;
    if (r === null && exact?.done && attribution?.done) r = correlation(exact.scores, attribution.scores);
    corr.textContent = r === null ? "" : `attribution patching vs exact: Pearson r = ${fmt(r)} over the cells both have`;
  }

  // -- the selected cell's patched run -------------------------------------------------------------
  function selectedCell(): [number, number] | null {
    const layer = view.int("selected_layer");
    const index = over() === "heads" ? view.int("selected_head") : view.selected();
    return layer < 0 || index < 0 || layer >= nLayers() || index >= nCols() ? null : [layer, index];
  }

  async function updateCell(): Promise<void> {
    const sel = selectedCell();
    const k = view.int("k", 5);
    const key = sel ? `${sel[0]}:${sel[1]}:${k}` : "";
    if (key === cellKey) return;
    cellKey = key;
    if (!sel) {
      view.client.cancel("cell");
      cell.dataset.state = "idle";
      cell.replaceChildren(el("div", "lw-hint", "Click a cell to run that patch and see its metric and top predictions."));
      return;
    }
    const [layer, index] = sel;
    Object.assign(cell.dataset, { state: "loading", layer: String(layer), index: String(index) });
    const title =
      over() === "heads"
        ? el("div", "lw-cell-title", `Patched run: head ${layer}.${index}`)
        : quotedToken("lw-cell-title", `Patched run: layer ${layer}, position ${index} `, view.tokens()[index] ?? "");
    cell.replaceChildren(title, el("div", "lw-loading", "Running the patched model…"));
    try {
      const response = await view.client.request("cell", "cell", { layer, index, k });
      if (response === null || cellKey !== key) return;
      const ids = ints(response.arrays, "ids");
      const probs = floats(response.arrays, "probs");
      const names = Array.isArray(response.msg["tokens"]) ? (response.msg["tokens"] as unknown[]) : [];
      const value = Number(response.msg["metric"]);
      const score = Number(response.msg["score"]);
      const line = el("div", "lw-cell-metric");
      line.dataset.testid = "cell-metric";
      line.dataset.metric = String(value);
      line.append(
        el("span", "lw-mono", String(view.get("metric_name") ?? "")),
        " = ",
        el("b", "", fmt(value)),
        ` (score ${fmt(score)}; clean ${fmt(Number(view.get("clean_metric")))}, corrupt ${fmt(Number(view.get("corrupt_metric")))})`,
      );
      const estimate = grids.get("attribution");
      if (estimate?.done) line.append(el("span", "lw-muted", ` · attribution estimate ${fmt(estimate.values[layer * nCols() + index])}`));
      const rows = Array.from(ids, (id, r) => {
        const p = probs[r]!;
        const row = rankRow(r + 1, String(names[r] ?? `<${id}>`), p, `${(p * 100).toFixed(2)}%`);
        Object.assign(row.dataset, { testid: "cell-row", tokenId: String(id), prob: String(p) });
        return row;
      });
      cell.dataset.state = "ready";
      cell.replaceChildren(title, line, el("div", "lw-muted", "top next tokens of the patched run:"), ...rows);
    } catch (e) {
      if (cellKey !== key) return;
      cell.dataset.state = "error";
      cell.replaceChildren(title, errorBox(e, "cell-error"));
    }
  }

  view.listen(rerun, "click", () => requestSweep(true));
  view.on("method", () => {
    renderInfo();
    requestSweep();
  });
  view.on(["tokens", "corrupt_tokens", "differs"], () => {
    renderInfo();
    renderLabels();
    scheduleDraw();
  });
  view.on(["metric_name", "clean_metric", "corrupt_metric", "model_name"], renderInfo);
  view.on(["selected_layer", "selected_token", "selected_head"], () => {
    renderLabels();
    scheduleDraw();
    void updateCell();
  });
  view.on("k", () => void updateCell());

  renderInfo();
  renderLabels();
  draw();
  requestSweep();
  void updateCell();
}

export default defineView({ name: "patching", mount });
