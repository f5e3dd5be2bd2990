// What every panel of the attention view reads: the scaffold's View (traits, request client, root,
// clean-up) and the attention traits validated: an index out of range reads as -1, and is never sent.

import { tagged } from "../shared/dom";
import { el, setText } from "../shared/tokens";
import type { View } from "../shared/view";
import { inRange, rangeMessage } from "./format";

export type PanelName = "overview" | "head" | "matrix";
export type PanelState = "idle" | "loading" | "ready" | "error";
/** A choice the kernel offers (the traits panels, directions, aggregates, sort_orders). */
export type Choice = [value: string, label: string, description: string];

/** What the head and matrix views draw: a layer's heads, or an aggregate (heads [-1], head -1). */
export interface Drawn {
  layer: number;
  aggregate: "" | "mean" | "rollout";
  heads: number[];
  /** The one head the matrix shows. */
  head: number;
  /** What a request names: layer, and head or aggregate. */
  params: { layer: number; head?: number; aggregate?: string };
}

export class Ctx {
  /** Bumped when the text (tokens) changes: every cache key starts with it. */
  version = 0;

  constructor(readonly view: View) {}

  get T(): number {
    return this.view.tokens().length;
  }
  nLayers(): number {
    return Math.max(0, this.view.int("n_layers", 0));
  }
  nHeads(): number {
    return Math.max(0, this.view.int("n_heads", 0));
  }
  selectedToken(): number {
    const i = this.view.selected();
    return inRange(i, this.T) ? i : -1;
  }
  selectedLayer(): number {
    const i = this.view.int("selected_layer");
    return inRange(i, this.nLayers()) ? i : -1;
  }
  selectedHead(): number {
    const i = this.view.int("selected_head");
    return inRange(i, this.nHeads()) ? i : -1;
  }
  panel(): PanelName {
    const p = this.view.get("panel");
    return p === "head" || p === "matrix" ? p : "overview";
  }
  direction(): "from" | "to" {
    return this.view.get("direction") === "to" ? "to" : "from";
  }
  aggregate(): "" | "mean" | "rollout" {
    const a = this.view.get("aggregate");
    return a === "mean" || a === "rollout" ? a : "";
  }
  /**
   * The heads the head view draws: the `heads` trait (valid ones) when it holds the selected head,
   * else the selected head alone, so that a head selected elsewhere (Python, an Explorer) is shown.
   */
  heads(): number[] {
    const n = this.nHeads();
    const list = [...new Set(this.view.list("heads").filter((h): h is number => inRange(h, n)))].sort((a, b) => a - b);
    const h = this.selectedHead();
    return h < 0 || list.includes(h) ? list : [h];
  }
  sortBy(): string {
    const s = this.view.get("sort_by");
    return typeof s === "string" ? s : "";
  }
  thumbSize(): number {
    return this.view.int("thumb_size", 32);
  }
  rolloutLimit(): number {
    return this.view.int("rollout_limit", 1024);
  }
  /** Whether the kernel computes rollout for this text (T ≤ rollout_limit). */
  rolloutAvailable(): boolean {
    return this.T > 0 && this.T <= this.rolloutLimit();
  }

  /** What the head and matrix views draw; else why not, or which of layer and head is still to pick. */
  drawn(): Drawn | { error: string } | { pick: "layer" | "head" } {
    const n = this.nLayers();
    const rawLayer = this.view.int("selected_layer");
    if (rawLayer >= 0 && !inRange(rawLayer, n)) return { error: rangeMessage("layer", rawLayer, n) };
    const layer = this.selectedLayer();
    if (layer < 0 || this.T === 0) return { pick: "layer" };
    const aggregate = this.aggregate();
    if (aggregate === "rollout" && !this.rolloutAvailable()) {
      return { error: `rollout is limited to ${this.rolloutLimit()} tokens (rollout_limit); this text has ${this.T}` };
    }
    if (aggregate) return { layer, aggregate, heads: [-1], head: -1, params: { layer, aggregate } };
    const heads = this.heads();
    const head = this.selectedHead() >= 0 ? this.selectedHead() : heads[0];
    if (head === undefined) {
      const raw = this.view.int("selected_head");
      return raw >= 0 ? { error: rangeMessage("head", raw, this.nHeads()) } : { pick: "head" };
    }
    return { layer, aggregate, heads, head, params: { layer, head } };
  }

  dpr(): number {
    const r = typeof window !== "undefined" ? window.devicePixelRatio : 1;
    return Number.isFinite(r) && r > 0 ? Math.min(4, r) : 1;
  }

  /** Theme colours for canvas text: the root's foreground and the accent. */
  colors(): { fg: string; accent: string } {
    const style = getComputedStyle(this.view.root);
    const accent = style.getPropertyValue("--lw-accent").trim();
    return { fg: style.color || "#222", accent: accent || "#1976d2" };
  }
}

/** A panel of the view: its element, how it follows the traits, and how it draws for export. */
export interface Panel {
  readonly el: HTMLElement;
  /** Bring the panel in line with the traits (called when shown and after any change). */
  update(): void;
  /** The text changed: drop everything fetched. */
  reset(): void;
  /** Ask again for what failed (the panel was shown again, or its token clicked again). */
  retry(): void;
  /** The panel as one canvas, for Export PNG and the kernel's snapshots. */
  snapshot(): HTMLCanvasElement;
}

/** A button with a data-testid, clicked through `view` (removed with it). */
export function button(view: View, className: string, text: string, testid: string, onClick: (e: MouseEvent) => void): HTMLButtonElement {
  const b = tagged(el("button", className, text), testid);
  b.type = "button";
  view.listen(b, "click", onClick);
  return b;
}

/** A panel's error box: hidden until showError gives it a message. */
export function errorSlot(testid: string): HTMLElement {
  const box = tagged(el("div", "lw-error"), testid);
  box.hidden = true;
  return box;
}

/** Show `message` in an error box, or hide it (null). */
export function showError(box: HTMLElement, message: string | null): void {
  box.hidden = message === null;
  setText(box, message ?? "");
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A canvas sized to `width × height` CSS pixels at the device pixel ratio, context scaled to CSS px. */
export function sizeCanvas(canvas: HTMLCanvasElement, width: number, height: number, dpr: number): CanvasRenderingContext2D {
  const w = Math.max(1, Math.round(width * dpr));
  const h = Math.max(1, Math.round(height * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this browser gives no 2D canvas");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Debounce: run `fn` `ms` after the last call; cancelled when the view is removed. */
export function debounce(view: View, fn: () => void, ms: number): { (): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const run = (): void => {
    cancel();
    timer = setTimeout(() => {
      timer = undefined;
      fn();
    }, ms);
  };
  view.onDispose(cancel);
  return Object.assign(run, { cancel });
}

/** A canvas for export: `width × height` CSS px on a background the theme's text colour `fg` reads on. */
export function exportCanvas(width: number, height: number, dpr: number, fg: string): { canvas: HTMLCanvasElement; c: CanvasRenderingContext2D } {
  const canvas = document.createElement("canvas");
  const c = sizeCanvas(canvas, width, height, dpr);
  c.fillStyle = exportBackground(fg);
  c.fillRect(0, 0, width, height);
  return { canvas, c };
}

/** A background for exported PNGs on which the theme's text colour `fg` reads: white, or near-black. */
function exportBackground(fg: string): string {
  const m = /rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/.exec(fg);
  if (!m) return "#ffffff";
  const [r, g, b] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  return luminance > 0.55 ? "#1e1e1e" : "#ffffff";
}
