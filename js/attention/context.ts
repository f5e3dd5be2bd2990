// What every panel of the attention view reads: the synced traits (validated: an index out of range
// reads as -1, and is never sent), the request client, and a few drawing helpers.

import type { AnyModel } from "@anywidget/types";
import type { Client } from "../shared/client";
import type { TokenTraits } from "../shared/tokens";
import { inRange } from "./format";

/** The synced traits of AttentionView (same names as in Python). */
export interface AttentionTraits extends TokenTraits {
  selected_layer: number;
  selected_head: number;
  n_layers: number;
  n_heads: number;
  panel: string;
  direction: string;
  aggregate: string;
  heads: number[];
  sort_by: string;
  thumb_size: number;
  rollout_limit: number;
}

export type PanelName = "overview" | "head" | "matrix";
export type Direction = "from" | "to";
export type Aggregate = "" | "mean" | "rollout";
export type PanelState = "idle" | "loading" | "ready" | "error";

export const PANELS: readonly PanelName[] = ["overview", "head", "matrix"];

export class Ctx {
  /** Bumped when the text (tokens) changes: every cache key starts with it. */
  version = 0;

  constructor(
    readonly model: AnyModel<AttentionTraits>,
    readonly client: Client,
    readonly root: HTMLElement,
  ) {}

  private int(name: keyof AttentionTraits, fallback = -1): number {
    const v = this.model.get(name);
    return typeof v === "number" && Number.isInteger(v) ? v : fallback;
  }

  tokens(): string[] {
    const t = this.model.get("tokens");
    return Array.isArray(t) ? t : [];
  }
  get T(): number {
    return this.tokens().length;
  }
  nLayers(): number {
    return Math.max(0, this.int("n_layers", 0));
  }
  nHeads(): number {
    return Math.max(0, this.int("n_heads", 0));
  }
  /** The selection as set (maybe out of range), for messages. */
  raw(name: "selected_token" | "selected_layer" | "selected_head"): number {
    return this.int(name);
  }
  selectedToken(): number {
    const i = this.int("selected_token");
    return inRange(i, this.T) ? i : -1;
  }
  selectedLayer(): number {
    const i = this.int("selected_layer");
    return inRange(i, this.nLayers()) ? i : -1;
  }
  selectedHead(): number {
    const i = this.int("selected_head");
    return inRange(i, this.nHeads()) ? i : -1;
  }
  panel(): PanelName {
    const p = this.model.get("panel");
    return p === "head" || p === "matrix" ? p : "overview";
  }
  direction(): Direction {
    return this.model.get("direction") === "to" ? "to" : "from";
  }
  aggregate(): Aggregate {
    const a = this.model.get("aggregate");
    return a === "mean" || a === "rollout" ? a : "";
  }
  /** The heads the head view draws: the `heads` trait (valid ones), or [selected_head] when empty. */
  heads(): number[] {
    const n = this.nHeads();
    const raw = this.model.get("heads");
    const list = Array.isArray(raw) ? raw.filter((h): h is number => inRange(h, n)) : [];
    const unique = [...new Set(list)].sort((a, b) => a - b);
    if (unique.length) return unique;
    const h = this.selectedHead();
    return h >= 0 ? [h] : [];
  }
  sortBy(): string {
    const s = this.model.get("sort_by");
    return typeof s === "string" ? s : "";
  }
  thumbSize(): number {
    return this.int("thumb_size", 32);
  }
  rolloutLimit(): number {
    return this.int("rollout_limit", 1024);
  }
  /** Whether the kernel computes rollout for this text (T ≤ rollout_limit). */
  rolloutAvailable(): boolean {
    return this.T > 0 && this.T <= this.rolloutLimit();
  }

  /** Set traits from the page and sync them once. */
  set(changes: Partial<AttentionTraits>): void {
    for (const [k, v] of Object.entries(changes) as [keyof AttentionTraits, never][]) this.model.set(k, v);
    this.model.save_changes();
  }

  dpr(): number {
    const r = typeof window !== "undefined" ? window.devicePixelRatio : 1;
    return Number.isFinite(r) && r > 0 ? Math.min(4, r) : 1;
  }

  /** Theme colours for canvas text: the root's foreground and the accent. */
  colors(): { fg: string; accent: string } {
    const style = getComputedStyle(this.root);
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
  dispose(): void;
}

/** Set the `data-state` of a panel element. */
export function setState(el: HTMLElement, state: PanelState): void {
  el.dataset.state = state;
}

/** The error box of a panel: shown with the message, or hidden. */
export function showError(box: HTMLElement, message: string | null): void {
  box.hidden = message === null;
  box.textContent = message ?? "";
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

/** Debounce: run `fn` `ms` after the last call. */
export function debounce(fn: () => void, ms: number): { (): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      fn();
    }, ms);
  };
  run.cancel = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return run;
}

/** A background for exported PNGs on which the theme's text colour `fg` reads: white, or near-black. */
export function exportBackground(fg: string): string {
  const m = /rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/.exec(fg);
  if (!m) return "#ffffff";
  const [r, g, b] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  return luminance > 0.55 ? "#1e1e1e" : "#ffffff";
}
