// ConceptView: TCAV scores per layer and concept (a bokeh chart built in Python, rendered here by the
// BokehJS shipped in the bokeh package and asked for once), the stats of the selected concept and
// layer, and a text's tokens tinted by their cosine with that concept's CAV. Picking a layer (or a
// concept) redraws the chart and the overlay; clicking a token selects it in every linked view.

import { maxAbs } from "../shared/activations";
import type { Client } from "../shared/client";
import { el, quoted, setText, visibleStrings } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats } from "../shared/wire";
import { cosineColour, formatCosine } from "./colour";
import "./style.css";

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

/** The part of BokehJS this view uses. */
interface BokehView {
  remove(): void;
}
interface BokehJS {
  embed: { embed_item(item: unknown, target: HTMLElement): Promise<BokehView[] | BokehView | undefined> };
}

// BokehJS is loaded once per page and shared by every ConceptView.
let bokehLoad: Promise<BokehJS> | null = null;

function loadedBokeh(version: string): BokehJS | undefined {
  const found = (window as unknown as { Bokeh?: Record<string, BokehJS | undefined> }).Bokeh?.[version];
  return typeof found?.embed?.embed_item === "function" ? found : undefined;
}

function loadBokeh(client: Client): Promise<BokehJS> {
  if (bokehLoad) return bokehLoad;
  const promise = (async () => {
    const response = await client.request("bokehjs", "bokehjs", {}, undefined, { timeoutMs: 60_000 });
    if (response === null) throw new Error("the chart library request was cancelled");
    const version = String(response.msg["version"]);
    if (!loadedBokeh(version)) {
      // The source is bokeh.min.js from the installed bokeh package (trusted, not model text); a
      // script element runs it in the page, where it registers window.Bokeh[version].
      const script = document.createElement("script");
      script.textContent = String(response.msg["source"]);
      script.dataset.lwBokeh = version;
      document.head.appendChild(script);
    }
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

function mount(view: View): () => void {
  const conceptPicker = el("div", "lw-picker");
  conceptPicker.dataset.testid = "concept-picker";
  const layerPicker = el("div", "lw-picker");
  layerPicker.dataset.testid = "layer-picker";
  const controls = el("div", "lw-controls");
  controls.append(conceptPicker, layerPicker);
  const chart = el("div", "lw-chart");
  chart.dataset.testid = "chart";
  const stats = el("div", "lw-stats");
  stats.dataset.testid = "stats";
  const overlayTitle = el("div", "lw-overlay-title");
  const tokenValue = el("div", "lw-token-value");
  tokenValue.dataset.testid = "token-value";
  const bokehViews: BokehView[] = [];
  let cosines: Float32Array | null = null;
  let chartKey = "";
  let overlayKey = "";
  let textVersion = 0;
  const strip = view.strip("click one to read its cosine with the concept", paint);
  strip.el.dataset.testid = "overlay";
  view.root.append(controls, chart, stats, overlayTitle, strip.el, tokenValue);

  const layer = (): number => view.int("selected_layer");
  const concept = (): number => view.int("selected_concept", 0);
  const concepts = (): string[] => view.list<string>("concepts");
  const rows = (): Row[] => view.list<Row>("rows");
  const row = (): Row | undefined => rows().find((r) => r.concept === concepts()[concept()] && r.layer === layer());

  function renderHeader(): void {
    view.setHeader(
      `TCAV for the next token ${quoted(String(view.get("target") ?? ""))} · ${view.int("n_random", 0)} random sets · ` +
        `α = ${view.get("alpha") ?? 0.05} (Bonferroni)`,
    );
  }

  function pickerButton(label: string, pressed: boolean, data: Record<string, string>): HTMLButtonElement {
    const b = el("button", "lw-pick", label);
    b.type = "button";
    b.setAttribute("aria-pressed", String(pressed));
    Object.assign(b.dataset, data);
    return b;
  }

  function renderPickers(): void {
    conceptPicker.replaceChildren(
      el("span", "lw-picker-label", "concept"),
      ...concepts().map((name, i) => pickerButton(name, i === concept(), { testid: "concept-button", index: String(i) })),
    );
    const name = concepts()[concept()];
    layerPicker.replaceChildren(
      el("span", "lw-picker-label", "layer"),
      ...view.list<number>("layers").map((l) => {
        const b = pickerButton(String(l), l === layer(), { testid: "layer-button", layer: String(l) });
        if (rows().some((r) => r.concept === name && r.layer === l && r.significant)) {
          b.classList.add("lw-sig");
          b.title = "significant at this layer";
        }
        return b;
      }),
    );
  }

  function renderStats(): void {
    const r = row();
    if (!r) {
      stats.replaceChildren(el("span", "lw-hint", "Pick a layer."));
      return;
    }
    Object.assign(stats.dataset, { layer: String(r.layer), concept: r.concept, significant: String(r.significant) });
    stats.replaceChildren(
      el("b", "", r.concept),
      ` at layer ${r.layer}: TCAV ${r.score.toFixed(2)} ± ${r.score_std.toFixed(2)} vs random ` +
        `${r.random_score.toFixed(2)} ± ${r.random_std.toFixed(2)}; p = ${r.p_value.toPrecision(2)}, ` +
        `adjusted ${r.p_adjusted.toPrecision(2)} → `,
      el("span", r.significant ? "lw-flag lw-yes" : "lw-flag", r.significant ? "significant" : "not significant"),
      `; CAV held-out accuracy ${r.cav_accuracy.toFixed(2)}, consistency ${r.cav_consistency.toFixed(2)}`,
    );
    if (!r.reliable) stats.append(" ", el("span", "lw-flag lw-warn", "(unreliable: the CAV barely beats chance)"));
  }

  /** The widest of the chart's widths (from Python) that fits the view, else the narrowest. */
  function chartWidth(): number | undefined {
    const widths = view.list<number>("chart_widths");
    const room = view.root.clientWidth || 640;
    return widths.filter((w) => w <= room).pop() ?? widths[0];
  }

  async function updateChart(): Promise<void> {
    const l = layer();
    const key = `${l}`;
    if (key === chartKey) return;
    chartKey = key;
    chart.dataset.state = "loading";
    try {
      const bokeh = await loadBokeh(view.client);
      const response = await view.client.request("chart", "chart", { layer: l, width: chartWidth() });
      if (response === null || chartKey !== key) return;
      for (const v of bokehViews.splice(0)) v.remove();
      const target = el("div");
      chart.replaceChildren(target);
      // The chart names the concepts (its axis, on a canvas, and its hover): shown by visibleText too.
      const drawn = await bokeh.embed.embed_item(visibleStrings(response.msg["item"]), target);
      bokehViews.push(...(Array.isArray(drawn) ? drawn : drawn ? [drawn] : []));
      if (chartKey === key) Object.assign(chart.dataset, { layer: String(l), state: "ready" });
    } catch (e) {
      if (chartKey !== key) return;
      chart.dataset.state = "error";
      chart.replaceChildren(errorBox(e, "chart-error"));
    }
  }

  /** Tint the strip's tokens by their cosine (the strip calls this after each redraw). */
  function paint(spans: HTMLSpanElement[]): void {
    const scale = cosines ? maxAbs(cosines) : 0;
    spans.forEach((span, i) => {
      const v = cosines?.[i];
      span.title = span.title.split("  cos")[0]!;
      if (v === undefined) {
        span.style.background = "";
        delete span.dataset.cosine;
        return;
      }
      span.style.background = cosineColour(v, scale);
      span.dataset.cosine = String(v);
      span.title += `  cos ${formatCosine(v)}`;
    });
    renderTokenValue();
  }

  function renderTokenValue(): void {
    const i = view.selected();
    const v = i >= 0 ? cosines?.[i] : undefined;
    const token = view.tokens()[i];
    if (v === undefined || token === undefined) {
      tokenValue.textContent = cosines ? "Click a token to read its cosine with the CAV." : "";
      delete tokenValue.dataset.index;
      return;
    }
    Object.assign(tokenValue.dataset, { index: String(i), cosine: String(v) });
    setText(tokenValue, `#${i} ${quoted(token)}: cosine ${formatCosine(v)}`);
  }

  async function updateOverlay(): Promise<void> {
    const hasTrace = Boolean(view.get("has_trace"));
    strip.el.hidden = !hasTrace;
    if (!hasTrace) {
      overlayTitle.textContent = "Call view.show_projection(trace) to see a text projected onto the concept.";
      return;
    }
    const l = layer();
    const c = concept();
    const key = `${textVersion}:${c}:${l}`;
    if (key === overlayKey) return;
    overlayKey = key;
    if (l < 0) {
      view.client.cancel("projection");
      overlayTitle.textContent = "Pick a layer to project the text onto the concept.";
      return;
    }
    const about = `Cosine of each token's residual stream after layer ${l} with the CAV of ${quoted(concepts()[c] ?? "", "text")}`;
    strip.el.dataset.state = "loading";
    setText(overlayTitle, `${about}…`);
    try {
      const response = await view.client.request("projection", "projection", { concept: c, layer: l });
      if (response === null || overlayKey !== key) return;
      cosines = floats(response.arrays, "cosine");
      const range = `from ${formatCosine(Number(response.msg["min"]))} to ${formatCosine(Number(response.msg["max"]))}`;
      setText(overlayTitle, `${about} (blue: towards the concept, orange: away; ${range})`);
      paint(strip.spans);
      Object.assign(strip.el.dataset, { layer: String(l), concept: String(c), state: "ready" });
    } catch (e) {
      if (overlayKey !== key) return;
      strip.el.dataset.state = "error";
      overlayTitle.replaceChildren(errorBox(e, "overlay-error"));
    }
  }

  function onSelection(): void {
    renderPickers();
    renderStats();
    void updateChart();
    void updateOverlay();
  }

  view.listen(controls, "click", (e) => {
    const b = (e.target as HTMLElement).closest<HTMLElement>("button.lw-pick");
    if (b?.dataset.layer) view.set({ selected_layer: Number(b.dataset.layer) });
    else if (b?.dataset.index) view.set({ selected_concept: Number(b.dataset.index) });
  });
  view.on(["selected_layer", "selected_concept", "rows"], onSelection);
  view.on(["tokens", "has_trace"], () => {
    textVersion++;
    cosines = null;
    paint(strip.spans);
    void updateOverlay();
  });
  view.on("selected_token", renderTokenValue);
  view.on(["model_name", "target", "alpha", "n_random"], renderHeader);
  renderHeader();
  onSelection();
  return () => bokehViews.forEach((v) => v.remove());
}

export default defineView({ name: "concepts", mount });
