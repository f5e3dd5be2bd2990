// The overview: a thumbnail per layer × head (plus the mean over heads and the rollout), all on one
// canvas. Without a selected token each thumbnail is the head's pooled pattern, streamed a layer
// at a time; with one, each is that token's row (or column) as a bar plot, redrawn in a few ms.

import { tagged } from "../shared/dom";
import { el } from "../shared/tokens";
import { type DecodedArray, floats } from "../shared/wire";
import { type Ctx, type Panel, type PanelState, errorMessage, errorSlot, exportCanvas, showError, sizeCanvas } from "./context";
import {
  type StripStyle,
  MARKER,
  PLACEHOLDER,
  STRIP_BACKGROUND,
  drawPattern,
  drawStrip,
  fillSolid,
  gammaTable,
  maxOf,
  meanOfHeads,
} from "./draw";
import { sharpLabel, thumbTooltip, tokenLabel, topSharp } from "./format";
import {
  type Cell,
  type GridLayout,
  SORT_ASCENDING,
  cellOf,
  cellOrigin,
  columnOfHead,
  gridLayout,
  headOrder,
  hitTest,
  meanColumn,
  rolloutColumn,
} from "./grid";
import { LatestFetcher, LruCache } from "./latest";
import { buildLut } from "./scale";

/** One layer of the overview stream. */
interface LayerThumbs {
  rows: number;
  cols: number;
  /** [head, rows, cols], each head divided by its own maximum. */
  thumbs: Float32Array;
  thumbMax: Float32Array;
  /** [score, head], names in scoreNames. */
  scores: Float32Array | undefined;
  scoreNames: string[];
  /** Mean over heads (real weights, pooled) and rollout (pooled), each drawn against its own max. */
  mean: Float32Array;
  rollout: Float32Array | undefined;
  rolloutRows: number;
  rolloutCols: number;
}

/** A token's attention in every layer and head: whole rows, or max-pooled to `width` bins by the kernel. */
export interface TokenRows {
  position: number;
  direction: "from" | "to";
  T: number;
  /** Values per row: T, or the bins the kernel pooled them to (the thumbnails' width). */
  width: number;
  /** [layer, head, width] */
  rows: Float32Array;
  /** [layer, head] each row's largest weight */
  sharpness: Float32Array;
  /** [layer, width] mean over heads */
  mean: Float32Array;
  /** [layer, width] when T ≤ rollout_limit */
  rollout: Float32Array | undefined;
  /** [layer] the largest value of each layer's mean and rollout */
  meanMax: Float32Array;
  rolloutMax: Float32Array | undefined;
}

/** Bins a clicked token's rows are pooled to: the thumbnails' width, at most T (AttentionView.token_bins). */
export function tokenBins(T: number, thumbSize: number): number {
  return Math.max(1, Math.min(thumbSize, T));
}

/** Weights sent as their square roots (uint8: bar heights stay exact to the pixel), squared back. */
function squared(arrays: Record<string, DecodedArray>, name: string): Float32Array {
  const root = floats(arrays, name);
  const out = new Float32Array(root.length);
  for (let i = 0; i < root.length; i++) out[i] = root[i]! * root[i]!;
  return out;
}

/** The largest of each of `n` runs of `len` values. */
function maxima(data: Float32Array, n: number, len: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = maxOf(data, i * len, len);
  return out;
}

/** An optional array of an answer. */
function floatsOf(arrays: Record<string, DecodedArray>, name: string): Float32Array | undefined {
  return arrays[name] ? floats(arrays, name) : undefined;
}

/** Check a token answer (whole rows, or pooled: `root`, `root_mean`, ...) against the model's shape. */
export function tokenRowsOf(
  arrays: Record<string, DecodedArray>,
  position: number,
  direction: "from" | "to",
  nLayers: number,
  nHeads: number,
  T: number,
): TokenRows {
  const pooled = arrays["root"] !== undefined;
  const name = pooled ? "root" : "rows";
  const shape = arrays[name]?.shape ?? [];
  const [L, H, width] = shape;
  if (L !== nLayers || H !== nHeads || !width || width > T || (!pooled && width !== T)) {
    throw new Error(`"${name}" has shape [${shape.join(", ")}], expected [${nLayers}, ${nHeads}, ${pooled ? "bins ≤ " : ""}${T}]`);
  }
  const rows = pooled ? squared(arrays, "root") : floats(arrays, "rows");
  const sharpness = floats(arrays, "sharpness");
  if (sharpness.length !== L * H) throw new Error(`"sharpness" has ${sharpness.length} values, expected ${L * H}`);
  if (pooled) {
    const mean = squared(arrays, "root_mean");
    const rollout = arrays["root_rollout"] ? squared(arrays, "root_rollout") : undefined;
    if (mean.length !== L * width) throw new Error(`"root_mean" has ${mean.length} values, expected ${L * width}`);
    const meanMax = floats(arrays, "mean_max");
    const rolloutMax = floatsOf(arrays, "rollout_max");
    const ok = rollout && rolloutMax && rollout.length === L * width;
    return { position, direction, T, width, rows, sharpness, mean, rollout: ok ? rollout : undefined, meanMax, rolloutMax: ok ? rolloutMax : undefined };
  }
  let rollout = floatsOf(arrays, "rollout");
  if (rollout && rollout.length !== L * T) rollout = undefined;
  const mean = new Float32Array(L * T);
  for (let l = 0; l < L; l++) mean.set(meanOfHeads(rows.subarray(l * H * T, (l + 1) * H * T), H, T), l * T);
  return { position, direction, T, width: T, rows, sharpness, mean, rollout, meanMax: maxima(mean, L, T), rolloutMax: rollout && maxima(rollout, L, T) };
}

const LUT = buildLut();
const PATTERN_TABLE = gammaTable(LUT);
const BAR_TABLE = gammaTable(LUT, 0.5, 96);

export class OverviewPanel implements Panel {
  readonly el = tagged(el("div", "lw-panel lw-overview"), "overview");
  private readonly errorBox = errorSlot("overview-error");
  private readonly sharpBox = tagged(el("div", "lw-sharp"), "sharp-heads");
  private readonly legend = tagged(el("div", "lw-legend lw-hint"), "overview-legend");
  private readonly wrap = el("div", "lw-grid-wrap");
  private readonly canvas = tagged(el("canvas", "lw-grid"), "overview-canvas");
  private readonly overlay = el("canvas", "lw-grid-overlay");
  private readonly tooltip = tagged(el("div", "lw-tooltip"), "overview-tooltip");

  private layout: GridLayout = gridLayout(0, 0, 32, false);
  private dpr = 1;
  private layers: (LayerThumbs | undefined)[] = [];
  private streamKey = "";
  private streamState: PanelState = "idle";
  private streamError: string | null = null;
  private received = 0;
  private readonly tokens = new LatestFetcher<TokenRows>(
    (key) => this.fetchToken(key),
    () => this.update(),
    new LruCache<TokenRows>(96 * 2 ** 20, (t) => (t.rows.length + t.mean.length + (t.rollout?.length ?? 0)) * 4),
  );
  /** What the canvas shows: "" for patterns, else the token key. */
  private drawnKey: string | null = null;
  private drawnOrderKey = "";
  private hover: Cell | null = null;
  private image: ImageData | null = null;
  private pixels: Uint32Array | null = null;
  private pooled: Float32Array = new Float32Array(0);

  constructor(
    private readonly ctx: Ctx,
    /** Called when the stream's progress changes (the header shows it). */
    private readonly onStatus: () => void,
  ) {
    Object.assign(this.el.dataset, { position: "-1", state: "idle" });
    this.sharpBox.hidden = true;
    this.overlay.setAttribute("aria-hidden", "true");
    this.tooltip.hidden = true;
    this.canvas.setAttribute("role", "img");
    this.wrap.append(this.canvas, this.overlay, this.tooltip);
    // The legend and the sharpest heads sit beside the grid, so the grid never moves under the cursor.
    const side = el("div", "lw-ov-side");
    side.append(this.legend, this.sharpBox);
    const body = el("div", "lw-ov-body");
    body.append(this.wrap, side);
    this.el.append(this.errorBox, body);

    const view = ctx.view;
    view.listen(this.canvas, "pointermove", (e) => this.onMove(e));
    view.listen(this.canvas, "pointerleave", () => this.onLeave());
    view.listen(this.canvas, "click", (e) => {
      const cell = this.cellAtEvent(e);
      if (cell) this.pick(cell, e.shiftKey);
    });
    view.listen(this.sharpBox, "click", (e) => {
      const chip = (e.target as HTMLElement).closest<HTMLElement>('[data-testid="sharp-head"]');
      if (chip) this.pick({ layer: Number(chip.dataset.layer), column: -1, kind: "head", head: Number(chip.dataset.head) }, e.shiftKey);
    });
  }

  // -- status for the header ---------------------------------------------------------------------
  progress(): { done: number; total: number; state: PanelState } {
    return { done: this.received, total: this.ctx.nLayers(), state: this.streamState };
  }

  // -- the overview stream -------------------------------------------------------------------------
  /** Ask for the thumbnails when the text, the model shape or the thumbnail size changed. */
  ensureStream(): void {
    const ctx = this.ctx;
    const size = ctx.thumbSize();
    const key = `${ctx.version}:${size}:${ctx.nLayers()}:${ctx.nHeads()}`;
    if (key === this.streamKey) return;
    this.streamKey = key;
    this.layers = [];
    this.received = 0;
    this.streamError = null;
    this.drawnKey = null;
    if (ctx.T === 0 || ctx.nLayers() === 0 || ctx.nHeads() === 0 || !(size > 0)) {
      this.streamState = "idle";
      ctx.view.client.cancel("overview");
      this.onStatus();
      return;
    }
    this.streamState = "loading";
    this.onStatus();
    const started = performance.now();
    ctx.view.client
      .request("overview", "overview", { size }, undefined, {
        onChunk: (msg, arrays) => {
          if (this.streamKey !== key) return;
          this.receiveLayer(msg, arrays);
        },
      })
      .then(
        (r) => {
          if (r === null || this.streamKey !== key) return;
          this.streamState = "ready";
          this.afterStream();
          // Measured from asking to every layer drawn: benchmarks read it (bench/attention.py).
          this.el.dataset.overviewMs = (performance.now() - started).toFixed(1);
        },
        (e: unknown) => {
          if (this.streamKey !== key) return;
          this.streamState = "error";
          this.streamError = `overview: ${errorMessage(e)}`;
          this.afterStream();
        },
      );
  }

  private afterStream(): void {
    this.onStatus();
    this.update();
  }

  private receiveLayer(msg: Record<string, unknown>, arrays: Record<string, DecodedArray>): void {
    const ctx = this.ctx;
    const layer = msg["layer"];
    const nLayers = ctx.nLayers();
    const nHeads = ctx.nHeads();
    if (typeof layer !== "number" || !Number.isInteger(layer) || layer < 0 || layer >= nLayers) {
      throw new Error(`overview: a part names layer ${String(layer)}, the model has layers 0..${nLayers - 1}`);
    }
    const thumbs = floats(arrays, "thumbs");
    const shape = arrays["thumbs"]!.shape;
    const [H, rows, cols] = shape;
    if (H !== nHeads || !rows || !cols) {
      throw new Error(`overview: "thumbs" has shape [${shape.join(", ")}], expected [${nHeads}, size, size]`);
    }
    let thumbMax = floatsOf(arrays, "thumb_max");
    if (!thumbMax || thumbMax.length !== H) thumbMax = new Float32Array(H).fill(1);
    let scores = floatsOf(arrays, "scores");
    const names = Array.isArray(msg["score_names"]) ? (msg["score_names"] as unknown[]).map(String) : [];
    if (scores && scores.length % H !== 0) scores = undefined;
    const rolloutArr = arrays["rollout"];
    const rollout = floatsOf(arrays, "rollout");
    const [rr, rc] = rolloutArr ? rolloutArr.shape : [0, 0];
    const entry: LayerThumbs = {
      rows,
      cols,
      thumbs,
      thumbMax,
      scores,
      scoreNames: names,
      mean: meanOfHeads(thumbs, H, rows * cols, thumbMax),
      rollout: rollout && rr && rc && rollout.length === rr * rc ? rollout : undefined,
      rolloutRows: rr ?? 0,
      rolloutCols: rc ?? 0,
    };
    if (!this.layers[layer]) this.received++;
    this.layers[layer] = entry;
    this.onStatus();
    this.el.dataset.layers = String(this.received);
    // Rows appear as they come, unless a token's rows are on show.
    if (this.drawnKey === "" && this.ctx.panel() === "overview") {
      this.drawLayer(layer, null);
      this.drawOverlay();
    } else if (this.drawnKey === "") this.drawnKey = null;
  }

  // -- a token's rows --------------------------------------------------------------------------------
  private tokenKey(): string | null {
    const pos = this.ctx.selectedToken();
    if (pos < 0) return null;
    return `${this.ctx.version}:${pos}:${this.ctx.direction()}:${tokenBins(this.ctx.T, this.ctx.thumbSize())}`;
  }

  private async fetchToken(key: string): Promise<TokenRows | null> {
    const [version, pos, direction, bins] = key.split(":");
    const ctx = this.ctx;
    if (Number(version) !== ctx.version) return null;
    const position = Number(pos);
    const dir = direction === "to" ? "to" : "from";
    const r = await ctx.view.client.request("token", "token", { position, direction: dir, bins: Number(bins) });
    if (r === null) return null;
    return tokenRowsOf(r.arrays, position, dir, ctx.nLayers(), ctx.nHeads(), ctx.T);
  }

  // -- following the traits --------------------------------------------------------------------------
  update(): void {
    const ctx = this.ctx;
    this.ensureStream();
    this.relayout();
    const key = this.tokenKey();
    const selectedRaw = ctx.view.selected();
    let error: string | null = null;
    if (selectedRaw >= 0 && key === null) {
      error = `token ${selectedRaw} is out of range: the text has tokens 0..${ctx.T - 1}`;
    }
    let state: PanelState;
    let data: TokenRows | undefined;
    if (key !== null) {
      data = this.tokens.want(key);
      const failed = this.tokens.error(key);
      if (data) state = "ready";
      else if (failed) {
        state = "error";
        error = failed.message;
      } else state = "loading";
    } else {
      this.tokens.want(null);
      state = error !== null ? "error" : this.streamState;
      if (this.streamError) error = error ?? this.streamError;
    }
    this.el.dataset.state = state;
    showError(this.errorBox, error);
    if (ctx.panel() !== "overview") return; // hidden: keep the stream going, draw when shown
    // Draw: the token's rows when they are here; patterns when no token is selected; otherwise
    // keep what is drawn (data-position tells which) until the answer comes.
    const orderKey = this.orderKey();
    if (data) {
      const dkey = key!;
      if (this.drawnKey !== dkey || this.drawnOrderKey !== orderKey) this.drawAll(data);
      this.drawnKey = dkey;
    } else if (key === null) {
      if (this.drawnKey !== "" || this.drawnOrderKey !== orderKey) this.drawAll(null);
      this.drawnKey = "";
    } else if (this.drawnKey === null) {
      this.drawAll(null);
      this.drawnKey = "";
    }
    this.drawnOrderKey = orderKey;
    if (this.drawnKey === "") this.el.dataset.position = "-1";
    else if (data) this.el.dataset.position = String(data.position);
    Object.assign(this.el.dataset, { direction: ctx.direction(), stream: this.streamState, layers: String(this.received) });
    // The sharp heads and the legend follow what is drawn, not what is being fetched.
    const shown = this.drawnKey ? this.tokens.cache.get(this.drawnKey) : undefined;
    this.renderSharp(shown);
    this.renderLegend(shown);
    this.drawOverlay();
  }

  /** Ask again for what failed: the selected token's rows, or the overview stream. */
  retry(): void {
    const key = this.tokenKey();
    if (key && this.tokens.error(key)) this.tokens.retry(key);
    if (this.streamState === "error") this.streamKey = "";
  }

  reset(): void {
    this.tokens.reset();
    this.streamKey = "";
    this.drawnKey = null;
    this.hover = null;
    this.tooltip.hidden = true;
  }

  // -- layout and drawing -----------------------------------------------------------------------------
  private relayout(): void {
    const ctx = this.ctx;
    const g = gridLayout(ctx.nLayers(), ctx.nHeads(), ctx.thumbSize(), ctx.rolloutAvailable());
    const dpr = ctx.dpr();
    const old = this.layout;
    if (
      g.nLayers === old.nLayers &&
      g.nHeads === old.nHeads &&
      g.cell === old.cell &&
      g.rollout === old.rollout &&
      dpr === this.dpr &&
      this.image
    ) {
      return;
    }
    this.layout = g;
    this.dpr = dpr;
    const D = Math.max(1, Math.round(g.cell * dpr));
    this.image = new ImageData(D, D);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.pooled = new Float32Array(D);
    sizeCanvas(this.canvas, g.width, g.height, dpr);
    sizeCanvas(this.overlay, g.width, g.height, dpr);
    this.wrap.style.width = `${g.width}px`;
    this.wrap.style.height = `${g.height}px`;
    const d = this.canvas.dataset;
    d.cell = String(g.cell);
    d.gap = String(g.gap);
    d.left = String(g.left);
    d.top = String(g.top);
    d.columns = String(g.columns);
    d.meanColumn = String(meanColumn(g));
    d.rolloutColumn = String(rolloutColumn(g));
    this.canvas.setAttribute("aria-label", `Attention thumbnails: ${g.nLayers} layers × ${g.nHeads} heads`);
    this.drawnKey = null;
  }

  /** The head order of every row under the current sort_by (identity when unsorted). */
  private orders(): number[][] {
    const g = this.layout;
    const sort = this.ctx.sortBy();
    const out: number[][] = [];
    for (let l = 0; l < g.nLayers; l++) {
      const layer = this.layers[l];
      const index = layer && sort ? layer.scoreNames.indexOf(sort) : -1;
      out.push(headOrder(g.nHeads, layer?.scores, index, SORT_ASCENDING[sort] ?? false));
    }
    return out;
  }

  private orderKey(): string {
    const sort = this.ctx.sortBy();
    return sort ? `${sort}:${this.received}` : "";
  }

  private drawAll(data: TokenRows | null): void {
    const g = this.layout;
    const c = this.canvas.getContext("2d");
    if (!c) return;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, this.canvas.width, this.canvas.height);
    c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    this.drawLabels(c);
    const orders = this.orders();
    this.canvas.dataset.order = this.ctx.sortBy() ? orders.map((o) => o.join(",")).join(";") : "";
    for (let l = 0; l < g.nLayers; l++) this.drawLayer(l, data, orders[l]);
  }

  private drawLabels(c: CanvasRenderingContext2D): void {
    const g = this.layout;
    const { fg } = this.ctx.colors();
    const sorted = this.ctx.sortBy() !== "";
    c.fillStyle = fg;
    c.font = `${g.cell >= 24 ? 11 : 9}px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace`;
    c.textBaseline = "middle";
    c.textAlign = "right";
    for (let l = 0; l < g.nLayers; l++) {
      const { y } = cellOrigin(g, l, 0);
      c.fillText(`L${l}`, g.left - 5, y + g.cell / 2);
    }
    c.textAlign = "center";
    c.textBaseline = "alphabetic";
    for (let col = 0; col < g.columns; col++) {
      const { x } = cellOrigin(g, 0, col);
      let label: string;
      if (col < g.nHeads) label = sorted ? `${col + 1}` : `H${col}`;
      else label = col === meanColumn(g) ? "mean" : "rollout";
      c.globalAlpha = col < g.nHeads ? 1 : 0.75;
      c.fillText(label, x + g.cell / 2, g.top - 5, g.cell + g.gap);
    }
    c.globalAlpha = 1;
    // A faint rule between the heads and the aggregates.
    const { x } = cellOrigin(g, 0, g.nHeads);
    c.strokeStyle = fg;
    c.globalAlpha = 0.25;
    c.lineWidth = 1;
    c.beginPath();
    c.moveTo(x - g.gap / 2, g.top);
    c.lineTo(x - g.gap / 2, g.height - 2);
    c.stroke();
    c.globalAlpha = 1;
  }

  /** Draw one row of thumbnails (patterns when data is null, else the token's rows). */
  private drawLayer(l: number, data: TokenRows | null, order?: number[]): void {
    const g = this.layout;
    const c = this.canvas.getContext("2d");
    const image = this.image;
    const px = this.pixels;
    if (!c || !image || !px) return;
    const D = image.width;
    const layer = this.layers[l];
    const row = order ?? this.orders()[l] ?? [];
    const put = (col: number): void => {
      const { x, y } = cellOrigin(g, l, col);
      c.putImageData(image, Math.round(x * this.dpr), Math.round(y * this.dpr));
    };
    const style: StripStyle = {
      bars: BAR_TABLE,
      background: STRIP_BACKGROUND,
      marker: MARKER,
      markerWidth: Math.max(1, Math.round(this.dpr)),
    };
    for (let col = 0; col < g.columns; col++) {
      const cell = cellOf(g, [row], 0, col);
      if (!cell) continue;
      if (data) {
        const { T, width } = data;
        const marker = data.position;
        if (cell.kind === "head") {
          drawStrip(px, D, data.rows, (l * g.nHeads + cell.head) * width, width, marker, style, this.pooled, T);
        } else if (cell.kind === "mean") {
          drawStrip(px, D, data.mean, l * width, width, marker, style, this.pooled, T);
        } else if (data.rollout) {
          drawStrip(px, D, data.rollout, l * width, width, marker, style, this.pooled, T);
        } else fillSolid(px, D, PLACEHOLDER);
      } else if (!layer) {
        fillSolid(px, D, PLACEHOLDER);
      } else if (cell.kind === "head") {
        const n = layer.rows * layer.cols;
        const base = cell.head * n;
        drawPattern(px, D, layer.thumbs, base, layer.rows, layer.cols, maxOf(layer.thumbs, base, n), PATTERN_TABLE);
      } else if (cell.kind === "mean") {
        drawPattern(px, D, layer.mean, 0, layer.rows, layer.cols, maxOf(layer.mean), PATTERN_TABLE);
      } else if (layer.rollout) {
        drawPattern(px, D, layer.rollout, 0, layer.rolloutRows, layer.rolloutCols, maxOf(layer.rollout), PATTERN_TABLE);
      } else fillSolid(px, D, PLACEHOLDER);
      put(col);
    }
    if (this.ctx.sortBy() && g.cell >= 20) {
      // Sorted columns are not heads: label each thumbnail with its head.
      c.font = "9px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
      c.textAlign = "left";
      c.textBaseline = "top";
      for (let col = 0; col < g.nHeads; col++) {
        const { x, y } = cellOrigin(g, l, col);
        const label = `H${row[col] ?? col}`;
        const w = c.measureText(label).width + 4;
        c.fillStyle = "rgba(255, 255, 255, 0.8)";
        c.fillRect(x, y, w, 11);
        c.fillStyle = "#08306b";
        c.fillText(label, x + 2, y + 1);
      }
    }
  }

  /** Outlines on the overlay: the selected head (or aggregate) and the hovered thumbnail. */
  private drawOverlay(): void {
    const g = this.layout;
    const c = this.overlay.getContext("2d");
    if (!c) return;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, this.overlay.width, this.overlay.height);
    c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    const { fg, accent } = this.ctx.colors();
    const ring = (layer: number, col: number, color: string, width: number): void => {
      if (layer < 0 || col < 0) return;
      const { x, y } = cellOrigin(g, layer, col);
      c.strokeStyle = color;
      c.lineWidth = width;
      const o = width / 2 + 0.5;
      c.strokeRect(x - o, y - o, g.cell + 2 * o, g.cell + 2 * o);
    };
    const layer = this.ctx.selectedLayer();
    const agg = this.ctx.aggregate();
    if (layer >= 0) {
      if (agg === "mean") ring(layer, meanColumn(g), accent, 2);
      else if (agg === "rollout") ring(layer, rolloutColumn(g), accent, 2);
      else {
        const orders = this.orders();
        for (const h of this.ctx.heads()) ring(layer, columnOfHead(orders, layer, h), accent, 2);
      }
    }
    if (this.hover) ring(this.hover.layer, this.hover.column, fg, 1);
  }

  private renderSharp(data: TokenRows | undefined): void {
    const box = this.sharpBox;
    if (!data) {
      box.hidden = true;
      box.replaceChildren();
      box.dataset.position = "-1";
      return;
    }
    const top = topSharp(data.sharpness, this.ctx.nLayers(), this.ctx.nHeads(), 5);
    const title = data.direction === "from" ? "Sharpest heads: largest weight from " : "Sharpest heads: largest weight on ";
    const tokens = this.ctx.view.tokens();
    const items = top.map((s) => {
      const b = tagged(el("button", "lw-chip", sharpLabel(s)), "sharp-head");
      b.type = "button";
      Object.assign(b.dataset, { layer: String(s.layer), head: String(s.head), value: String(s.value) });
      b.title = "Open this head in the head view (Shift+click: matrix view)";
      return b;
    });
    box.replaceChildren(el("div", "lw-hint", `${title}${tokenLabel(data.position, tokens[data.position])}`), ...items);
    box.dataset.position = String(data.position);
    box.hidden = false;
  }

  private renderLegend(data: TokenRows | undefined): void {
    if (data) {
      const tok = tokenLabel(data.position, this.ctx.view.tokens()[data.position]);
      this.legend.textContent =
        data.direction === "from"
          ? `Each thumbnail: where ${tok} looks — its weight on each key position, left to right (bar height √weight, max-pooled). Orange line: the token. Esc clears.`
          : `Each thumbnail: who looks at ${tok} — the weight each query position puts on it, left to right (bar height √weight, max-pooled). Orange line: the token. Esc clears.`;
    } else {
      this.legend.textContent =
        "Each thumbnail: a head's attention pattern (queries down, keys across), normalised to its own maximum, √ scale. Hover for scores; click a token to see its attention in every head.";
    }
  }

  // -- pointer ------------------------------------------------------------------------------------
  private cellAtEvent(e: MouseEvent): Cell | null {
    const rect = this.canvas.getBoundingClientRect();
    const sx = rect.width > 0 ? this.layout.width / rect.width : 1;
    const sy = rect.height > 0 ? this.layout.height / rect.height : 1;
    return hitTest(this.layout, this.orders(), (e.clientX - rect.left) * sx, (e.clientY - rect.top) * sy);
  }

  private onMove(e: PointerEvent): void {
    const cell = this.cellAtEvent(e);
    const same = cell && this.hover && cell.layer === this.hover.layer && cell.column === this.hover.column;
    if (!same) {
      this.hover = cell;
      this.drawOverlay();
    }
    if (!cell) {
      this.tooltip.hidden = true;
      this.canvas.style.cursor = "";
      return;
    }
    this.canvas.style.cursor = "pointer";
    this.tooltip.textContent = this.tooltipText(cell);
    this.tooltip.dataset.layer = String(cell.layer);
    this.tooltip.dataset.head = cell.kind === "head" ? String(cell.head) : cell.kind;
    this.tooltip.hidden = false;
    const rect = this.wrap.getBoundingClientRect();
    const { x, y } = cellOrigin(this.layout, cell.layer, cell.column);
    const left = Math.min(x, Math.max(0, rect.width - 260));
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${y + this.layout.cell + 4}px`;
  }

  private onLeave(): void {
    this.hover = null;
    this.tooltip.hidden = true;
    this.drawOverlay();
  }

  tooltipText(cell: Cell): string {
    const layer = this.layers[cell.layer];
    const key = this.drawnKey;
    const data = key ? this.tokens.cache.get(key) : undefined;
    if (cell.kind === "head") {
      const scores = layer?.scores
        ? { names: layer.scoreNames, values: layer.scoreNames.map((_, i) => layer.scores![i * this.layout.nHeads + cell.head]!) }
        : undefined;
      const sharp = data ? data.sharpness[cell.layer * this.layout.nHeads + cell.head] : undefined;
      return thumbTooltip(cell.layer, cell.head, scores, sharp);
    }
    let sharp: number | undefined;
    if (data) sharp = (cell.kind === "mean" ? data.meanMax : data.rolloutMax)?.[cell.layer];
    return thumbTooltip(cell.layer, cell.kind, undefined, sharp);
  }

  /** A click on a thumbnail: open it in the head view (with Shift: the matrix view). */
  private pick(cell: Cell, matrix: boolean): void {
    const panel = matrix ? "matrix" : "head";
    if (cell.kind === "head") {
      this.ctx.view.set({ selected_layer: cell.layer, selected_head: cell.head, heads: [cell.head], aggregate: "", panel });
    } else if (cell.kind === "mean" || this.ctx.rolloutAvailable()) {
      this.ctx.view.set({ selected_layer: cell.layer, aggregate: cell.kind, panel });
    }
  }

  // -- export ---------------------------------------------------------------------------------------
  snapshot(): HTMLCanvasElement {
    const { width, height } = this.layout;
    // The labels are in the theme's text colour: put them on a background they read on.
    const { canvas, c } = exportCanvas(width, height, this.dpr, this.ctx.colors().fg);
    c.drawImage(this.canvas, 0, 0, width, height);
    c.drawImage(this.overlay, 0, 0, width, height);
    return canvas;
  }
}
