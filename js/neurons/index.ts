// NeuronView: for the selected token and layer, the MLP neurons that fire most (or add most to a
// target logit); click a neuron to see its activation over the text, its histogram, the tokens it
// promotes and suppresses, and (with a corpus index) its top examples. The kernel sends one layer's
// summary at a time ([pos, k] top neurons), cached here, so clicking tokens needs no round trip.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { appendVisibleToken, el, renderTokenStrip, setSelected, textStripOptions, tokenKeyTarget, type TokenTraits } from "../shared/tokens";
import { floats, ints } from "../shared/wire";
import { activationColor, formatValue, maxAbs, rowAt, splitByLengths } from "./format";

interface NeuronModel extends TokenTraits {
  selected_layer: number;
  n_layers: number;
  d_mlp: number;
  selected_neuron: number;
  rank_by: string;
  target: number;
  k: number;
  index_layers: number[];
}

interface LayerData {
  k: number;
  neurons: Int32Array; // [pos, k]
  values: Float32Array; // [pos, k]
  neuronMax: Float32Array; // [neuron]
}

interface ExampleField {
  text_index: number;
  position: number;
  activation: number;
  tokens: string[];
  peak: number;
}

const css = `
.lw-neurons .lw-controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 6px; }
.lw-neurons button, .lw-neurons select, .lw-neurons input {
  font: inherit; color: inherit; background: var(--lw-tint); border: 1px solid var(--lw-border);
  border-radius: 4px; padding: 1px 6px;
}
.lw-neurons button:hover { background: var(--lw-tint-strong); cursor: pointer; }
.lw-neurons .lw-body { display: grid; grid-template-columns: minmax(220px, 320px) minmax(0, 1fr); gap: 14px; margin-top: 8px; }
.lw-neurons h4 { margin: 0 0 4px 0; font-size: 1em; font-weight: 600; }
.lw-neurons .lw-neuron-row {
  display: grid; grid-template-columns: 4.5em minmax(50px, 1fr) 5em; column-gap: 6px; align-items: center;
  padding: 1px 4px; border-radius: 3px; cursor: pointer; font-variant-numeric: tabular-nums;
}
.lw-neurons .lw-neuron-row:hover { background: var(--lw-tint); }
.lw-neurons .lw-neuron-row.lw-selected { background: var(--lw-selected-tint); outline: 1px solid var(--lw-accent); }
.lw-neurons .lw-neuron-row .lw-value { text-align: right; }
.lw-neurons .lw-bar.lw-neg { background: #2a6edc; }
.lw-neurons .lw-overlay { font-family: var(--lw-mono); line-height: 1.9; margin-bottom: 8px; }
.lw-neurons .lw-overlay .lw-token { cursor: default; }
.lw-neurons .lw-hist { display: flex; align-items: flex-end; gap: 1px; height: 48px; margin: 4px 0 0 0; max-width: 360px; }
.lw-neurons .lw-hist-bar { flex: 1; background: var(--lw-accent); opacity: 0.7; min-height: 1px; }
.lw-neurons .lw-hist-axis { display: flex; justify-content: space-between; max-width: 360px; color: var(--lw-fg-muted); font-size: 0.9em; }
.lw-neurons .lw-vocab { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; max-width: 520px; }
.lw-neurons .lw-vocab-row { display: flex; justify-content: space-between; gap: 8px; font-variant-numeric: tabular-nums; }
.lw-neurons .lw-vocab-row .lw-tok { font-family: var(--lw-mono); white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.lw-neurons .lw-example { font-family: var(--lw-mono); margin: 2px 0; }
.lw-neurons .lw-example .lw-peak { outline: 2px solid var(--lw-fg); }
.lw-neurons .lw-example .lw-act { color: var(--lw-fg-muted); margin-right: 8px; font-family: inherit; }
.lw-neurons .lw-search { margin-top: 10px; }
.lw-neurons .lw-search-result { cursor: pointer; padding: 1px 4px; border-radius: 3px; }
.lw-neurons .lw-search-result:hover { background: var(--lw-tint); }
`;

function intOr(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isInteger(v) ? v : fallback;
}

function render({ model, el: root }: RenderProps<NeuronModel>): () => void {
  root.classList.add("lw-root", "lw-neurons");
  injectStyle(root, sharedCss + css);

  const header = el("div", "lw-header");
  header.dataset.testid = "header";
  const controls = el("div", "lw-controls");
  const prev = el("button", "", "◀");
  prev.dataset.testid = "layer-prev";
  prev.title = "Previous layer (↑)";
  const layerSelect = el("select");
  layerSelect.dataset.testid = "layer-select";
  const next = el("button", "", "▶");
  next.dataset.testid = "layer-next";
  next.title = "Next layer (↓)";
  const rankSelect = el("select");
  rankSelect.dataset.testid = "rank-by";
  for (const [value, label] of [
    ["activation", "rank by activation"],
    ["contribution", "rank by contribution to the prediction"],
  ] as const) {
    const option = el("option", "", label);
    option.value = value;
    rankSelect.append(option);
  }
  controls.append(el("span", "lw-muted", "layer"), prev, layerSelect, next, rankSelect);

  const strip = el("div", "lw-strip");
  strip.dataset.testid = "token-strip";
  strip.tabIndex = 0;
  strip.setAttribute("aria-label", "Tokens: click one, or use the arrow keys; ↑ ↓ change the layer");
  strip.setAttribute("data-lm-suppress-shortcuts", "true");

  const body = el("div", "lw-body");
  const tokenPanel = el("div", "lw-token-neurons");
  tokenPanel.dataset.testid = "token-neurons";
  const neuronPanel = el("div", "lw-neuron-panel");
  neuronPanel.dataset.testid = "neuron-panel";
  neuronPanel.setAttribute("aria-live", "polite");
  body.append(tokenPanel, neuronPanel);

  const search = el("div", "lw-search");
  search.dataset.testid = "search";
  const searchInput = el("input");
  searchInput.dataset.testid = "search-input";
  searchInput.placeholder = "token, e.g. ␣Paris (leading space: type it)";
  searchInput.setAttribute("data-lm-suppress-shortcuts", "true");
  const searchButton = el("button", "", "find neurons");
  searchButton.dataset.testid = "search-button";
  const searchResults = el("div", "lw-search-results");
  searchResults.dataset.testid = "search-results";
  search.append(el("h4", "", "Neurons that peak on a token (corpus index)"), searchInput, " ", searchButton, searchResults);

  root.append(header, controls, strip, body, search);

  const client = new Client(model);
  const layers = new Map<number, LayerData>();
  let spans: HTMLSpanElement[] = [];
  let textVersion = 0;
  let tokenKey = "";
  let neuronKey = "";
  let scheduled = false;

  const tokens = (): string[] => model.get("tokens") ?? [];
  const selected = (): number => intOr(model.get("selected_token"), -1);
  const layer = (): number => intOr(model.get("selected_layer"), -1);
  const nLayers = (): number => intOr(model.get("n_layers"), 0);
  const neuron = (): number => intOr(model.get("selected_neuron"), -1);
  const k = (): number => intOr(model.get("k"), 20);
  const indexLayers = (): number[] => model.get("index_layers") ?? [];

  function set(changes: Partial<NeuronModel>): void {
    for (const [key, value] of Object.entries(changes)) model.set(key as keyof NeuronModel, value as never);
    model.save_changes();
  }

  function renderHeader(): void {
    header.replaceChildren();
    const name = model.get("model_name");
    if (name) header.append(el("span", "lw-model", name), " · ");
    header.append(`${tokens().length} tokens · ${nLayers()} layers × ${intOr(model.get("d_mlp"), 0)} neurons`);
    const idx = indexLayers();
    if (idx.length) header.append(` · corpus index on layers ${idx.join(", ")}`);
  }

  function renderControls(): void {
    const n = nLayers();
    if (layerSelect.options.length !== n) {
      layerSelect.replaceChildren();
      for (let l = 0; l < n; l++) {
        const option = el("option", "", String(l));
        option.value = String(l);
        layerSelect.append(option);
      }
    }
    layerSelect.value = String(layer());
    prev.disabled = layer() <= 0;
    next.disabled = layer() >= n - 1;
    rankSelect.value = model.get("rank_by") === "contribution" ? "contribution" : "activation";
    search.style.display = indexLayers().length ? "" : "none";
  }

  function renderStrip(): void {
    spans = renderTokenStrip(strip, tokens(), {
      ...textStripOptions(model),
      selected: selected(),
      onSelect: (i) => set({ selected_token: i }),
    });
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      renderControls();
      void updateTokenPanel();
      void updateNeuronPanel();
    });
  }

  function panelState(panel: HTMLElement, state: string, ...children: (Node | string)[]): void {
    panel.dataset.state = state;
    panel.replaceChildren(...children);
  }

  function errorBox(e: unknown, testid: string): HTMLElement {
    const box = el("div", "lw-error", e instanceof Error ? e.message : String(e));
    box.dataset.testid = testid;
    return box;
  }

  async function layerData(l: number): Promise<LayerData | null> {
    const cached = layers.get(l);
    if (cached && cached.k >= k()) return cached;
    const response = await client.request("layer", "layer", { layer: l, k: k() });
    if (response === null) return null;
    const data: LayerData = {
      k: intOr(response.msg["k"], k()),
      neurons: ints(response.arrays, "neurons"),
      values: floats(response.arrays, "values"),
      neuronMax: floats(response.arrays, "neuron_max"),
    };
    layers.set(l, data);
    return data;
  }

  function neuronRow(n: number, activation: number, scale: number, contribution?: number): HTMLElement {
    const row = el("div", "lw-neuron-row");
    row.dataset.testid = "neuron-row";
    row.dataset.neuron = String(n);
    row.dataset.value = String(activation);
    if (contribution !== undefined) row.dataset.contribution = String(contribution);
    if (n === neuron()) row.classList.add("lw-selected");
    const shown = contribution ?? activation;
    const track = el("div", "lw-bar-track");
    const bar = el("div", shown < 0 ? "lw-bar lw-neg" : "lw-bar");
    bar.style.width = `${Math.min(1, Math.abs(shown) / scale) * 100}%`;
    track.append(bar);
    row.title = `neuron ${n}: activation ${formatValue(activation)}${
      contribution !== undefined ? `, contribution ${formatValue(contribution)}` : ""
    }`;
    row.append(el("span", "", `N${n}`), track, el("span", "lw-value", formatValue(shown)));
    row.addEventListener("click", () => set({ selected_neuron: n }));
    return row;
  }

  async function updateTokenPanel(): Promise<void> {
    const l = layer();
    const i = selected();
    const rank = model.get("rank_by") === "contribution" ? "contribution" : "activation";
    const key = `${textVersion}:${l}:${i}:${rank}:${k()}:${intOr(model.get("target"), -1)}`;
    if (key === tokenKey) return;
    tokenKey = key;
    if (l < 0) {
      panelState(tokenPanel, "idle", el("div", "lw-hint", "Pick a layer."));
      return;
    }
    if (i < 0) {
      // Prefetch the layer so the first click is instant.
      panelState(tokenPanel, "idle", el("div", "lw-hint", "Click a token to see the neurons that fire on it."));
      void layerData(l).catch(() => undefined);
      return;
    }
    const tok = tokens()[i] ?? "";
    const title = el("h4", "", `Layer ${l}, token #${i} `);
    const quote = el("span", "lw-mono", "“");
    appendVisibleToken(quote, tok);
    quote.append("”");
    title.append(quote);
    tokenPanel.dataset.layer = String(l);
    tokenPanel.dataset.position = String(i);
    panelState(tokenPanel, "loading", title, el("div", "lw-loading", `Loading layer ${l}…`));
    try {
      if (rank === "activation") {
        const data = await layerData(l);
        if (data === null || tokenKey !== key) return;
        const rows = rowAt(data.neurons, data.values, data.k, i).slice(0, k());
        const scale = maxAbs(rows.map((r) => r.value));
        panelState(tokenPanel, "ready", title, ...rows.map((r) => neuronRow(r.neuron, r.value, scale)));
      } else {
        const response = await client.request("token", "contributions", {
          layer: l,
          position: i,
          target: intOr(model.get("target"), -1),
          k: k(),
        });
        if (response === null || tokenKey !== key) return;
        const ns = ints(response.arrays, "neurons");
        const acts = floats(response.arrays, "activations");
        const contribs = floats(response.arrays, "contributions");
        const target = el("div", "lw-muted", "to the logit of ");
        const t = el("span", "lw-mono");
        appendVisibleToken(t, String(response.msg["target_token"] ?? ""));
        target.append(t, " (activation × gradient)");
        target.dataset.testid = "target";
        target.dataset.target = String(response.msg["target"]);
        const scale = maxAbs(contribs);
        const rows = Array.from(ns, (n, r) => neuronRow(n, acts[r]!, scale, contribs[r]!));
        panelState(tokenPanel, "ready", title, target, ...rows);
      }
    } catch (e) {
      if (tokenKey === key) panelState(tokenPanel, "error", title, errorBox(e, "token-error"));
    }
  }

  async function updateNeuronPanel(): Promise<void> {
    const l = layer();
    const n = neuron();
    const key = `${textVersion}:${l}:${n}`;
    if (key === neuronKey) return;
    neuronKey = key;
    for (const row of tokenPanel.querySelectorAll<HTMLElement>("[data-testid=neuron-row]")) {
      row.classList.toggle("lw-selected", row.dataset.neuron === String(n));
    }
    if (l < 0 || n < 0) {
      client.cancel("neuron");
      client.cancel("examples");
      panelState(neuronPanel, "idle", el("div", "lw-hint", "Click a neuron to see it over the text."));
      return;
    }
    neuronPanel.dataset.layer = String(l);
    neuronPanel.dataset.neuron = String(n);
    const title = el("h4", "", `Layer ${l}, neuron ${n}`);
    panelState(neuronPanel, "loading", title, el("div", "lw-loading", "Computing…"));
    try {
      const response = await client.request("neuron", "neuron", { layer: l, neuron: n, k: 10, bins: 30 });
      if (response === null || neuronKey !== key) return;
      const acts = floats(response.arrays, "activations");
      const scale = maxAbs(acts);
      const overlay = el("div", "lw-overlay lw-strip");
      overlay.dataset.testid = "overlay";
      tokens().forEach((tok, i) => {
        const span = el("span", "lw-token");
        span.dataset.testid = "overlay-token";
        span.dataset.index = String(i);
        span.dataset.value = String(acts[i]);
        span.style.background = activationColor(acts[i]!, scale);
        span.title = `#${i}  activation ${formatValue(acts[i]!)}`;
        if (i === selected()) span.classList.add("lw-selected");
        appendVisibleToken(span, tok);
        span.addEventListener("click", () => set({ selected_token: i }));
        overlay.append(span);
      });

      const counts = ints(response.arrays, "hist");
      const peak = Math.max(1, ...counts);
      const hist = el("div", "lw-hist");
      hist.dataset.testid = "histogram";
      const lo = Number(response.msg["hist_lo"]);
      const hi = Number(response.msg["hist_hi"]);
      const width = (hi - lo) / Math.max(1, counts.length);
      counts.forEach((c, b) => {
        const bar = el("div", "lw-hist-bar");
        bar.dataset.testid = "hist-bar";
        bar.dataset.count = String(c);
        bar.style.height = `${(c / peak) * 100}%`;
        bar.title = `${c} token${c === 1 ? "" : "s"} in [${formatValue(lo + b * width)}, ${formatValue(lo + (b + 1) * width)})`;
        hist.append(bar);
      });
      const axis = el("div", "lw-hist-axis");
      axis.append(el("span", "", formatValue(lo)), el("span", "", "activation over the text"), el("span", "", formatValue(hi)));

      const vocab = el("div", "lw-vocab");
      vocab.append(
        vocabList("Promotes", "promoted-token", response.msg["promoted_tokens"], floats(response.arrays, "promoted_logits")),
        vocabList("Suppresses", "suppressed-token", response.msg["suppressed_tokens"], floats(response.arrays, "suppressed_logits")),
      );
      const children: (Node | string)[] = [title, overlay, el("h4", "", "Histogram"), hist, axis, vocab];
      const stats = response.msg["stats"] as Record<string, number> | undefined;
      if (stats) {
        const line = el("div", "lw-muted");
        line.dataset.testid = "stats";
        line.textContent = `corpus: mean ${formatValue(stats["mean"] ?? NaN)}, std ${formatValue(stats["std"] ?? NaN)}, max ${formatValue(stats["max"] ?? NaN)}, active (> 0) on ${((stats["positive"] ?? 0) * 100).toFixed(1)}% of ${stats["tokens"]} tokens`;
        children.push(line);
      }
      const examplesBox = el("div", "lw-examples");
      examplesBox.dataset.testid = "examples";
      if (indexLayers().includes(l)) children.push(el("h4", "", "Top examples in the corpus"), examplesBox);
      panelState(neuronPanel, "ready", ...children);
      if (indexLayers().includes(l)) void loadExamples(l, n, key, examplesBox);
    } catch (e) {
      if (neuronKey === key) panelState(neuronPanel, "error", title, errorBox(e, "neuron-error"));
    }
  }

  function vocabList(label: string, testid: string, names: unknown, logits: Float32Array): HTMLElement {
    const box = el("div");
    box.append(el("h4", "", `${label} (logit per unit)`));
    const list: unknown[] = Array.isArray(names) ? names : [];
    list.forEach((name, r) => {
      const row = el("div", "lw-vocab-row");
      row.dataset.testid = testid;
      const tok = el("span", "lw-tok");
      appendVisibleToken(tok, String(name));
      row.append(tok, el("span", "", formatValue(logits[r] ?? NaN)));
      box.append(row);
    });
    return box;
  }

  async function loadExamples(l: number, n: number, key: string, box: HTMLElement): Promise<void> {
    box.dataset.state = "loading";
    box.replaceChildren(el("div", "lw-loading", "Loading examples…"));
    try {
      const response = await client.request("examples", "examples", { layer: l, neuron: n });
      if (response === null || neuronKey !== key) return;
      const examples = (response.msg["examples"] as ExampleField[] | undefined) ?? [];
      const acts = splitByLengths(
        floats(response.arrays, "activations"),
        examples.map((e) => e.tokens.length),
      );
      const scale = maxAbs(examples.map((e) => e.activation));
      box.replaceChildren(
        ...examples.map((e, r) => {
          const row = el("div", "lw-example");
          row.dataset.testid = "example";
          row.dataset.activation = String(e.activation);
          row.dataset.textIndex = String(e.text_index);
          row.append(el("span", "lw-act", formatValue(e.activation)));
          e.tokens.forEach((tok, j) => {
            const span = el("span", j === e.peak ? "lw-token lw-peak" : "lw-token");
            const v = acts[r]![j]!;
            span.style.background = activationColor(v, scale);
            span.title = `activation ${formatValue(v)}`;
            appendVisibleToken(span, tok);
            row.append(span);
          });
          return row;
        }),
      );
      box.dataset.state = "ready";
    } catch (e) {
      box.dataset.state = "error";
      box.replaceChildren(errorBox(e, "examples-error"));
    }
  }

  async function runSearch(): Promise<void> {
    const token = searchInput.value.replace(/␣/g, " ");
    if (!token) return;
    searchResults.dataset.state = "loading";
    searchResults.replaceChildren(el("div", "lw-loading", "Searching…"));
    try {
      const response = await client.request("search", "search", { token, k: 10 });
      if (response === null) return;
      const results = (response.msg["results"] as { layer: number; neuron: number; count: number; activation: number }[]) ?? [];
      if (!results.length) {
        searchResults.replaceChildren(el("div", "lw-hint", "No neuron of the index peaks on that token."));
      } else {
        searchResults.replaceChildren(
          ...results.map((r) => {
            const row = el(
              "div",
              "lw-search-result",
              `layer ${r.layer}, neuron ${r.neuron}: ${r.count} of its top examples, up to ${formatValue(r.activation)}`,
            );
            row.dataset.testid = "search-result";
            row.dataset.layer = String(r.layer);
            row.dataset.neuron = String(r.neuron);
            row.addEventListener("click", () => set({ selected_layer: r.layer, selected_neuron: r.neuron }));
            return row;
          }),
        );
      }
      searchResults.dataset.state = "ready";
    } catch (e) {
      searchResults.dataset.state = "error";
      searchResults.replaceChildren(errorBox(e, "search-error"));
    }
  }

  function stepLayer(delta: number): void {
    const to = Math.min(nLayers() - 1, Math.max(0, layer() + delta));
    if (to !== layer()) set({ selected_layer: to });
  }

  function onKey(event: KeyboardEvent): void {
    const i = selected();
    let to: number | null = i;
    if (event.key === "ArrowUp" || event.key === "ArrowDown") stepLayer(event.key === "ArrowUp" ? -1 : 1);
    else if (event.key === "ArrowLeft" || event.key === "ArrowRight") to = tokenKeyTarget(event.key, i, spans.length);
    else return;
    event.preventDefault();
    event.stopPropagation();
    if (to !== null && to !== i && to >= 0) set({ selected_token: to });
  }

  prev.addEventListener("click", () => stepLayer(-1));
  next.addEventListener("click", () => stepLayer(1));
  layerSelect.addEventListener("change", () => set({ selected_layer: Number(layerSelect.value) }));
  rankSelect.addEventListener("change", () => set({ rank_by: rankSelect.value }));
  searchButton.addEventListener("click", () => void runSearch());
  searchInput.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") void runSearch();
  });
  strip.addEventListener("keydown", onKey);

  const onTokens = (): void => {
    textVersion++;
    layers.clear();
    renderHeader();
    renderStrip();
    schedule();
  };
  const onSelected = (): void => {
    setSelected(spans, selected());
    setSelected([...neuronPanel.querySelectorAll<HTMLElement>("[data-testid=overlay-token]")], selected());
    schedule();
  };
  const handlers: [string, () => void][] = [
    ["change:tokens", onTokens],
    ["change:token_ids", onTokens],
    ["change:selected_token", onSelected],
    ["change:selected_layer", schedule],
    ["change:selected_neuron", schedule],
    ["change:rank_by", schedule],
    ["change:target", schedule],
    ["change:k", schedule],
    ["change:index_layers", () => (renderHeader(), schedule())],
    ["change:model_name", renderHeader],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);

  renderHeader();
  renderStrip();
  schedule();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof NeuronModel}`, handler);
    strip.removeEventListener("keydown", onKey);
    client.dispose();
  };
}

export default { render };
