// The head view (bertviz style): queries on the left, keys on the right, one line per weight drawn
// on a canvas between the two token columns, a colour per head. Long texts show a window of at most
// ROWS tokens that follows the selected token and scrolls with the wheel or the ▲/▼ buttons.

import { tagged } from "../shared/dom";
import { appendVisibleToken, chatLabels, el, setTitle, textStripOptions, tokenTitle, visibleText } from "../shared/tokens";
import { type DecodedArray, floats } from "../shared/wire";
import { type Ctx, type Drawn, type Panel, type PanelState, button, debounce, errorMessage, errorSlot, exportCanvas, showError, sizeCanvas } from "./context";
import { sig, spanLabel, tokenLabel } from "./format";
import { LruCache } from "./latest";
import { type Span, cellIndex, followSpan, shiftSpan } from "./pool";
import { headColor } from "./scale";

/** Tokens per column at most. */
export const ROWS = 64;
const ROW_H = 20;
const LINES_W = 180;
/** Weights below this draw no line (a row of 64 keys has at most 100 such lines). */
const MIN_WEIGHT = 0.01;
const BUCKETS = 10;

/** Weights of one window: heads (or one aggregate) × query cells × key cells. */
interface WindowData {
  /** What it is for, without the window: version, layer, heads or aggregate. */
  what: string;
  /** `what` and the window: the request key. */
  key: string;
  /** Head indices of the slices, or [-1] for an aggregate. */
  heads: number[];
  q0: number;
  q1: number;
  k0: number;
  k1: number;
  rows: number;
  cols: number;
  values: Float32Array;
}

type Hover = { side: "q" | "k"; index: number } | null;

export class HeadPanel implements Panel {
  readonly el = tagged(el("div", "lw-panel lw-headview"), "head-view");
  private readonly title = tagged(el("div", "lw-panel-title"), "head-view-title");
  private readonly chips = tagged(el("div", "lw-chips"), "head-chips");
  private readonly errorBox = errorSlot("head-view-error");
  private readonly nav = el("div", "lw-hv-nav");
  private readonly windowLabel = tagged(el("span", "lw-hint"), "head-view-window");
  private readonly earlier = button(this.ctx.view, "", "▲ earlier", "window-earlier", () => this.scrollBy(-Math.floor(ROWS / 2)));
  private readonly later = button(this.ctx.view, "", "▼ later", "window-later", () => this.scrollBy(Math.floor(ROWS / 2)));
  private readonly body = el("div", "lw-hv-body");
  private readonly left = tagged(el("div", "lw-hv-col lw-hv-left"), "head-view-queries");
  private readonly right = tagged(el("div", "lw-hv-col lw-hv-right"), "head-view-keys");
  private readonly canvas = tagged(el("canvas", "lw-hv-lines"), "head-view-canvas");
  private readonly info = tagged(el("div", "lw-hint lw-hv-info"), "head-view-info");

  private span: Span | null = null;
  private lastSelected = -2;
  private domKey = "";
  private leftRows: HTMLElement[] = [];
  private rightRows: HTMLElement[] = [];
  private data: WindowData | null = null;
  private wantKey = "";
  private failed: { key: string; message: string } | null = null;
  private hover: Hover = null;
  private readonly cache = new LruCache<WindowData>(32 * 2 ** 20, (d) => d.values.length * 4);
  private readonly fetchSoon = debounce(this.ctx.view, () => this.fetch(), 120);

  constructor(private readonly ctx: Ctx) {
    const view = ctx.view;
    this.el.dataset.state = "idle";
    this.nav.append(this.earlier, this.windowLabel, this.later);
    this.canvas.setAttribute("aria-hidden", "true");
    this.body.append(this.left, this.canvas, this.right);
    this.el.append(this.title, this.chips, this.errorBox, this.nav, this.body, this.info);
    view.listen(this.body, "wheel", (e) => this.onWheel(e)); // not passive: on an element, not the document
    view.listen(this.body, "pointerover", (e) => this.onOver(e));
    view.listen(this.body, "pointerleave", () => {
      this.hover = null;
      this.drawLines();
    });
    view.listen(this.body, "click", (e) => {
      const h = this.rowOf(e);
      if (h && h.index !== ctx.selectedToken()) view.set({ selected_token: h.index });
    });
    view.listen(this.chips, "click", (e) => {
      const chip = (e.target as HTMLElement).closest<HTMLElement>('[data-testid="head-chip"]');
      if (chip) this.toggleHead(Number(chip.dataset.head));
    });
  }

  // -- what to show -----------------------------------------------------------------------------
  /** The part of the request key that does not depend on the window. */
  private what(): (Drawn & { what: string }) | { error: string } | { idle: string } {
    const d = this.ctx.drawn();
    if ("pick" in d) {
      return d.pick === "layer"
        ? { idle: "Pick a layer and head: click a thumbnail in the overview, or use the layer and head menus." }
        : { idle: "Pick a head: click a chip above or a thumbnail in the overview." };
    }
    return "error" in d ? d : { ...d, what: `${this.ctx.version}:${d.layer}:${d.aggregate || d.heads.join(",")}` };
  }

  update(): void {
    const ctx = this.ctx;
    const T = ctx.T;
    this.renderChips();
    const selected = ctx.selectedToken();
    if (selected !== this.lastSelected || !this.span || this.span.end > T || this.span.end - this.span.start !== Math.min(T, ROWS)) {
      this.span = T > 0 ? followSpan(this.span, T, ROWS, selected) : null;
      this.lastSelected = selected;
    }
    this.renderColumns();
    const w = this.what();
    if ("idle" in w || "error" in w) {
      this.wantKey = "";
      this.fetchSoon.cancel();
      ctx.view.client.cancel("headview");
      this.title.textContent = "Head view";
      this.setView("error" in w ? "error" : "idle", "error" in w ? w.error : null, "idle" in w ? w.idle : "");
      this.drawLines();
      return;
    }
    const layerText = w.aggregate === "mean" ? `mean of the heads of layer ${w.layer}` : w.aggregate === "rollout" ? `rollout up to layer ${w.layer}` : `layer ${w.layer} · ${w.heads.map((h) => `H${h}`).join(", ")}`;
    this.title.textContent = `Head view: ${layerText} — queries (left) look at keys (right)`;
    this.el.dataset.layer = String(w.layer);
    this.el.dataset.heads = w.aggregate ? "" : w.heads.join(",");
    this.el.dataset.aggregate = w.aggregate;
    const key = this.windowKey(w.what);
    if (key !== this.wantKey) {
      this.wantKey = key;
      this.failed = null; // asked anew: a failure is retried
      const hit = this.cache.get(key);
      if (hit) this.data = hit;
      else this.fetch();
    }
    if (this.data && this.data.key === key) {
      this.setView("ready", null);
    } else if (this.failed?.key === key) {
      this.setView("error", this.failed.message);
    } else this.setView("loading", null);
    this.drawLines();
  }

  private windowKey(what: string): string {
    const s = this.span;
    return s ? `${what}|${s.start}:${s.end}` : `${what}|none`;
  }

  private setView(state: PanelState, error: string | null, hint = ""): void {
    this.el.dataset.state = state;
    showError(this.errorBox, error);
    const s = this.span;
    this.el.dataset.q0 = String(s?.start ?? 0);
    this.el.dataset.q1 = String(s?.end ?? 0);
    if (hint) this.info.textContent = hint;
    else if (!this.hover) this.info.textContent = this.defaultInfo();
  }

  private defaultInfo(): string {
    return "Hover a token on the left: where it looks; on the right: who looks at it. Click a token to select it. Scroll over the columns to move the window.";
  }

  private fetch(): void {
    const w = this.what();
    const s = this.span;
    if (!("what" in w) || !s || s.end <= s.start) return;
    const key = this.windowKey(w.what);
    if (key !== this.wantKey) return;
    const ctx = this.ctx;
    const win = { q0: s.start, q1: s.end, k0: s.start, k1: s.end };
    const request = w.aggregate
      ? ctx.view.client.request("headview", "pattern", { ...w.params, ...win, size: Math.max(s.end - s.start, 1) })
      : ctx.view.client.request("headview", "heads", { layer: w.layer, heads: w.heads, ...win });
    request.then(
      (r) => {
        if (r === null) return;
        let data: WindowData;
        try {
          data = windowDataOf(r.arrays, w.aggregate ? "pattern" : "patterns", w.what, key, w.heads, win);
        } catch (e) {
          this.fail(key, errorMessage(e));
          return;
        }
        this.cache.set(key, data);
        if (key === this.wantKey) {
          this.data = data;
          this.update();
        }
      },
      (e: unknown) => this.fail(key, errorMessage(e)),
    );
  }

  private fail(key: string, message: string): void {
    this.failed = { key, message };
    if (key === this.wantKey) this.update();
  }

  retry(): void {
    this.failed = null;
    this.wantKey = "";
  }

  reset(): void {
    this.cache.clear();
    this.data = null;
    this.failed = null;
    this.wantKey = "";
    this.domKey = "";
    this.span = null;
    this.lastSelected = -2;
  }

  // -- the window --------------------------------------------------------------------------------------
  private scrollBy(rows: number): void {
    const T = this.ctx.T;
    if (!this.span || T === 0) return;
    const next = shiftSpan(this.span, T, rows);
    if (next.start === this.span.start) return;
    this.span = next;
    this.hover = null;
    this.renderColumns();
    const w = this.what();
    if ("what" in w) {
      this.wantKey = this.windowKey(w.what);
      this.failed = null;
      const hit = this.cache.get(this.wantKey);
      if (hit) this.data = hit;
      else this.fetchSoon();
      this.setView(hit ? "ready" : "loading", null);
    }
    this.drawLines();
  }

  private onWheel(e: WheelEvent): void {
    const s = this.span;
    if (!s || e.deltaY === 0) return;
    const down = e.deltaY > 0;
    if ((down && s.end >= this.ctx.T) || (!down && s.start <= 0)) return; // let the page scroll
    e.preventDefault();
    const lines = e.deltaMode === 1 ? Math.abs(e.deltaY) : Math.abs(e.deltaY) / ROW_H;
    this.scrollBy((down ? 1 : -1) * Math.max(1, Math.round(lines)));
  }

  // -- DOM ---------------------------------------------------------------------------------------------
  private renderChips(): void {
    const ctx = this.ctx;
    const n = ctx.nHeads();
    const aggregate = ctx.aggregate();
    const active = new Set(aggregate ? [] : ctx.heads());
    const key = `${n}:${aggregate}:${[...active].join(",")}`;
    if (this.chips.dataset.key === key) return;
    this.chips.dataset.key = key;
    const items: Node[] = [el("span", "lw-hint", "Heads: ")];
    for (let h = 0; h < n; h++) {
      const on = active.has(h);
      const b = tagged(el("button", "lw-chip lw-head-chip", `H${h}`), "head-chip");
      b.type = "button";
      b.dataset.head = String(h);
      b.setAttribute("aria-pressed", String(on));
      if (on) {
        b.style.borderColor = headColor(h);
        b.style.boxShadow = `inset 0 -3px 0 ${headColor(h)}`;
      }
      b.title = on ? `Hide head ${h}` : `Draw head ${h} too`;
      items.push(b);
    }
    if (aggregate) items.push(el("span", "lw-hint", ` (showing the ${aggregate === "mean" ? "mean of heads" : "rollout"}: pick a head to go back)`));
    this.chips.replaceChildren(...items);
  }

  private toggleHead(h: number): void {
    const ctx = this.ctx;
    if (ctx.aggregate()) {
      ctx.view.set({ aggregate: "", heads: [h], selected_head: h });
      return;
    }
    const current = ctx.heads();
    if (current.includes(h)) {
      const next = current.filter((x) => x !== h);
      if (next.length === 0) return; // at least one head stays
      const changes: { heads: number[]; selected_head?: number } = { heads: next };
      if (ctx.selectedHead() === h) changes.selected_head = next[0]!;
      ctx.view.set(changes);
    } else {
      ctx.view.set({ heads: [...current, h].sort((a, b) => a - b), selected_head: h });
    }
  }

  private renderColumns(): void {
    const tokens = this.ctx.view.tokens();
    const s = this.span;
    const selected = this.ctx.selectedToken();
    const key = s ? `${this.ctx.version}:${s.start}:${s.end}` : "";
    if (key !== this.domKey) {
      this.domKey = key;
      this.leftRows = [];
      this.rightRows = [];
      const ids = this.ctx.view.list<number>("token_ids");
      const offsets = this.ctx.view.list<[number, number]>("offsets");
      const bytes = this.ctx.view.list<string>("token_bytes");
      const chat = textStripOptions(this.ctx.view.model).chat;
      const labels = chat ? chatLabels(chat) : [];
      if (s) {
        for (let i = s.start; i < s.end; i++) {
          const title = tokenTitle(i, {
            id: ids[i],
            offset: offsets[i],
            bytes: bytes[i],
            text: String(tokens[i] ?? ""),
            chat: labels[i],
          });
          for (const side of ["q", "k"] as const) {
            const row = tagged(el("div", "lw-hv-tok"), side === "q" ? "hv-query" : "hv-key");
            Object.assign(row.dataset, { index: String(i), side });
            setTitle(row, title);
            if (chat?.template[i]) row.classList.add("lw-template");
            const text = el("span", "lw-hv-text");
            appendVisibleToken(text, String(tokens[i] ?? ""));
            const idx = el("span", "lw-hv-idx", String(i));
            if (side === "q") row.append(text, idx);
            else row.append(idx, text);
            (side === "q" ? this.leftRows : this.rightRows).push(row);
          }
        }
      }
      this.left.replaceChildren(...this.leftRows);
      this.right.replaceChildren(...this.rightRows);
      sizeCanvas(this.canvas, LINES_W, Math.max(1, (s ? s.end - s.start : 0) * ROW_H), this.ctx.dpr());
      this.windowLabel.textContent = s ? spanLabel(s.start, s.end, this.ctx.T) : "";
      this.earlier.disabled = !s || s.start <= 0;
      this.later.disabled = !s || s.end >= this.ctx.T;
      this.nav.hidden = !s || s.end - s.start >= this.ctx.T;
    }
    const start = s?.start ?? 0;
    for (const rows of [this.leftRows, this.rightRows]) {
      rows.forEach((row, r) => row.classList.toggle("lw-selected", r + start === selected));
    }
  }

  // -- lines ---------------------------------------------------------------------------------------------
  /** The data to draw for the current window: the current answer, or the last one of the same heads. */
  private drawable(): WindowData | null {
    const w = this.what();
    if (!("what" in w) || !this.data || this.data.what !== w.what) return null;
    return this.data;
  }

  private drawLines(): void {
    const c = this.canvas.getContext("2d");
    if (!c) return;
    const dpr = this.ctx.dpr();
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, this.canvas.width, this.canvas.height);
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    const data = this.drawable();
    this.tint(data);
    const s = this.span;
    if (!data || !s) return;
    drawWindowLines(c, data, s, this.focus(), this.ctx.colors().accent, LINES_W);
  }

  /** Which lines stand out: the hovered token's, else the selected token's (by direction), else all. */
  private focus(): { side: "q" | "k"; index: number; dim: boolean } | null {
    if (this.hover) return { ...this.hover, dim: false };
    const sel = this.ctx.selectedToken();
    const s = this.span;
    if (sel < 0 || !s || sel < s.start || sel >= s.end) return null;
    return { side: this.ctx.direction() === "from" ? "q" : "k", index: sel, dim: true };
  }

  /** Tint the other column's tokens by their weight to/from the hovered token; say the top links. */
  private tint(data: WindowData | null): void {
    const s = this.span;
    for (const row of [...this.leftRows, ...this.rightRows]) row.style.backgroundColor = "";
    const h = this.hover;
    if (!h || !data || !s) {
      if (!h) this.info.textContent = this.el.dataset.state === "idle" ? this.info.textContent : this.defaultInfo();
      return;
    }
    const tokens = this.ctx.view.tokens();
    const other = h.side === "q" ? this.rightRows : this.leftRows;
    const links: { pos: number; head: number; w: number }[] = [];
    let inside = 0;
    for (let j = s.start; j < s.end; j++) {
      let best = 0;
      for (let hi = 0; hi < data.heads.length; hi++) {
        const w = h.side === "q" ? weightOf(data, hi, h.index, j) : weightOf(data, hi, j, h.index);
        if (w > best) best = w;
        if (w > 0) links.push({ pos: j, head: data.heads[hi]!, w });
        if (hi === 0) inside += Math.max(0, w);
      }
      const row = other[j - s.start];
      if (row && best >= MIN_WEIGHT) row.style.backgroundColor = `rgba(25, 118, 210, ${Math.min(0.8, 0.08 + 0.72 * best).toFixed(3)})`;
    }
    links.sort((a, b) => b.w - a.w);
    const who = tokenLabel(h.index, tokens[h.index]);
    const top = links
      .slice(0, 3)
      .map((l) => `${tokenLabel(l.pos, tokens[l.pos], 12)} ${sig(l.w, 3)}${data.heads.length > 1 ? ` (H${l.head})` : ""}`);
    let text = h.side === "q" ? `${who} looks at ${top.join(", ") || "nothing in this window"}` : `${who} is looked at by ${top.join(", ") || "nothing in this window"}`;
    if (h.side === "q" && data.heads.length === 1 && s.end - s.start < this.ctx.T) {
      text += ` · weight outside this window: ${sig(Math.max(0, 1 - inside), 3)}`;
    }
    this.info.textContent = text;
  }

  private rowOf(e: Event): Hover {
    const target = (e.target as Element | null)?.closest?.(".lw-hv-tok") as HTMLElement | null;
    if (!target) return null;
    const index = Number(target.dataset.index);
    const side = target.dataset.side === "k" ? "k" : "q";
    return Number.isInteger(index) ? { side, index } : null;
  }

  private onOver(e: PointerEvent): void {
    const h = this.rowOf(e);
    if (h?.side === this.hover?.side && h?.index === this.hover?.index) return;
    this.hover = h;
    this.drawLines();
  }

  // -- export --------------------------------------------------------------------------------------------
  snapshot(): HTMLCanvasElement {
    const dpr = this.ctx.dpr();
    const s = this.span;
    const tokens = this.ctx.view.tokens();
    const n = s ? s.end - s.start : 0;
    const colW = 170;
    const titleH = 26;
    const width = colW * 2 + LINES_W;
    const height = titleH + Math.max(1, n) * ROW_H + 8;
    const { fg } = this.ctx.colors();
    const { canvas: out, c } = exportCanvas(width, height, dpr, fg);
    c.fillStyle = fg;
    c.font = "12px system-ui, sans-serif";
    c.textBaseline = "middle";
    c.textAlign = "left";
    c.fillText(this.title.textContent ?? "", 4, titleH / 2, width - 8);
    c.font = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    const sel = this.ctx.selectedToken();
    for (let r = 0; r < n; r++) {
      const i = s!.start + r;
      let text = visibleText(String(tokens[i] ?? ""));
      if (text.length > 18) text = text.slice(0, 17) + "…";
      const y = titleH + r * ROW_H + ROW_H / 2;
      c.globalAlpha = i === sel ? 1 : 0.85;
      c.textAlign = "right";
      c.fillText(text, colW - 8, y);
      c.textAlign = "left";
      c.fillText(text, colW + LINES_W + 8, y);
    }
    c.globalAlpha = 1;
    c.drawImage(this.canvas, colW, titleH, LINES_W, n * ROW_H);
    return out;
  }
}

/** The weight of (q, k) in slice hi of a window, 0 outside it. */
export function weightOf(d: WindowData, hi: number, q: number, k: number): number {
  const r = cellIndex(q, d.q0, d.q1, d.rows);
  const c = cellIndex(k, d.k0, d.k1, d.cols);
  if (r < 0 || c < 0) return 0;
  return d.values[(hi * d.rows + r) * d.cols + c] ?? 0;
}

/** Check an answer's array against the window asked for. */
function windowDataOf(
  arrays: Record<string, DecodedArray>,
  name: string,
  what: string,
  key: string,
  heads: number[],
  win: { q0: number; q1: number; k0: number; k1: number },
): WindowData {
  const values = floats(arrays, name);
  const given = arrays[name]!.shape;
  const shape = given.length === 2 ? [1, ...given] : given;
  const [n, rows, cols] = shape;
  if (shape.length !== 3 || n !== heads.length || !rows || !cols) {
    throw new Error(`"${name}" has shape [${given.join(", ")}], expected [${heads.length}, rows, cols]`);
  }
  return { what, key, heads, ...win, rows, cols, values };
}

/**
 * Draw the lines of a window: for each slice and each (query, key) in the span with weight ≥
 * MIN_WEIGHT, a line from the query's row (left edge) to the key's row (right edge), its opacity and
 * width growing with the weight. Lines are batched by weight bucket: one stroke per head and bucket.
 */
export function drawWindowLines(
  c: CanvasRenderingContext2D,
  data: WindowData,
  span: Span,
  focus: { side: "q" | "k"; index: number; dim: boolean } | null,
  aggregateColor: string,
  width: number,
): void {
  const n = span.end - span.start;
  c.lineCap = "round";
  for (let hi = 0; hi < data.heads.length; hi++) {
    const head = data.heads[hi]!;
    const color = head < 0 ? aggregateColor : headColor(head);
    const strong: Path2D[] = Array.from({ length: BUCKETS + 1 }, () => new Path2D());
    const faint: Path2D[] = Array.from({ length: BUCKETS + 1 }, () => new Path2D());
    const used = new Uint8Array(2 * (BUCKETS + 1));
    for (let r = 0; r < n; r++) {
      const q = span.start + r;
      for (let cI = 0; cI < n; cI++) {
        const k = span.start + cI;
        const w = weightOf(data, hi, q, k);
        if (!(w >= MIN_WEIGHT)) continue;
        const match = !focus || (focus.side === "q" ? q === focus.index : k === focus.index);
        if (!match && !focus!.dim) continue;
        const b = Math.min(BUCKETS, Math.max(1, Math.ceil(w * BUCKETS)));
        const path = match ? strong[b]! : faint[b]!;
        path.moveTo(0, (r + 0.5) * ROW_H);
        path.lineTo(width, (cI + 0.5) * ROW_H);
        used[(match ? 0 : BUCKETS + 1) + b] = 1;
      }
    }
    c.strokeStyle = color;
    for (let b = 1; b <= BUCKETS; b++) {
      const t = b / BUCKETS;
      if (used[b]) {
        c.globalAlpha = 0.15 + 0.8 * t;
        c.lineWidth = 0.6 + 2.4 * t;
        c.stroke(strong[b]!);
      }
      if (used[BUCKETS + 1 + b]) {
        c.globalAlpha = 0.04 + 0.12 * t;
        c.lineWidth = 0.5 + 1.5 * t;
        c.stroke(faint[b]!);
      }
    }
  }
  c.globalAlpha = 1;
}
