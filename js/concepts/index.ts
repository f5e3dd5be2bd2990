// ConceptView: TCAV scores per layer and concept (a bokeh chart built in Python, rendered here by the
// BokehJS shipped in the bokeh package and asked for once), the stats of the selected concept and
// layer, and a text's tokens tinted by their cosine with that concept's CAV. Picking a layer (or a
// concept) redraws the chart and the overlay; clicking a token selects it in every linked view.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { el, renderTokenStrip, setSelected, textStripOptions, type TokenTraits } from "../shared/tokens";
import { floats } from "../shared/wire";
import { cosineColour, formatCosine, maxAbs } from "./colour";

interface Row {
  concept: string;
  layer: number;
  score: number;
  score_std: number;
  random_score: number;
  random_std: number;
  p_value: number;
  p_adjusted: number;
  significant: boolean;
  cav_accuracy: number;
  cav_consistency: number;
  reliable: boolean;
}

interface ConceptModel extends TokenTraits {
  selected_layer: number;
  concepts: string[];
  layers: number[];
  selected_concept: number;
  rows: Row[];
  target: string;
  alpha: number;
  n_random: number;
  has_trace: boolean;
}

/** The part of BokehJS this view uses. */
interface BokehView {
  remove(): void;
}
interface BokehJS {
  version: string;
  embed: { embed_item(item: unknown, target: HTMLElement): Promise<BokehView[] | BokehView | undefined> };
}

const css = `
.lw-concepts .lw-controls { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; margin: 4px 0 8px; }
.lw-concepts .lw-picker { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.lw-concepts .lw-picker-label { color: var(--lw-fg-muted); margin-right: 2px; }
.lw-concepts button.lw-pick {
  font: inherit; padding: 1px 8px; border-radius: 3px; cursor: pointer;
  border: 1px solid var(--lw-border); background: var(--lw-tint); color: var(--lw-fg);
}
.lw-concepts button.lw-pick[aria-pressed="true"] { background: var(--lw-accent); border-color: var(--lw-accent); color: #fff; }
.lw-concepts button.lw-pick.lw-sig::after { content: " *"; }
.lw-concepts .lw-chart { min-height: 280px; max-width: 900px; }
.lw-concepts .lw-stats { margin: 6px 0; font-variant-numeric: tabular-nums; }
.lw-concepts .lw-stats .lw-flag { font-weight: 600; }
.lw-concepts .lw-stats .lw-flag.lw-yes { color: var(--lw-accent); }
.lw-concepts .lw-stats .lw-flag.lw-warn { color: var(--lw-error); }
.lw-concepts .lw-overlay-title { color: var(--lw-fg-muted); margin-top: 8px; }
.lw-concepts .lw-token-value { min-height: 1.5em; font-family: var(--lw-mono); }
`;

// BokehJS is loaded once per page and shared by every ConceptView.
let bokehLoad: Promise<BokehJS> | null = null;

function loadedBokeh(version: string): BokehJS | undefined {
  const root = (window as unknown as { Bokeh?: Record<string, unknown> }).Bokeh;
  const found = root?.[version] as BokehJS | undefined;
  return found && typeof found.embed?.embed_item === "function" ? found : undefined;
}

function loadBokeh(client: Client): Promise<BokehJS> {
  if (bokehLoad) return bokehLoad;
  const promise = (async () => {
    const response = await client.request("bokehjs", "bokehjs", {}, undefined, { timeoutMs: 60_000 });
    if (response === null) throw new Error("the chart library request was cancelled");
    const version = String(response.msg["version"]);
    const ready = loadedBokeh(version);
    if (ready) return ready;
    // The source is bokeh.min.js from the installed bokeh package (trusted, not model text); a
    // script element runs it in the page, where it registers window.Bokeh[version].
    const script = document.createElement("script");
    script.textContent = String(response.msg["source"]);
    script.dataset.lwBokeh = version;
    document.head.appendChild(script);
    const bokeh = loadedBokeh(version);
    if (!bokeh) throw new Error(`BokehJS ${version} did not load in this page`);
    return bokeh;
  })();
  bokehLoad = promise;
  promise.catch(() => {
    if (bokehLoad === promise) bokehLoad = null; // a later view may try again
  });
  return promise;
}

function render({ model, el: root }: RenderProps<ConceptModel>): () => void {
  root.classList.add("lw-root", "lw-concepts");
  injectStyle(root, sharedCss + css);

  const header = el("div", "lw-header");
  header.dataset.testid = "header";
  const controls = el("div", "lw-controls");
  const conceptPicker = el("div", "lw-picker");
  conceptPicker.dataset.testid = "concept-picker";
  const layerPicker = el("div", "lw-picker");
  layerPicker.dataset.testid = "layer-picker";
  controls.append(conceptPicker, layerPicker);
  const chart = el("div", "lw-chart");
  chart.dataset.testid = "chart";
  const stats = el("div", "lw-stats");
  stats.dataset.testid = "stats";
  const overlayTitle = el("div", "lw-overlay-title");
  const strip = el("div", "lw-strip");
  strip.dataset.testid = "overlay";
  strip.setAttribute("data-lm-suppress-shortcuts", "true");
  const tokenValue = el("div", "lw-token-value");
  tokenValue.dataset.testid = "token-value";
  root.append(header, controls, chart, stats, overlayTitle, strip, tokenValue);

  const client = new Client(model);
  let bokehViews: BokehView[] = [];
  let spans: HTMLSpanElement[] = [];
  let cosines: Float32Array | null = null;
  let chartKey = "";
  let overlayKey = "";
  let textVersion = 0;

  const layer = (): number => model.get("selected_layer") ?? -1;
  const concept = (): number => model.get("selected_concept") ?? 0;
  const concepts = (): string[] => model.get("concepts") ?? [];
  const selectedToken = (): number => model.get("selected_token") ?? -1;

  function row(): Row | undefined {
    const name = concepts()[concept()];
    return (model.get("rows") ?? []).find((r) => r.concept === name && r.layer === layer());
  }

  function renderHeader(): void {
    header.replaceChildren();
    const name = model.get("model_name");
    if (name) header.append(el("span", "lw-model", name), " · ");
    header.append(`TCAV for the next token ${JSON.stringify(model.get("target") ?? "")}`);
    header.append(` · ${model.get("n_random") ?? 0} random sets · α = ${model.get("alpha") ?? 0.05} (Bonferroni)`);
  }

  function pickerButton(label: string, pressed: boolean, onClick: () => void): HTMLButtonElement {
    const b = el("button", "lw-pick", label);
    b.type = "button";
    b.setAttribute("aria-pressed", String(pressed));
    b.addEventListener("click", onClick);
    return b;
  }

  function renderPickers(): void {
    const rows = model.get("rows") ?? [];
    conceptPicker.replaceChildren(el("span", "lw-picker-label", "concept"));
    concepts().forEach((name, i) => {
      const b = pickerButton(name, i === concept(), () => {
        model.set("selected_concept", i);
        model.save_changes();
      });
      b.dataset.testid = "concept-button";
      b.dataset.index = String(i);
      conceptPicker.append(b);
    });
    layerPicker.replaceChildren(el("span", "lw-picker-label", "layer"));
    const name = concepts()[concept()];
    for (const l of model.get("layers") ?? []) {
      const b = pickerButton(String(l), l === layer(), () => {
        model.set("selected_layer", l);
        model.save_changes();
      });
      b.dataset.testid = "layer-button";
      b.dataset.layer = String(l);
      if (rows.some((r) => r.concept === name && r.layer === l && r.significant)) {
        b.classList.add("lw-sig");
        b.title = "significant at this layer";
      }
      layerPicker.append(b);
    }
  }

  function renderStats(): void {
    const r = row();
    stats.replaceChildren();
    if (!r) {
      stats.append(el("span", "lw-hint", "Pick a layer."));
      return;
    }
    stats.dataset.layer = String(r.layer);
    stats.dataset.concept = r.concept;
    stats.dataset.significant = String(r.significant);
    stats.append(
      el("b", "", r.concept),
      ` at layer ${r.layer}: TCAV ${r.score.toFixed(2)} ± ${r.score_std.toFixed(2)} vs random ` +
        `${r.random_score.toFixed(2)} ± ${r.random_std.toFixed(2)}; p = ${r.p_value.toPrecision(2)}, ` +
        `adjusted ${r.p_adjusted.toPrecision(2)} → `,
    );
    const flag = el("span", "lw-flag", r.significant ? "significant" : "not significant");
    if (r.significant) flag.classList.add("lw-yes");
    stats.append(flag, `; CAV held-out accuracy ${r.cav_accuracy.toFixed(2)}, consistency ${r.cav_consistency.toFixed(2)}`);
    if (!r.reliable) {
      stats.append(" ", el("span", "lw-flag lw-warn", "(unreliable: the CAV barely beats chance)"));
    }
  }

  function setChart(state: string, ...children: (Node | string)[]): void {
    chart.dataset.state = state;
    if (children.length) chart.replaceChildren(...children);
  }

  async function updateChart(): Promise<void> {
    const l = layer();
    const key = `${l}`;
    if (key === chartKey) return;
    chartKey = key;
    chart.dataset.state = "loading";
    let bokeh: BokehJS;
    try {
      bokeh = await loadBokeh(client);
    } catch (e) {
      if (chartKey === key) setChart("error", el("div", "lw-error", e instanceof Error ? e.message : String(e)));
      return;
    }
    let response;
    try {
      const width = Math.max(320, Math.min(900, Math.floor(root.clientWidth || 640)));
      response = await client.request("chart", "chart", { layer: l, width });
    } catch (e) {
      if (chartKey === key) setChart("error", el("div", "lw-error", e instanceof Error ? e.message : String(e)));
      return;
    }
    if (response === null || chartKey !== key) return;
    for (const v of bokehViews) v.remove();
    bokehViews = [];
    const target = el("div");
    chart.replaceChildren(target);
    try {
      const views = await bokeh.embed.embed_item(response.msg["item"], target);
      bokehViews = Array.isArray(views) ? views : views ? [views] : [];
    } catch (e) {
      setChart("error", el("div", "lw-error", `the chart failed to draw: ${e instanceof Error ? e.message : e}`));
      return;
    }
    if (chartKey !== key) return;
    chart.dataset.layer = String(l);
    chart.dataset.state = "ready";
  }

  function renderStrip(): void {
    if (!model.get("has_trace")) {
      overlayTitle.textContent = "";
      strip.replaceChildren(el("span", "lw-hint", "Call view.show_projection(trace) to see a text projected onto the concept."));
      spans = [];
      return;
    }
    spans = renderTokenStrip(strip, model.get("tokens") ?? [], {
      ...textStripOptions(model),
      selected: selectedToken(),
      onSelect: (i) => {
        model.set("selected_token", i === selectedToken() ? -1 : i);
        model.save_changes();
      },
    });
    paintOverlay();
  }

  function paintOverlay(): void {
    const scale = cosines ? maxAbs(cosines) : 0;
    spans.forEach((span, i) => {
      const v = cosines?.[i];
      if (v === undefined) {
        span.style.background = "";
        delete span.dataset.cosine;
        return;
      }
      span.style.background = cosineColour(v, scale);
      span.dataset.cosine = String(v);
      span.title = `${span.title.split("  cos")[0]}  cos ${formatCosine(v)}`;
    });
    renderTokenValue();
  }

  function renderTokenValue(): void {
    const i = selectedToken();
    const v = i >= 0 ? cosines?.[i] : undefined;
    const token = (model.get("tokens") ?? [])[i];
    if (v === undefined || token === undefined) {
      tokenValue.textContent = cosines ? "Click a token to read its cosine with the CAV." : "";
      delete tokenValue.dataset.index;
      return;
    }
    tokenValue.dataset.index = String(i);
    tokenValue.dataset.cosine = String(v);
    tokenValue.textContent = `#${i} ${JSON.stringify(token)}: cosine ${formatCosine(v)}`;
  }

  async function updateOverlay(): Promise<void> {
    if (!model.get("has_trace")) return;
    const l = layer();
    const c = concept();
    const key = `${textVersion}:${c}:${l}`;
    if (key === overlayKey) return;
    overlayKey = key;
    const name = concepts()[c] ?? "";
    if (l < 0) {
      client.cancel("projection");
      overlayTitle.textContent = "Pick a layer to project the text onto the concept.";
      return;
    }
    strip.dataset.state = "loading";
    overlayTitle.textContent = `Cosine of each token's residual stream after layer ${l} with the CAV of “${name}”…`;
    let response;
    try {
      response = await client.request("projection", "projection", { concept: c, layer: l });
    } catch (e) {
      if (overlayKey !== key) return;
      strip.dataset.state = "error";
      overlayTitle.replaceChildren(el("div", "lw-error", e instanceof Error ? e.message : String(e)));
      return;
    }
    if (response === null || overlayKey !== key) return;
    cosines = floats(response.arrays, "cosine");
    overlayTitle.textContent =
      `Cosine of each token's residual stream after layer ${l} with the CAV of “${name}” ` +
      `(blue: towards the concept, orange: away; from ${formatCosine(Number(response.msg["min"]))} to ` +
      `${formatCosine(Number(response.msg["max"]))})`;
    paintOverlay();
    strip.dataset.layer = String(l);
    strip.dataset.concept = String(c);
    strip.dataset.state = "ready";
  }

  const onSelection = (): void => {
    renderPickers();
    renderStats();
    void updateChart();
    void updateOverlay();
  };
  const onText = (): void => {
    textVersion++;
    cosines = null;
    renderStrip();
    void updateOverlay();
  };
  const onToken = (): void => {
    setSelected(spans, selectedToken());
    renderTokenValue();
  };
  const handlers: [string, () => void][] = [
    ["change:selected_layer", onSelection],
    ["change:selected_concept", onSelection],
    ["change:rows", onSelection],
    ["change:tokens", onText],
    ["change:has_trace", onText],
    ["change:selected_token", onToken],
    ["change:model_name", renderHeader],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);

  renderHeader();
  renderPickers();
  renderStats();
  renderStrip();
  void updateChart();
  void updateOverlay();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof ConceptModel}`, handler);
    for (const v of bokehViews) v.remove();
    client.dispose();
  };
}

export default { render };
