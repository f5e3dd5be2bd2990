// The front-end twin of ViewBase (llmasos_widgets/views/base.py): every view is a *panel* defined once with
// defineView() and mounted either alone (anywidget's render) or inside a host (the Explorer), on any
// model that speaks anywidget's model interface: the kernel's, an exported file's ReplayModel, or an
// Explorer panel's PanelModel. The scaffold owns the root element, the header, the token strip and
// its keyboard, the request client, event registration and clean-up, and the in-place error box.
// A view's CSS is a real file (js/<view>/style.css, every rule prefixed with .lw-<view>) that the
// build ships as static/<view>.css and anywidget loads through the widget's _css.

import "./base.css";
import { Client } from "./client";
import { el, renderTokenStrip, setSelected, TEXT_TRAITS, textStripOptions, tokenKeyTarget, visibleText } from "./tokens";

/** The part of anywidget's model a view uses. */
export interface ViewModel {
  get(key: string): any;
  set(key: string, value: unknown): void;
  save_changes(): void;
  on(event: string, callback: (...args: any[]) => void): void;
  off(event?: string | null, callback?: ((...args: any[]) => void) | null): void;
  send(content: any, callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

/**
 * Above this many tokens a strip becomes a scrolling box of fixed height (9em, about six lines): the Explorer keeps
 * its strip in view as the reader scrolls, and a 300-token strip was a quarter of a laptop's screen.
 */
const STRIP_SCROLL_AT = 120;

/** What a mounted view works with. Everything registered through it is undone when it is removed. */
export class View {
  readonly client: Client;
  readonly header: HTMLElement;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    readonly model: ViewModel,
    readonly root: HTMLElement,
    readonly hosted: boolean,
  ) {
    this.client = new Client(model);
    this.cleanups.push(() => this.client.dispose());
    this.header = el("div", "lw-header");
    this.header.dataset.testid = "header";
  }

  get(key: string): any {
    return this.model.get(key);
  }

  /** An integer trait, or `fallback` when it is unset or not an integer. */
  int(key: string, fallback = -1): number {
    const v = this.model.get(key);
    return typeof v === "number" && Number.isInteger(v) ? v : fallback;
  }

  /** A list trait (an empty list when unset). */
  list<T = unknown>(key: string): T[] {
    const v = this.model.get(key);
    return Array.isArray(v) ? (v as T[]) : [];
  }

  tokens(): string[] {
    return this.list<string>("tokens");
  }

  selected(): number {
    return this.int("selected_token");
  }

  /** Set traits and send them to the kernel in one sync. */
  set(changes: Record<string, unknown>): void {
    for (const [key, value] of Object.entries(changes)) this.model.set(key, value);
    this.model.save_changes();
  }

  /** Call `fn` on each of the model's change events named (trait names) until the view is removed. */
  on(traits: string | string[], fn: () => void): void {
    for (const t of Array.isArray(traits) ? traits : [traits]) {
      const event = `change:${t}`;
      this.model.on(event, fn);
      this.cleanups.push(() => this.model.off(event, fn));
    }
  }

  /** A DOM listener removed with the view. */
  listen<K extends keyof HTMLElementEventMap>(target: HTMLElement, type: K, fn: (e: HTMLElementEventMap[K]) => void): void {
    target.addEventListener(type, fn);
    this.cleanups.push(() => target.removeEventListener(type, fn));
  }

  onDispose(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Fill the header: the model's name first when the view stands alone (a host shows it once). Strings are shown by `visibleText`. */
  setHeader(...parts: (Node | string)[]): void {
    const name = this.get("model_name");
    this.header.replaceChildren();
    if (name && !this.hosted) this.header.append(el("span", "lw-model", String(name)), " · ");
    this.header.append(...parts.map((p) => (typeof p === "string" ? visibleText(p, "text") : p)));
  }

  /** A token strip bound to `selected_token` (click, ←/→, Home/End, Escape), redrawn when the text changes. */
  strip(label: string, decorate?: (spans: HTMLSpanElement[]) => void): TokenStrip {
    return new TokenStrip(this, label, decorate);
  }

  dispose(): void {
    for (const fn of this.cleanups.splice(0).reverse()) fn();
  }
}

/** An error in place of what could not be shown; the rest of the view keeps working. */
export function errorBox(message: unknown, testid = "error"): HTMLElement {
  const box = el("div", "lw-error", message instanceof Error ? message.message : String(message));
  box.dataset.testid = testid;
  return box;
}

export class TokenStrip {
  readonly el = el("div", "lw-strip");
  spans: HTMLSpanElement[] = [];

  constructor(
    private readonly view: View,
    label: string,
    private readonly decorate?: (spans: HTMLSpanElement[]) => void,
  ) {
    this.el.dataset.testid = "token-strip";
    this.el.tabIndex = 0;
    this.el.setAttribute("aria-label", `Tokens: ${label}`);
    view.listen(this.el, "keydown", (e) => this.onKey(e));
    view.on([...TEXT_TRAITS], () => this.render());
    view.on("selected_token", () => this.showSelected());
    this.render();
  }

  render(): void {
    const tokens = this.view.tokens();
    this.el.classList.toggle("lw-scroll", tokens.length > STRIP_SCROLL_AT);
    if (tokens.length === 0) {
      this.el.replaceChildren(el("span", "lw-empty", "(no tokens)"));
      this.spans = [];
      return;
    }
    this.spans = renderTokenStrip(this.el, tokens, {
      ...textStripOptions(this.view.model),
      selected: this.view.selected(),
      onSelect: (i) => this.view.set({ selected_token: i }),
    });
    this.decorate?.(this.spans);
  }

  private showSelected(): void {
    const i = this.view.selected();
    setSelected(this.spans, i);
    this.spans[i]?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  private onKey(event: KeyboardEvent): void {
    const to = tokenKeyTarget(event.key, this.view.selected(), this.spans.length);
    if (to === null) return;
    event.preventDefault();
    event.stopPropagation();
    this.view.set({ selected_token: to });
  }
}

export interface ViewSpec {
  /** The view's name: its CSS class is lw-<name>, its bundle static/<name>.js. */
  name: string;
  /** A plain selection strip above the view when it stands alone (a host draws one for all). */
  selectionStrip?: string;
  /** Build the view into `view.root`; return a clean-up for anything not registered through `view`. */
  mount(view: View): void | (() => void);
}

export interface Mountable {
  name: string;
  /** Mount on a model into `el`; `hosted` inside a host that shows the model's name and token strip. */
  mount(model: ViewModel, el: HTMLElement, hosted?: boolean): () => void;
  /** anywidget's entry point. */
  render(props: { model: ViewModel; el: HTMLElement }): () => void;
}

export function defineView(spec: ViewSpec): Mountable {
  function mount(model: ViewModel, root: HTMLElement, hosted = false): () => void {
    root.classList.add(`lw-${spec.name}`);
    if (!hosted) root.classList.add("lw-root");
    // JupyterLab leaves keys pressed inside the view to it (arrows, Escape).
    root.setAttribute("data-lm-suppress-shortcuts", "true");
    const view = new View(model, root, hosted);
    root.append(view.header);
    if (spec.selectionStrip && !hosted) root.append(view.strip(spec.selectionStrip).el);
    try {
      const cleanup = spec.mount(view);
      if (cleanup) view.onDispose(cleanup);
    } catch (e) {
      root.append(errorBox(e));
    }
    return () => view.dispose();
  }
  return { name: spec.name, mount, render: ({ model, el: root }) => mount(model, root) };
}
