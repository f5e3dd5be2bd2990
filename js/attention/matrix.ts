// The matrix view: one head's (or an aggregate's) full pattern as a heatmap. The kernel sends the
// visible window mean-pooled to the canvas's resolution; wheel zooms around the cursor, drag pans,
// and after each move the new window is asked for (debounced, stale answers dropped). Hovering a
// cell shows its weight, first from the pixels received, then exact from the kernel.

import { tagged } from "../shared/dom";
import { el, setText, visibleText } from "../shared/tokens";
import { type DecodedArray, floats } from "../shared/wire";
import { type Ctx, type Drawn, type Panel, type PanelState, button, debounce, errorMessage, errorSlot, exportCanvas, showError, sizeCanvas } from "./context";
import { colorOf, gammaTable, maxOf } from "./draw";
import { inRange, sig, tokenLabel } from "./format";
import { LruCache } from "./latest";
import {
  type View,
  cellAt,
  cellIndex,
  clampView,
  fullView,
  panView,
  requestWindow,
  sameView,
  tickStep,
  tokenAt,
  zoomView,
} from "./pool";
import { buildLut, cssColor } from "./scale";

/** Heatmap side in CSS pixels, and the room of the axes. */
const SIDE = 480;
const LEFT_W = 130;
const TOP_H = 96;
/** At most this many cells per side are asked for. */
const MAX_SIZE = 512;
/** Rows need this many pixels to carry a token label. */
const LABEL_PX = 12;

const LUT = buildLut();
const TABLE = gammaTable(LUT);

/** The answer for one window. */
interface Received {
  what: string;
  key: string;
  win: View;
  rows: number;
  cols: number;
  qStep: number;
  kStep: number;
  values: Float32Array;
  max: number;
  image: HTMLCanvasElement;
}

type Target = Drawn & { what: string };

export class MatrixPanel implements Panel {
  readonly el = tagged(el("div", "lw-panel lw-matrix"), "matrix-view");
  private readonly title = tagged(el("div", "lw-panel-title"), "matrix-title");
  private readonly errorBox = errorSlot("matrix-view-error");
  private readonly topAxis = tagged(el("canvas", "lw-mx-axis"), "matrix-keys-axis");
  private readonly leftAxis = tagged(el("canvas", "lw-mx-axis"), "matrix-queries-axis");
  private readonly canvas = tagged(el("canvas", "lw-mx-canvas"), "matrix-canvas");
  private readonly tooltip = tagged(el("div", "lw-tooltip"), "matrix-tooltip");
  private readonly legendMax = el("span");

  private view: View = fullView(0);
  private viewT = -1;
  private received: Received | null = null;
  private wantKey = "";
  private failed: { key: string; message: string } | null = null;
  private readonly cache = new LruCache<Received>(48 * 2 ** 20, (r) => r.values.length * 8);
  private readonly weights = new LruCache<number>(4096);
  private hover: { q: number; k: number; x: number; y: number } | null = null;
  private drag: { x: number; y: number; view: View; moved: boolean } | null = null;
  private readonly fetchSoon = debounce(this.ctx.view, () => this.fetch(), 150);
  private readonly weightSoon = debounce(this.ctx.view, () => this.fetchWeight(), 60);

  constructor(private readonly ctx: Ctx) {
    const view = ctx.view;
    this.el.dataset.state = "idle";
    const reset = button(view, "", "Reset zoom", "matrix-reset", () => this.setView(fullView(ctx.T), true));
    const bar = el("div", "lw-mx-bar");
    bar.append(reset, el("span", "lw-hint", " wheel: zoom · drag: pan · double-click: reset · click a cell: select its query token"));
    this.canvas.setAttribute("role", "img");
    this.tooltip.hidden = true;
    const plot = el("div", "lw-mx-plot");
    plot.append(this.canvas, this.tooltip);
    const grid = el("div", "lw-mx-grid");
    grid.append(el("div", "lw-mx-corner lw-hint", "query ↓ · key →"), this.topAxis, this.leftAxis, plot);
    const legendBar = el("span", "lw-legend-bar");
    const stops = Array.from({ length: 11 }, (_, i) => cssColor(LUT, i / 10, 1));
    legendBar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
    const legend = tagged(el("div", "lw-legend lw-hint"), "matrix-legend");
    legend.append(el("span", "", "0 "), legendBar, this.legendMax);
    this.el.append(this.title, this.errorBox, bar, grid, legend);

    view.listen(this.canvas, "wheel", (e) => this.onWheel(e)); // not passive: on an element, not the document
    view.listen(this.canvas, "pointerdown", (e) => this.onDown(e));
    view.listen(this.canvas, "pointermove", (e) => this.onMove(e));
    view.listen(this.canvas, "pointerup", (e) => this.onUp(e));
    view.listen(this.canvas, "pointercancel", (e) => this.onUp(e));
    view.listen(this.canvas, "pointerleave", () => this.onLeave());
    view.listen(this.canvas, "dblclick", () => this.setView(fullView(ctx.T), true));
  }

  // -- what to show ---------------------------------------------------------------------------
  private target(): Target | { error: string } | { idle: string } {
    const d = this.ctx.drawn();
    if ("pick" in d) {
      return d.pick === "layer"
        ? { idle: "Pick a layer and head: click a thumbnail in the overview (Shift+click opens it here)." }
        : { idle: "Pick a head: click a thumbnail in the overview, or use the head menu." };
    }
    return "error" in d ? d : { ...d, what: `${this.ctx.version}:${d.layer}:${d.aggregate || d.head}` };
  }

  private size(): number {
    return Math.min(MAX_SIZE, Math.round(SIDE * this.ctx.dpr()));
  }

  update(): void {
    const ctx = this.ctx;
    const T = ctx.T;
    if (T !== this.viewT) {
      this.view = fullView(T);
      this.viewT = T;
    }
    this.layoutCanvases();
    const t = this.target();
    if ("idle" in t || "error" in t) {
      this.wantKey = "";
      this.fetchSoon.cancel();
      ctx.view.client.cancel("matrix");
      this.title.textContent = "idle" in t ? t.idle : "Matrix view";
      this.finish("error" in t ? "error" : "idle", "error" in t ? t.error : null);
      this.received = null;
      this.draw();
      return;
    }
    this.title.textContent =
      t.aggregate === "mean"
        ? `Matrix: mean of the heads of layer ${t.layer}`
        : t.aggregate === "rollout"
          ? `Matrix: rollout up to layer ${t.layer}`
          : `Matrix: layer ${t.layer}, head ${t.head}`;
    this.el.dataset.layer = String(t.layer);
    this.el.dataset.head = t.aggregate ? "" : String(t.head);
    this.el.dataset.aggregate = t.aggregate;
    if (this.received && this.received.what !== t.what) this.received = null;
    this.want(t, false);
    this.draw();
  }

  /** Ask for the visible window of `t` unless it is here or on its way. */
  private want(t: Target, soon: boolean): void {
    const key = this.requestKey(t.what);
    if (key !== this.wantKey) {
      this.wantKey = key;
      this.failed = null;
      const hit = this.cache.get(key);
      if (hit) this.received = hit;
      else if (soon) this.fetchSoon();
      else {
        this.fetchSoon.cancel();
        this.fetch();
      }
    }
    const ready = this.received?.key === key;
    this.finish(ready ? "ready" : this.failed?.key === key ? "error" : "loading", this.failed?.key === key ? this.failed.message : null);
  }

  private requestKey(what: string): string {
    const w = requestWindow(this.view, this.ctx.T);
    return `${what}|${w.q0}:${w.q1}:${w.k0}:${w.k1}|${this.size()}`;
  }

  private finish(state: PanelState, error: string | null): void {
    this.el.dataset.state = state;
    showError(this.errorBox, error);
    const d = this.canvas.dataset;
    const v = this.view;
    d.q0 = String(round3(v.q0));
    d.q1 = String(round3(v.q1));
    d.k0 = String(round3(v.k0));
    d.k1 = String(round3(v.k1));
    const r = this.received;
    d.rows = String(r?.rows ?? 0);
    d.cols = String(r?.cols ?? 0);
    d.qStep = String(r?.qStep ?? 0);
    d.kStep = String(r?.kStep ?? 0);
    this.legendMax.textContent = r ? ` ${sig(r.max, 3)} (√ scale, this window's max)` : "";
  }

  private fetch(): void {
    const t = this.target();
    if (!("what" in t)) return;
    const key = this.requestKey(t.what);
    if (key !== this.wantKey) return;
    const win = requestWindow(this.view, this.ctx.T);
    const size = this.size();
    this.ctx.view.client.request("matrix", "pattern", { ...t.params, ...win, size }).then(
      (r) => {
        if (r === null) return;
        let rec: Received;
        try {
          rec = receivedOf(r.arrays, r.msg, t.what, key, win);
        } catch (e) {
          this.fail(key, errorMessage(e));
          return;
        }
        this.cache.set(key, rec);
        if (key === this.wantKey) {
          this.received = rec;
          this.finish("ready", null);
          this.draw();
          this.refreshTooltip();
        }
      },
      (e: unknown) => this.fail(key, errorMessage(e)),
    );
  }

  private fail(key: string, message: string): void {
    this.failed = { key, message };
    if (key === this.wantKey) this.finish("error", message);
  }

  retry(): void {
    this.failed = null;
    this.wantKey = "";
  }

  reset(): void {
    this.cache.clear();
    this.weights.clear();
    this.received = null;
    this.wantKey = "";
    this.failed = null;
    this.viewT = -1;
    this.hover = null;
    this.tooltip.hidden = true;
  }

  // -- zoom and pan -----------------------------------------------------------------------------------
  private setView(view: View, now: boolean): void {
    const T = this.ctx.T;
    const next = clampView(view, T);
    if (sameView(next, this.view)) return;
    this.view = next;
    const t = this.target();
    if ("what" in t) this.want(t, !now);
    else this.finish(this.el.dataset.state as PanelState, null);
    this.draw();
    this.refreshTooltip();
  }

  private pointer(e: MouseEvent): { x: number; y: number } {
    const rect = this.canvas.getBoundingClientRect();
    const sx = rect.width > 0 ? SIDE / rect.width : 1;
    const sy = rect.height > 0 ? SIDE / rect.height : 1;
    return { x: (e.clientX - rect.left) * sx, y: (e.clientY - rect.top) * sy };
  }

  private onWheel(e: WheelEvent): void {
    if (this.ctx.T === 0 || e.deltaY === 0) return;
    e.preventDefault();
    const { x, y } = this.pointer(e);
    const at = tokenAt(this.view, x, y, SIDE, SIDE);
    const delta = e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    const factor = Math.exp(Math.max(-1, Math.min(1, delta * 0.0015)));
    this.setView(zoomView(this.view, this.ctx.T, factor, at.q, at.k), false);
  }

  private onDown(e: PointerEvent): void {
    if (e.button !== 0) return;
    const { x, y } = this.pointer(e);
    this.drag = { x, y, view: this.view, moved: false };
    try {
      this.canvas.setPointerCapture(e.pointerId);
    } catch {
      // synthetic events have no capturable pointer
    }
  }

  private onMove(e: PointerEvent): void {
    const { x, y } = this.pointer(e);
    const d = this.drag;
    if (d) {
      if (!d.moved && Math.hypot(x - d.x, y - d.y) < 3) return;
      d.moved = true;
      const v = d.view;
      const dq = -((y - d.y) / SIDE) * (v.q1 - v.q0);
      const dk = -((x - d.x) / SIDE) * (v.k1 - v.k0);
      this.canvas.style.cursor = "grabbing";
      this.tooltip.hidden = true;
      this.setView(panView(v, this.ctx.T, dq, dk), false);
      return;
    }
    this.hoverAt(x, y);
  }

  private onUp(e: PointerEvent): void {
    const d = this.drag;
    this.drag = null;
    this.canvas.style.cursor = "";
    if (!d || d.moved) return;
    // A click, not a drag: select the cell's query token.
    const { x, y } = this.pointer(e);
    const cell = cellAt(this.view, this.ctx.T, x, y, SIDE, SIDE);
    if (cell && cell.q !== this.ctx.selectedToken()) this.ctx.view.set({ selected_token: cell.q });
  }

  private onLeave(): void {
    if (this.drag) return;
    this.hover = null;
    this.tooltip.hidden = true;
    this.weightSoon.cancel();
    this.draw();
  }

  // -- hover ----------------------------------------------------------------------------------------------
  private hoverAt(x: number, y: number): void {
    const cell = cellAt(this.view, this.ctx.T, x, y, SIDE, SIDE);
    const t = this.target();
    if (!cell || !("what" in t)) {
      this.hover = null;
      this.tooltip.hidden = true;
      this.draw();
      return;
    }
    const changed = !this.hover || this.hover.q !== cell.q || this.hover.k !== cell.k;
    this.hover = { ...cell, x, y };
    this.tooltip.style.left = `${Math.min(x + 14, SIDE - 150)}px`;
    this.tooltip.style.top = `${y + 14 > SIDE - 70 ? y - 80 : y + 14}px`;
    if (changed) {
      this.refreshTooltip();
      this.draw();
    }
  }

  private weightKey(what: string, q: number, k: number): string {
    return `${what}|${q}:${k}`;
  }

  /** Fill the tooltip for the hovered cell: the exact weight if known, else the received pixel's. */
  private refreshTooltip(): void {
    const h = this.hover;
    const t = this.target();
    const tip = this.tooltip;
    if (!h || !("what" in t)) {
      tip.hidden = true;
      return;
    }
    const tokens = this.ctx.view.tokens();
    tip.dataset.q = String(h.q);
    tip.dataset.k = String(h.k);
    const exact = this.weights.get(this.weightKey(t.what, h.q, h.k));
    const approx = this.approx(h.q, h.k);
    let weight: string;
    if (exact !== undefined) {
      tip.dataset.weight = String(exact);
      weight = `weight ${sig(exact, 4)}`;
    } else {
      delete tip.dataset.weight;
      this.weightSoon();
      if (approx === null) weight = "weight …";
      else if (approx.exactCell) weight = `weight ≈ ${sig(approx.value, 3)} …`;
      else weight = `≈ ${sig(approx.value, 3)} (mean of a ${fmtStep(approx.qStep)} × ${fmtStep(approx.kStep)} cell) …`;
    }
    if (approx) tip.dataset.approx = String(approx.value);
    else delete tip.dataset.approx;
    tip.replaceChildren(
      el("div", "", `query ${tokenLabel(h.q, tokens[h.q])}`),
      el("div", "", `key ${tokenLabel(h.k, tokens[h.k])}`),
      el("div", "lw-tip-weight", weight),
    );
    tip.hidden = false;
  }

  /** The hovered cell's value in the received pixels (uint8 → q·scale + offset), if it is there. */
  private approx(q: number, k: number): { value: number; exactCell: boolean; qStep: number; kStep: number } | null {
    const r = this.received;
    if (!r) return null;
    const row = cellIndex(q, r.win.q0, r.win.q1, r.rows);
    const col = cellIndex(k, r.win.k0, r.win.k1, r.cols);
    if (row < 0 || col < 0) return null;
    const value = r.values[row * r.cols + col]!;
    return { value, exactCell: r.qStep === 1 && r.kStep === 1, qStep: r.qStep, kStep: r.kStep };
  }

  private fetchWeight(): void {
    const h = this.hover;
    const t = this.target();
    if (!h || !("what" in t) || !inRange(h.q, this.ctx.T) || !inRange(h.k, this.ctx.T)) return;
    const key = this.weightKey(t.what, h.q, h.k);
    if (this.weights.has(key)) return;
    this.ctx.view.client.request("weight", "weight", { ...t.params, q: h.q, k: h.k }).then(
      (r) => {
        if (r === null) return;
        const value = r.msg["value"];
        if (typeof value !== "number") return;
        this.weights.set(key, value);
        const now = this.hover;
        if (now && now.q === h.q && now.k === h.k) this.refreshTooltip();
      },
      (e: unknown) => {
        const now = this.hover;
        if (now && now.q === h.q && now.k === h.k) {
          const line = this.tooltip.querySelector(".lw-tip-weight");
          if (line) setText(line, `weight: ${errorMessage(e)}`);
        }
      },
    );
  }

  // -- drawing --------------------------------------------------------------------------------------------
  private layoutCanvases(): void {
    const dpr = this.ctx.dpr();
    sizeCanvas(this.canvas, SIDE, SIDE, dpr);
    sizeCanvas(this.topAxis, SIDE, TOP_H, dpr);
    sizeCanvas(this.leftAxis, LEFT_W, SIDE, dpr);
  }

  private draw(): void {
    const c = this.canvas.getContext("2d");
    if (!c) return;
    const dpr = this.ctx.dpr();
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, SIDE, SIDE);
    c.fillStyle = "rgba(128, 128, 128, 0.13)";
    c.fillRect(0, 0, SIDE, SIDE);
    const v = this.view;
    const r = this.received;
    const T = this.ctx.T;
    if (r && T > 0) {
      const sx = SIDE / (v.k1 - v.k0);
      const sy = SIDE / (v.q1 - v.q0);
      c.imageSmoothingEnabled = false;
      c.drawImage(r.image, (r.win.k0 - v.k0) * sx, (r.win.q0 - v.q0) * sy, (r.win.k1 - r.win.k0) * sx, (r.win.q1 - r.win.q0) * sy);
    }
    const { fg, accent } = this.ctx.colors();
    const sel = this.ctx.selectedToken();
    if (sel >= 0 && T > 0) {
      // The selected token's row (direction "from") or column ("to").
      c.strokeStyle = "#ef8a00";
      c.lineWidth = 1.5;
      c.globalAlpha = 0.9;
      if (this.ctx.direction() === "from") {
        const y0 = ((sel - v.q0) / (v.q1 - v.q0)) * SIDE;
        const y1 = ((sel + 1 - v.q0) / (v.q1 - v.q0)) * SIDE;
        c.strokeRect(-2, y0, SIDE + 4, Math.max(1, y1 - y0));
      } else {
        const x0 = ((sel - v.k0) / (v.k1 - v.k0)) * SIDE;
        const x1 = ((sel + 1 - v.k0) / (v.k1 - v.k0)) * SIDE;
        c.strokeRect(x0, -2, Math.max(1, x1 - x0), SIDE + 4);
      }
      c.globalAlpha = 1;
    }
    const h = this.hover;
    if (h) {
      const x0 = ((h.k - v.k0) / (v.k1 - v.k0)) * SIDE;
      const x1 = ((h.k + 1 - v.k0) / (v.k1 - v.k0)) * SIDE;
      const y0 = ((h.q - v.q0) / (v.q1 - v.q0)) * SIDE;
      const y1 = ((h.q + 1 - v.q0) / (v.q1 - v.q0)) * SIDE;
      c.strokeStyle = accent;
      c.lineWidth = 1.5;
      c.strokeRect(x0, y0, Math.max(2, x1 - x0), Math.max(2, y1 - y0));
    }
    this.drawAxes(fg, accent);
  }

  private drawAxes(fg: string, accent: string): void {
    const dpr = this.ctx.dpr();
    const tokens = this.ctx.view.tokens();
    const sel = this.ctx.selectedToken();
    const hq = this.hover?.q ?? -1;
    const hk = this.hover?.k ?? -1;
    const v = this.view;
    const T = this.ctx.T;
    const mono = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    const label = (i: number): string => {
      const t = visibleText(String(tokens[i] ?? ""));
      return [...t].length > 14 ? [...t].slice(0, 13).join("") + "…" : t;
    };
    // Left: queries.
    const l = this.leftAxis.getContext("2d");
    if (l) {
      l.setTransform(dpr, 0, 0, dpr, 0, 0);
      l.clearRect(0, 0, LEFT_W, SIDE);
      l.font = mono;
      l.textBaseline = "middle";
      const span = v.q1 - v.q0;
      const px = SIDE / Math.max(span, 1e-9);
      if (T > 0 && px >= LABEL_PX) {
        for (let q = Math.floor(v.q0); q < Math.ceil(v.q1); q++) {
          const y = ((q + 0.5 - v.q0) / span) * SIDE;
          if (y < 0 || y > SIDE) continue;
          l.fillStyle = q === sel || q === hq ? accent : fg;
          l.textAlign = "right";
          l.fillText(label(q), LEFT_W - 6, y, LEFT_W - 34);
          l.globalAlpha = 0.5;
          l.textAlign = "left";
          l.fillText(String(q), 2, y);
          l.globalAlpha = 1;
        }
      } else if (T > 0) {
        const step = tickStep(span, SIDE / 40);
        l.fillStyle = fg;
        l.textAlign = "right";
        for (let q = Math.ceil(v.q0 / step) * step; q < v.q1; q += step) {
          const y = ((q + 0.5 - v.q0) / span) * SIDE;
          l.fillText(String(q), LEFT_W - 6, y);
        }
      }
    }
    // Top: keys, written upwards.
    const t = this.topAxis.getContext("2d");
    if (t) {
      t.setTransform(dpr, 0, 0, dpr, 0, 0);
      t.clearRect(0, 0, SIDE, TOP_H);
      t.font = mono;
      t.textBaseline = "middle";
      const span = v.k1 - v.k0;
      const px = SIDE / Math.max(span, 1e-9);
      const vertical = (x: number, text: string, color: string, alpha = 1): void => {
        t.save();
        t.translate(x, TOP_H - 6);
        t.rotate(-Math.PI / 2);
        t.fillStyle = color;
        t.globalAlpha = alpha;
        t.textAlign = "left";
        t.fillText(text, 0, 0, TOP_H - 8);
        t.restore();
      };
      if (T > 0 && px >= LABEL_PX) {
        for (let k = Math.floor(v.k0); k < Math.ceil(v.k1); k++) {
          const x = ((k + 0.5 - v.k0) / span) * SIDE;
          if (x < 0 || x > SIDE) continue;
          vertical(x, label(k), k === sel || k === hk ? accent : fg);
        }
      } else if (T > 0) {
        const step = tickStep(span, SIDE / 50);
        for (let k = Math.ceil(v.k0 / step) * step; k < v.k1; k += step) {
          vertical(((k + 0.5 - v.k0) / span) * SIDE, String(k), fg);
        }
      }
    }
  }

  // -- export ---------------------------------------------------------------------------------------------
  snapshot(): HTMLCanvasElement {
    const dpr = this.ctx.dpr();
    const titleH = 24;
    const width = LEFT_W + SIDE + 8;
    const height = titleH + TOP_H + SIDE + 8;
    const { fg } = this.ctx.colors();
    const { canvas: out, c } = exportCanvas(width, height, dpr, fg);
    c.fillStyle = fg;
    c.font = "12px system-ui, sans-serif";
    c.textBaseline = "middle";
    c.fillText(this.title.textContent ?? "", 4, titleH / 2, width - 8);
    c.drawImage(this.topAxis, LEFT_W, titleH, SIDE, TOP_H);
    c.drawImage(this.leftAxis, 0, titleH + TOP_H, LEFT_W, SIDE);
    c.drawImage(this.canvas, LEFT_W, titleH + TOP_H, SIDE, SIDE);
    return out;
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function fmtStep(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}

/** Check a `pattern` answer against the window asked for, and paint it once into a small canvas. */
function receivedOf(
  arrays: Record<string, DecodedArray>,
  msg: Record<string, unknown>,
  what: string,
  key: string,
  win: View,
): Received {
  const values = floats(arrays, "pattern");
  const shape = arrays["pattern"]!.shape;
  const [rows, cols] = shape;
  if (shape.length !== 2 || !rows || !cols) throw new Error(`"pattern" has shape [${shape.join(", ")}], expected [rows, cols]`);
  const num = (v: unknown, fallback: number): number => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : fallback);
  const qStep = num(msg["q_step"], (win.q1 - win.q0) / rows);
  const kStep = num(msg["k_step"], (win.k1 - win.k0) / cols);
  const max = maxOf(values);
  const image = document.createElement("canvas");
  image.width = cols;
  image.height = rows;
  const c = image.getContext("2d");
  if (c) {
    const img = new ImageData(cols, rows);
    const px = new Uint32Array(img.data.buffer);
    const inv = max > 0 ? 1 / max : 0;
    for (let i = 0; i < values.length; i++) px[i] = colorOf(TABLE, values[i]! * inv);
    c.putImageData(img, 0, 0);
  }
  return { what, key, win, rows, cols, qStep, kStep, values, max, image };
}
