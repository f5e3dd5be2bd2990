// Explorer: one token strip and every view of the text as a panel, linked on one selection. A click
// sets the Explorer's selected_token (or layer, head) in the page, and every open panel redraws from
// it at once. The panels' requests pass through one Hub (store.ts): answered from the page's cache
// when it holds them, else sent as one message per click in on-screen order. A folded panel, or one
// not yet scrolled into view, is not mounted and asks for nothing.

// Every view folder's front-end by name (build.mjs makes this module): a panel is the view of its name.
import VIEWS from "lw:views";
import { el } from "../shared/tokens";
import { defineView, type View } from "../shared/view";
import { PanelModel } from "./panel-model";
import { Hub } from "./store";
import "./style.css";

/** A panel this close to the visible part of the page counts as seen (mounted, and so fetching). */
const SEEN_MARGIN = "400px 0px";
/** From this width on (px) the panels sit in a grid of two columns; below it, in one. */
const WIDE_FROM = 880;

/**
 * Keep the shared strip at the top of what is visible of the Explorer as the page scrolls (a translation, so the
 * layout never moves): whichever element scrolls (the notebook, the page, VS Code's output), the strip stays
 * between the Explorer's top and its bottom.
 */
function keepInView(view: View): void {
  const strip = view.root.querySelector<HTMLElement>(":scope > .lw-strip");
  if (!strip) return;
  let frame = 0;
  let scroller: Element | null = null;
  const place = (): void => {
    frame = 0;
    strip.style.transform = "";
    const root = view.root.getBoundingClientRect();
    const top = scroller ? Math.max(0, scroller.getBoundingClientRect().top) : 0;
    const shift = Math.min(Math.max(0, top - strip.getBoundingClientRect().top), root.bottom - strip.offsetHeight - strip.getBoundingClientRect().top);
    if (shift > 0) strip.style.transform = `translateY(${shift}px)`;
    view.root.dataset.stripShift = String(Math.round(Math.max(0, shift)));
  };
  const onScroll = (e: Event): void => {
    const target = e.target;
    if (target instanceof Element && !target.contains(view.root)) return; // something else scrolled
    scroller = target instanceof Element ? target : null;
    if (!frame) frame = requestAnimationFrame(place);
  };
  document.addEventListener("scroll", onScroll, { capture: true, passive: true });
  // Panels mounting as they come into view change the Explorer's height: place the strip again.
  const sizes = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    if (!frame) frame = requestAnimationFrame(place);
  });
  sizes?.observe(view.root);
  view.onDispose(() => {
    document.removeEventListener("scroll", onScroll, { capture: true });
    sizes?.disconnect();
    cancelAnimationFrame(frame);
  });
}

function mount(view: View): void {
  const selection = el("div", "lw-selection");
  selection.dataset.testid = "selection";
  const notes = el("div", "lw-notes");
  const panels = el("div", "lw-panels");
  view.root.append(selection, notes, panels);
  const open = new Map<string, () => void>(); // mounted panels and how to remove them
  // A wide cell lays the panels out in two columns (each spans 1 or 2: `panel_spans`); a narrow one in one.
  const layout = (): void => {
    const wide = view.root.clientWidth >= WIDE_FROM;
    panels.classList.toggle("lw-wide", wide);
    view.root.dataset.layout = wide ? "grid" : "column";
  };
  if (typeof ResizeObserver !== "undefined") {
    const sizes = new ResizeObserver(layout);
    sizes.observe(view.root);
    view.onDispose(() => sizes.disconnect());
  }
  /** Move a panel to where another is (its order is the widget's state: Python keeps it). */
  const move = (name: string, to: number): void => {
    const order = view.list<string>("panels").filter((p) => p !== name);
    order.splice(Math.max(0, Math.min(order.length, to)), 0, name);
    view.set({ panels: order });
  };
  const spans = (): Record<string, number> => (view.get("panel_spans") ?? {}) as Record<string, number>;
  let dragged = "";
  const seen = new Set<string>(); // panels that have been in view: the others wait, unmounted
  /** The mounted panels in their order on screen. */
  const order = (): string[] =>
    Array.from(panels.querySelectorAll<HTMLElement>(":scope > section[data-panel]"))
      .map((s) => s.dataset.panel!)
      .filter((p) => open.has(p));
  const budget = Math.max(0, Number(view.get("cache_mb") ?? 64)) * 1e6;
  const hub = new Hub(view.model, order, budget, () => {
    const c = hub.counts;
    Object.assign(view.root.dataset, {
      cacheHits: String(c.hits),
      kernelBatches: String(c.batches),
      kernelRequests: String(c.requests),
      prefetched: String(c.stored),
      prefetchDone: String(c.prefetchDone),
    });
  });
  view.onDispose(() => hub.dispose());
  const observer =
    typeof IntersectionObserver === "undefined"
      ? null
      : new IntersectionObserver(
          (entries) => {
            let more = false;
            for (const e of entries) {
              const name = (e.target as HTMLElement).dataset.panel!;
              if (e.isIntersecting && !seen.has(name)) {
                seen.add(name);
                observer?.unobserve(e.target);
                more = true;
              }
            }
            if (more) renderPanels();
          },
          { rootMargin: SEEN_MARGIN },
        );
  view.onDispose(() => observer?.disconnect());

  function renderHeader(): void {
    const n = view.tokens().length;
    view.setHeader(`${n} token${n === 1 ? "" : "s"} · click a token, or use the arrow keys: every panel follows`);
  }

  function renderSelection(): void {
    const i = view.selected();
    const parts = [i >= 0 ? `token #${i}` : "no token selected"];
    const layer = view.int("selected_layer");
    const head = view.int("selected_head");
    if (layer >= 0) parts.push(`layer ${layer}`);
    if (head >= 0) parts.push(`head ${head}`);
    selection.textContent = parts.join(" · ");
  }

  /** A panel's title, from its Python registration (the `panel_titles` trait). */
  const title = (name: string): string => ((view.get("panel_titles") ?? {}) as Record<string, string>)[name] ?? name;

  function renderNotes(): void {
    const entries = Object.entries((view.get("panel_notes") ?? {}) as Record<string, string>);
    notes.replaceChildren(
      ...entries.map(([name, why]) => {
        const note = el("div", "lw-note", `${title(name)}: ${why}`);
        note.dataset.testid = `note-${name}`;
        return note;
      }),
    );
  }

  function close(name: string): void {
    open.get(name)?.();
    open.delete(name);
  }

  function renderPanels(): void {
    const shown: string[] = view.list<string>("panels").filter((p) => p in VIEWS);
    const collapsed = new Set(view.list<string>("collapsed"));
    const links = (view.get("panel_links") ?? {}) as Record<string, string[]>;
    for (const name of Array.from(open.keys())) if (!shown.includes(name) || collapsed.has(name)) close(name);
    const sections = shown.map((name) => {
      let section = panels.querySelector<HTMLElement>(`:scope > section[data-panel="${name}"]`);
      if (!section) {
        section = el("section", "lw-panel");
        section.dataset.panel = name;
        section.dataset.testid = `panel-${name}`;
        const toggle = el("button", "lw-panel-title", title(name));
        toggle.type = "button";
        toggle.dataset.testid = `toggle-${name}`;
        const cost = ((view.get("panel_costs") ?? {}) as Record<string, string>)[name];
        if (cost) {
          const note = el("span", "lw-panel-cost", ` · opening it computes ${cost}`);
          note.dataset.testid = `cost-${name}`;
          toggle.append(note);
        }
        toggle.addEventListener("click", () => {
          const now = new Set(view.list<string>("collapsed"));
          if (now.has(name)) now.delete(name);
          else now.add(name);
          view.set({ collapsed: shown.filter((p) => now.has(p)) });
        });
        // Arrange: ◀ ▶ move it (or drag its title onto another panel), ⇔ makes it span one or two columns.
        const tools = el("span", "lw-panel-tools");
        const tool = (label: string, testid: string, tip: string, act: () => void): HTMLButtonElement => {
          const b = el("button", "lw-panel-tool", label);
          b.type = "button";
          b.title = tip;
          b.dataset.testid = testid;
          b.addEventListener("click", act);
          return b;
        };
        tools.append(
          tool("◀", `move-back-${name}`, "move this panel back", () => move(name, view.list<string>("panels").indexOf(name) - 1)),
          tool("▶", `move-on-${name}`, "move this panel on", () => move(name, view.list<string>("panels").indexOf(name) + 1)),
          tool("⇔", `span-${name}`, "one column or two (in a wide cell)", () =>
            view.set({ panel_spans: { ...spans(), [name]: spans()[name] === 2 ? 1 : 2 } }),
          ),
        );
        toggle.draggable = true;
        toggle.addEventListener("dragstart", (e) => {
          dragged = name;
          e.dataTransfer?.setData("text/plain", name);
        });
        section.addEventListener("dragover", (e) => {
          if (dragged && dragged !== name) e.preventDefault();
        });
        section.addEventListener("drop", (e) => {
          e.preventDefault();
          if (dragged && dragged !== name) move(dragged, view.list<string>("panels").indexOf(name));
          dragged = "";
        });
        const head = el("div", "lw-panel-head");
        head.append(toggle, tools);
        section.append(head, el("div", "lw-panel-body"));
      }
      section.dataset.span = String(spans()[name] === 1 ? 1 : 2);
      const folded = collapsed.has(name);
      section.classList.toggle("lw-folded", folded);
      section.querySelector(".lw-panel-title")!.setAttribute("aria-expanded", String(!folded));
      section.querySelector<HTMLElement>(".lw-panel-cost")?.toggleAttribute("hidden", !folded);
      if (!folded && !seen.has(name)) {
        if (observer) observer.observe(section);
        else seen.add(name);
      }
      if (!folded && seen.has(name) && !open.has(name)) {
        const body = section.lastElementChild as HTMLElement;
        body.replaceChildren();
        const model = new PanelModel(view.model, name, links[name] ?? ["selected_token"], hub);
        const unmount = VIEWS[name]!.mount(model, body, true);
        open.set(name, () => {
          unmount();
          model.dispose();
          body.replaceChildren();
        });
      }
      return section;
    });
    panels.replaceChildren(...sections);
    hub.prefetchSoon(); // a panel opened or went: the cache follows
  }

  view.on(["tokens", "model_name"], renderHeader);
  view.on(["selected_token", "selected_layer", "selected_head"], renderSelection);
  view.on(["panel_notes", "panel_titles"], renderNotes);
  view.on(["panels", "collapsed", "panel_links", "panel_spans"], renderPanels);
  view.onDispose(() => {
    for (const name of Array.from(open.keys())) close(name);
  });
  renderHeader();
  renderSelection();
  renderNotes();
  renderPanels();
  layout();
  keepInView(view);
}

export default defineView({ name: "explorer", selectionStrip: "click one, or use the arrow keys: every panel follows", mount });
