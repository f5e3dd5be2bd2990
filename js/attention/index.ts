// AttentionView: the attention explorer. A header, the tokens, a toolbar and three panels —
// overview (a thumbnail per layer × head), head view (token-to-token lines) and matrix (one pattern,
// zoomable). Click a token: its attention in every head. Click a thumbnail: that head.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { el, renderTokenStrip, setSelected, textStripOptions, tokenKeyTarget } from "../shared/tokens";
import { type AttentionTraits, type Panel, type PanelName, Ctx, PANELS } from "./context";
import { HeadPanel } from "./headview";
import { MatrixPanel } from "./matrix";
import { OverviewPanel } from "./overview";
import { attentionCss } from "./style";

/** Above this many tokens the strip becomes a scrolling box of fixed height. */
const STRIP_SCROLL_AT = 300;

const PANEL_LABELS: Record<PanelName, string> = { overview: "Overview", head: "Head", matrix: "Matrix" };
const SORTS: [string, string][] = [
  ["", "none"],
  ["entropy", "entropy"],
  ["prev_token", "previous-token"],
  ["sink", "first-token (sink)"],
];

function button(text: string, testid: string, title?: string): HTMLButtonElement {
  const b = el("button", "", text);
  b.type = "button";
  b.dataset.testid = testid;
  if (title) b.title = title;
  return b;
}

/** Render a canvas to PNG bytes. */
function pngOf(canvas: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the PNG"))), "image/png");
  });
}

function render({ model, el: root }: RenderProps<AttentionTraits>): () => void {
  root.classList.add("lw-root", "lw-attention");
  // JupyterLab leaves keys pressed in the view to it (arrows, Escape).
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  injectStyle(root, sharedCss + attentionCss);

  const client = new Client(model);
  const ctx = new Ctx(model, client, root);

  // -- skeleton -----------------------------------------------------------------------------------
  const header = el("div", "lw-header");
  header.dataset.testid = "header";
  const stripBox = el("div", "lw-strip-box");
  const strip = el("div", "lw-strip");
  strip.dataset.testid = "token-strip";
  strip.tabIndex = 0;
  strip.setAttribute("aria-label", "Tokens: click one, or use the arrow keys, to see its attention in every head; Escape clears");
  stripBox.append(strip);

  const toolbar = el("div", "lw-toolbar");
  toolbar.dataset.testid = "toolbar";
  const tabs = el("div", "lw-group");
  tabs.setAttribute("role", "tablist");
  const tabButtons = new Map<PanelName, HTMLButtonElement>();
  for (const p of PANELS) {
    const b = button(PANEL_LABELS[p], `tab-${p}`);
    b.setAttribute("role", "tab");
    b.addEventListener("click", () => ctx.set({ panel: p }));
    tabButtons.set(p, b);
    tabs.append(b);
  }
  const layerSelect = el("select");
  layerSelect.dataset.testid = "layer-select";
  const headSelect = el("select");
  headSelect.dataset.testid = "head-select";
  const dirGroup = el("div", "lw-group");
  dirGroup.dataset.testid = "direction";
  const fromBtn = button("from token", "direction-from", "Where the selected token looks (its row)");
  const toBtn = button("to token", "direction-to", "Who looks at the selected token (its column)");
  dirGroup.append(fromBtn, toBtn);
  const sortSelect = el("select");
  sortSelect.dataset.testid = "sort-by";
  sortSelect.title = "Sort each layer's heads: low entropy (focused) first, or most weight on the previous / first token first";
  for (const [value, label] of SORTS) {
    const o = el("option", "", label);
    o.value = value;
    sortSelect.append(o);
  }
  const meanBtn = button("mean of heads", "aggregate-mean", "The mean over the heads of the selected layer");
  const rolloutBtn = button("rollout", "aggregate-rollout", "Attention rollout up to the selected layer (Abnar & Zuidema 2020)");
  const exportBtn = button("Export PNG", "export-png", "Download the current panel as a PNG image");
  const labelled = (text: string, control: HTMLElement): HTMLLabelElement => {
    const l = el("label", "", text);
    l.append(control);
    return l;
  };
  toolbar.append(
    tabs,
    labelled("layer", layerSelect),
    labelled("head", headSelect),
    dirGroup,
    labelled("sort", sortSelect),
    meanBtn,
    rolloutBtn,
    exportBtn,
  );

  const help = el(
    "div",
    "lw-hint lw-help",
    "Click a token: its attention in every head (Esc clears) · click a thumbnail: head view, Shift+click: matrix · click mean/rollout: that aggregate",
  );
  help.dataset.testid = "help";

  const exportError = el("div", "lw-error");
  exportError.dataset.testid = "export-error";
  exportError.hidden = true;

  const progress = el("span", "lw-progress");
  progress.dataset.testid = "progress";

  const overview = new OverviewPanel(ctx, () => renderProgress());
  const head = new HeadPanel(ctx);
  const matrix = new MatrixPanel(ctx);
  const panels: Record<PanelName, Panel> = { overview, head, matrix };
  const panelBox = el("div", "lw-panels");
  for (const p of PANELS) panelBox.append(panels[p].el);

  root.append(header, stripBox, toolbar, help, exportError, panelBox);

  // -- header, strip, toolbar ------------------------------------------------------------------------
  function renderHeader(): void {
    const T = ctx.T;
    const name = model.get("model_name");
    const parts: (Node | string)[] = [];
    if (name) parts.push(el("span", "lw-model", name), " · ");
    parts.push(el("span", "lw-count", `${T} token${T === 1 ? "" : "s"}`), " · ");
    parts.push(el("span", "lw-shape", `${ctx.nLayers()} layers × ${ctx.nHeads()} heads`));
    header.replaceChildren(...parts, progress);
    renderProgress();
  }

  function renderProgress(): void {
    const { done, total, state } = overview.progress();
    progress.dataset.done = String(done);
    progress.dataset.total = String(total);
    progress.dataset.state = state;
    progress.classList.toggle("lw-loading", state === "loading");
    progress.textContent =
      state === "error" ? `overview: failed after ${done}/${total} layers` : state === "idle" ? "" : `overview: ${done}/${total} layers`;
  }

  let spans: HTMLSpanElement[] = [];
  function renderStrip(): void {
    const tokens = ctx.tokens();
    stripBox.classList.toggle("lw-scroll", tokens.length > STRIP_SCROLL_AT);
    if (tokens.length === 0) {
      strip.replaceChildren(el("span", "lw-empty", "(no tokens)"));
      spans = [];
      return;
    }
    spans = renderTokenStrip(strip, tokens, {
      ...textStripOptions(model),
      selected: ctx.selectedToken(),
      onSelect: selectToken,
    });
  }

  /** Scroll the strip's box (not the page) so the selected token shows. */
  function revealSelected(): void {
    const span = spans[ctx.selectedToken()];
    if (!span || stripBox.scrollHeight <= stripBox.clientHeight) return;
    const top = span.offsetTop - stripBox.offsetTop;
    const bottom = top + span.offsetHeight;
    if (top < stripBox.scrollTop) stripBox.scrollTop = Math.max(0, top - 8);
    else if (bottom > stripBox.scrollTop + stripBox.clientHeight) stripBox.scrollTop = bottom - stripBox.clientHeight + 8;
  }

  function selectToken(i: number): void {
    if (i === ctx.selectedToken() && i >= 0) {
      // Clicking the selected token again retries what failed.
      const panel = panels[ctx.panel()];
      if (panel.el.dataset.state === "error") {
        panel.retry();
        schedule();
      }
      return;
    }
    if (i >= ctx.T) return;
    ctx.set({ selected_token: i });
  }

  function fillSelect(select: HTMLSelectElement, n: number, prefix: string, value: number): void {
    if (select.options.length !== n + 1) {
      const options = [el("option", "", "—")];
      options[0]!.value = "-1";
      for (let i = 0; i < n; i++) {
        const o = el("option", "", `${prefix}${i}`);
        o.value = String(i);
        options.push(o);
      }
      select.replaceChildren(...options);
    }
    select.value = String(value);
  }

  function renderToolbar(): void {
    const panel = ctx.panel();
    for (const [p, b] of tabButtons) b.setAttribute("aria-selected", String(p === panel));
    fillSelect(layerSelect, ctx.nLayers(), "L", ctx.selectedLayer());
    fillSelect(headSelect, ctx.nHeads(), "H", ctx.selectedHead());
    const dir = ctx.direction();
    fromBtn.setAttribute("aria-pressed", String(dir === "from"));
    toBtn.setAttribute("aria-pressed", String(dir === "to"));
    const sort = ctx.sortBy();
    sortSelect.value = SORTS.some(([v]) => v === sort) ? sort : "";
    const agg = ctx.aggregate();
    meanBtn.setAttribute("aria-pressed", String(agg === "mean"));
    rolloutBtn.setAttribute("aria-pressed", String(agg === "rollout"));
    rolloutBtn.disabled = !ctx.rolloutAvailable();
    rolloutBtn.title = ctx.rolloutAvailable()
      ? "Attention rollout up to the selected layer (Abnar & Zuidema 2020)"
      : `Rollout is limited to ${ctx.rolloutLimit()} tokens (rollout_limit); this text has ${ctx.T}`;
  }

  function toggleAggregate(which: "mean" | "rollout"): void {
    if (ctx.aggregate() === which) {
      ctx.set({ aggregate: "" });
      return;
    }
    const changes: Partial<AttentionTraits> = { aggregate: which };
    if (ctx.selectedLayer() < 0 && ctx.nLayers() > 0) changes.selected_layer = which === "rollout" ? ctx.nLayers() - 1 : 0;
    if (ctx.panel() === "overview") changes.panel = "head";
    ctx.set(changes);
  }

  layerSelect.addEventListener("change", () => {
    const l = Number(layerSelect.value);
    if (Number.isInteger(l) && l >= -1 && l < ctx.nLayers()) ctx.set({ selected_layer: l });
  });
  headSelect.addEventListener("change", () => {
    const h = Number(headSelect.value);
    if (!Number.isInteger(h) || h < -1 || h >= ctx.nHeads()) return;
    ctx.set(h >= 0 ? { selected_head: h, heads: [h], aggregate: "" } : { selected_head: -1, heads: [] });
  });
  fromBtn.addEventListener("click", () => ctx.set({ direction: "from" }));
  toBtn.addEventListener("click", () => ctx.set({ direction: "to" }));
  sortSelect.addEventListener("change", () => ctx.set({ sort_by: sortSelect.value }));
  meanBtn.addEventListener("click", () => toggleAggregate("mean"));
  rolloutBtn.addEventListener("click", () => toggleAggregate("rollout"));

  // -- export and snapshots ------------------------------------------------------------------------
  async function snapshot(): Promise<{ panel: PanelName; blob: Blob }> {
    const panel = ctx.panel();
    const blob = await pngOf(panels[panel].snapshot());
    return { panel, blob };
  }

  exportBtn.addEventListener("click", () => {
    snapshot().then(
      ({ panel, blob }) => {
        exportError.hidden = true;
        const url = URL.createObjectURL(blob);
        const a = document.createElement("a");
        a.href = url;
        a.download = `attention-${panel}.png`;
        a.dataset.testid = "export-link";
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
        exportError.textContent = `Export PNG: ${e instanceof Error ? e.message : String(e)}`;
      },
    );
  });

  client.onSnapshot(async () => {
    const { panel, blob } = await snapshot();
    return { panel, png: await blob.arrayBuffer() };
  });

  // -- following the traits --------------------------------------------------------------------------
  let scheduled = false;
  let shown: PanelName | null = null;
  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      sync();
    });
  }

  function sync(): void {
    renderHeader();
    renderToolbar();
    setSelected(spans, ctx.selectedToken());
    revealSelected();
    const active = ctx.panel();
    for (const p of PANELS) panels[p].el.hidden = p !== active;
    if (active !== shown) {
      // Shown again: what failed while it was away is asked again.
      if (panels[active].el.dataset.state === "error") panels[active].retry();
      shown = active;
    }
    overview.ensureStream();
    try {
      panels[active].update();
    } catch (e) {
      // A bug in a panel must not blank the view: say it in place.
      console.error("llmasos_widgets: attention view update failed", e);
      const box = panels[active].el.querySelector<HTMLElement>(".lw-error");
      if (box) {
        box.hidden = false;
        box.textContent = e instanceof Error ? e.message : String(e);
      }
      panels[active].el.dataset.state = "error";
    }
  }

  const onText = (): void => {
    ctx.version++;
    for (const p of PANELS) panels[p].reset();
    renderStrip();
    schedule();
  };
  const onDetails = (): void => {
    renderStrip();
    schedule();
  };
  const onShape = (): void => {
    ctx.version++; // a new model shape: nothing fetched still fits
    for (const p of PANELS) panels[p].reset();
    schedule();
  };

  const handlers: [string, () => void][] = [
    ["change:tokens", onText],
    ["change:token_ids", onText],
    ["change:offsets", onDetails],
    ["change:generated", onDetails],
    ["change:n_layers", onShape],
    ["change:n_heads", onShape],
  ];
  for (const name of [
    "model_name",
    "selected_token",
    "selected_layer",
    "selected_head",
    "panel",
    "direction",
    "aggregate",
    "heads",
    "sort_by",
    "thumb_size",
    "rollout_limit",
  ]) {
    handlers.push([`change:${name}`, schedule]);
  }
  for (const [event, handler] of handlers) model.on(event, handler);

  function moveSelection(event: KeyboardEvent): void {
    const i = ctx.selectedToken();
    const to = tokenKeyTarget(event.key, i, spans.length);
    if (to === null) return;
    event.preventDefault();
    event.stopPropagation();
    if (to !== i) ctx.set({ selected_token: to });
  }
  /** Escape anywhere in the view clears the token (back to the patterns). */
  function onRootKey(event: KeyboardEvent): void {
    if (event.key !== "Escape" || ctx.raw("selected_token") === -1) return;
    if ((event.target as HTMLElement | null)?.tagName === "SELECT") return;
    event.preventDefault();
    event.stopPropagation();
    ctx.set({ selected_token: -1 });
  }
  strip.addEventListener("keydown", moveSelection);
  root.addEventListener("keydown", onRootKey);

  renderStrip();
  sync();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof AttentionTraits}`, handler);
    strip.removeEventListener("keydown", moveSelection);
    root.removeEventListener("keydown", onRootKey);
    for (const p of PANELS) panels[p].dispose();
    client.onSnapshot(undefined);
    client.dispose();
  };
}

export default { render };
