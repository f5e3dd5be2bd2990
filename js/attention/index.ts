// AttentionView: the attention explorer. A toolbar and three panels — overview (a thumbnail per
// layer × head), head view (token-to-token lines) and matrix (one pattern, zoomable). Click a token:
// its attention in every head. Click a thumbnail: that head. The tabs, direction and aggregate
// buttons and the sort menu are built from the kernel's lists (traits panels, directions,
// aggregates, sort_orders).

import { batched } from "../shared/batch";
import { fillOptions, tagged } from "../shared/dom";
import { el, setText } from "../shared/tokens";
import { defineView, type View } from "../shared/view";
import { type Choice, type Panel, type PanelName, Ctx, button, errorMessage, errorSlot } from "./context";
import { HeadPanel } from "./headview";
import { MatrixPanel } from "./matrix";
import { OverviewPanel } from "./overview";
import "./style.css";

/** Render a canvas to PNG bytes. */
function pngOf(canvas: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the PNG"))), "image/png");
  });
}

function mount(view: View): void {
  const { root } = view;
  const ctx = new Ctx(view);
  const choices = (trait: string): Choice[] => view.list<Choice>(trait);

  // -- toolbar: a button group per list of choices -----------------------------------------------------
  /** One button per choice of `trait`, testid `${prefix}-${value}`, pressed when `isOn(value)`. */
  function group(trait: string, prefix: string, onClick: (value: string) => void): { el: HTMLElement; show(isOn: (value: string) => boolean): void } {
    const box = el("div", "lw-group");
    const buttons = choices(trait).map(([value, label, description]) => {
      const b = button(view, "", label, `${prefix}-${value}`, () => onClick(value));
      b.title = description;
      b.dataset.value = value;
      return b;
    });
    box.append(...buttons);
    const attr = prefix === "tab" ? "aria-selected" : "aria-pressed";
    return { el: box, show: (isOn) => buttons.forEach((b) => b.setAttribute(attr, String(isOn(b.dataset.value!)))) };
  }
  const tabs = group("panels", "tab", (p) => view.set({ panel: p }));
  tabs.el.setAttribute("role", "tablist");
  for (const b of tabs.el.children) b.setAttribute("role", "tab");
  const directions = group("directions", "direction", (d) => view.set({ direction: d }));
  directions.el.dataset.testid = "direction";
  const aggregates = group("aggregates", "aggregate", toggleAggregate);
  const rolloutBtn = aggregates.el.querySelector<HTMLButtonElement>('[data-value="rollout"]');
  const rolloutTitle = rolloutBtn?.title ?? "";

  const layerSelect = tagged(el("select"), "layer-select");
  const headSelect = tagged(el("select"), "head-select");
  const sortSelect = tagged(el("select"), "sort-by");
  sortSelect.title = "Sort each layer's heads by a score";
  for (const [value, label, description] of choices("sort_orders")) {
    const o = el("option", "", label);
    o.value = value;
    o.title = description;
    sortSelect.append(o);
  }
  const exportBtn = button(view, "", "Export PNG", "export-png", exportPng);
  exportBtn.title = "Download the current panel as a PNG image";
  const labelled = (text: string, control: HTMLElement): HTMLLabelElement => {
    const l = el("label", "", text);
    l.append(control);
    return l;
  };
  const toolbar = tagged(el("div", "lw-toolbar"), "toolbar");
  toolbar.append(tabs.el, labelled("layer", layerSelect), labelled("head", headSelect), directions.el, labelled("sort", sortSelect), aggregates.el, exportBtn);

  const help = tagged(
    el(
      "div",
      "lw-hint lw-help",
      "Click a token: its attention in every head (Esc clears) · click a thumbnail: head view, Shift+click: matrix · click mean/rollout: that aggregate",
    ),
    "help",
  );
  const exportError = errorSlot("export-error");
  const progress = tagged(el("span", "lw-progress"), "progress");

  const overview = new OverviewPanel(ctx, renderProgress);
  const panels: Record<PanelName, Panel> = { overview, head: new HeadPanel(ctx), matrix: new MatrixPanel(ctx) };
  const panelBox = el("div", "lw-panels");
  panelBox.append(...Object.values(panels).map((p) => p.el));
  root.append(toolbar, help, exportError, panelBox);

  // -- header and toolbar ------------------------------------------------------------------------------
  function renderHeader(): void {
    const T = ctx.T;
    view.setHeader(
      el("span", "lw-count", `${T} token${T === 1 ? "" : "s"}`),
      " · ",
      el("span", "lw-shape", `${ctx.nLayers()} layers × ${ctx.nHeads()} heads`),
      progress,
    );
    renderProgress();
  }

  function renderProgress(): void {
    const { done, total, state } = overview.progress();
    Object.assign(progress.dataset, { done: String(done), total: String(total), state });
    progress.classList.toggle("lw-loading", state === "loading");
    progress.textContent =
      state === "error" ? `overview: failed after ${done}/${total} layers` : state === "idle" ? "" : `overview: ${done}/${total} layers`;
  }

  function fillSelect(select: HTMLSelectElement, n: number, prefix: string, value: number): void {
    if (select.options.length !== n + 1) {
      fillOptions(select, [["-1", "—"], ...Array.from({ length: n }, (_, i) => [String(i), `${prefix}${i}`] as const)]);
    }
    select.value = String(value);
  }

  function renderToolbar(): void {
    tabs.show((p) => p === ctx.panel());
    fillSelect(layerSelect, ctx.nLayers(), "L", ctx.selectedLayer());
    fillSelect(headSelect, ctx.nHeads(), "H", ctx.selectedHead());
    directions.show((d) => d === ctx.direction());
    const sort = ctx.sortBy();
    sortSelect.value = choices("sort_orders").some(([v]) => v === sort) ? sort : "";
    aggregates.show((a) => a === ctx.aggregate());
    if (rolloutBtn) {
      rolloutBtn.disabled = !ctx.rolloutAvailable();
      rolloutBtn.title = ctx.rolloutAvailable()
        ? rolloutTitle
        : `Rollout is limited to ${ctx.rolloutLimit()} tokens (rollout_limit); this text has ${ctx.T}`;
    }
  }

  function toggleAggregate(which: string): void {
    if (ctx.aggregate() === which) {
      view.set({ aggregate: "" });
      return;
    }
    const changes: Record<string, unknown> = { aggregate: which };
    if (ctx.selectedLayer() < 0 && ctx.nLayers() > 0) changes["selected_layer"] = which === "rollout" ? ctx.nLayers() - 1 : 0;
    if (ctx.panel() === "overview") changes["panel"] = "head";
    view.set(changes);
  }

  view.listen(layerSelect, "change", () => {
    const l = Number(layerSelect.value);
    if (Number.isInteger(l) && l >= -1 && l < ctx.nLayers()) view.set({ selected_layer: l });
  });
  view.listen(headSelect, "change", () => {
    const h = Number(headSelect.value);
    if (!Number.isInteger(h) || h < -1 || h >= ctx.nHeads()) return;
    view.set(h >= 0 ? { selected_head: h, heads: [h], aggregate: "" } : { selected_head: -1, heads: [] });
  });
  view.listen(sortSelect, "change", () => view.set({ sort_by: sortSelect.value }));

  // -- export and snapshots ------------------------------------------------------------------------------
  async function snapshot(): Promise<{ panel: PanelName; blob: Blob }> {
    const panel = ctx.panel();
    return { panel, blob: await pngOf(panels[panel].snapshot()) };
  }

  function exportPng(): void {
    snapshot().then(
      ({ panel, blob }) => {
        exportError.hidden = true;
        const url = URL.createObjectURL(blob);
        const a = tagged(el("a"), "export-link");
        a.href = url;
        a.download = `attention-${panel}.png`;
        a.hidden = true;
        root.append(a);
        a.click();
        setTimeout(() => {
          a.remove();
          URL.revokeObjectURL(url);
        }, 10_000);
      },
      (e: unknown) => {
        exportError.hidden = false;
        setText(exportError, `Export PNG: ${errorMessage(e)}`);
      },
    );
  }

  view.client.onSnapshot(async () => {
    const { panel, blob } = await snapshot();
    return { shown: panel, png: await blob.arrayBuffer() };
  });

  // -- following the traits ------------------------------------------------------------------------------
  let shown: PanelName | null = null;
  const schedule = batched(sync);

  function sync(): void {
    renderHeader();
    renderToolbar();
    const active = ctx.panel();
    for (const [name, p] of Object.entries(panels)) p.el.hidden = name !== active;
    const panel = panels[active];
    if (active !== shown) {
      // Shown again: what failed while it was away is asked again.
      if (panel.el.dataset.state === "error") panel.retry();
      shown = active;
    }
    overview.ensureStream();
    try {
      panel.update();
    } catch (e) {
      // A bug in a panel must not blank the view: say it in place.
      console.error("llmasos_widgets: attention view update failed", e);
      const box = panel.el.querySelector<HTMLElement>(".lw-error");
      if (box) {
        box.hidden = false;
        setText(box, errorMessage(e));
      }
      panel.el.dataset.state = "error";
    }
  }

  /** The text or the model's shape changed: nothing fetched still fits. */
  function restart(): void {
    ctx.version++;
    for (const p of Object.values(panels)) p.reset();
    schedule();
  }

  view.on(["tokens", "token_ids", "n_layers", "n_heads"], restart);
  view.on(
    ["model_name", "selected_token", "selected_layer", "selected_head", "panel", "direction", "aggregate", "heads", "sort_by", "thumb_size", "rollout_limit"],
    schedule,
  );
  view.listen(root, "click", (e) => {
    // Clicking the selected token again retries what failed.
    const panel = panels[ctx.panel()];
    if (panel.el.dataset.state === "error" && (e.target as HTMLElement).closest(".lw-token.lw-selected")) {
      panel.retry();
      schedule();
    }
  });
  view.listen(root, "keydown", (e) => {
    // Escape anywhere in the view clears the token (back to the patterns).
    if (e.key !== "Escape" || view.selected() === -1 || (e.target as HTMLElement | null)?.tagName === "SELECT") return;
    e.preventDefault();
    e.stopPropagation();
    view.set({ selected_token: -1 });
  });
  sync();
}

export default defineView({
  name: "attention",
  selectionStrip: "click one, or use the arrow keys, to see its attention in every head; Escape clears",
  mount,
});
