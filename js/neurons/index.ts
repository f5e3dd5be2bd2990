// NeuronView: for the selected token and layer, the MLP neurons that fire most (or add most to a
// target logit); click a neuron to see its activation over the text, its histogram, the tokens it
// promotes and suppresses, and (with a corpus index) its top examples. The kernel sends one layer's
// summary at a time ([pos, k] top neurons), cached here, so clicking tokens needs no round trip.
// In a mixture of experts a neuron is one expert's hidden unit (labelled E<expert>·<unit>), and the
// router box lists where the selected token was sent in every layer, with the routing weights.

import { formatValue, scaleFor, splitByLengths } from "../shared/activations";
import { batched } from "../shared/batch";
import { activationOverlay, exampleRow, histogram, vocabulary, type Example } from "../shared/dashboard";
import { fillOptions, panelState, tagged } from "../shared/dom";
import { searchBox } from "../shared/search";
import { appendVisibleToken, el, quotedToken, rankRow, setSelected } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, ints } from "../shared/wire";
import { neuronLabel, neuronName, routeLine, rowAt, type Experts } from "./format";
import "./style.css";

interface Route {
  experts: Int32Array; // [layer, k]
  weights: Float32Array; // [layer, k]
  shared?: Float32Array; // [layer]: the shared expert's gate (Qwen2-MoE)
}

interface LayerData {
  k: number;
  neurons: Int32Array; // [pos, k]
  values: Float32Array; // [pos, k]
}

function mount(view: View): void {
  const layer = (): number => view.int("selected_layer");
  const neuron = (): number => view.int("selected_neuron");
  const nLayers = (): number => view.int("n_layers", 0);
  const k = (): number => view.int("k", 20);
  const indexLayers = (): number[] => view.list<number>("index_layers");
  const experts = (): Experts => ({
    n_experts: view.int("n_experts", 0),
    d_expert: view.int("d_expert", 0),
    d_shared: view.int("d_shared", 0),
  });

  const prev = tagged(el("button", "", "◀"), "layer-prev");
  prev.title = "Previous layer (↑)";
  const layerSelect = tagged(el("select"), "layer-select");
  const next = tagged(el("button", "", "▶"), "layer-next");
  next.title = "Next layer (↓)";
  const rankSelect = tagged(el("select"), "rank-by");
  const controls = el("div", "lw-controls");
  controls.append(el("span", "lw-muted", "layer"), prev, layerSelect, next, rankSelect);

  const tokenPanel = tagged(el("div", "lw-token-neurons"), "token-neurons");
  const routerBox = tagged(el("div", "lw-router"), "router");
  const neuronPanel = tagged(el("div", "lw-neuron-panel"), "neuron-panel");
  neuronPanel.setAttribute("aria-live", "polite");
  const left = el("div", "lw-left");
  left.append(tokenPanel, routerBox);
  const body = el("div", "lw-body");
  body.append(left, neuronPanel);

  type Found = { layer: number; neuron: number; count: number; activation: number };
  const search = searchBox<Found>(view, {
    button: "find neurons",
    title: "Neurons that peak on a token (corpus index)",
    row: (r) => ({
      text: `layer ${r.layer}, neuron ${r.neuron}: ${r.count} of its top examples, up to ${formatValue(r.activation)}`,
      data: { layer: r.layer, neuron: r.neuron },
    }),
    none: () => "No neuron of the index peaks on that token.",
    pick: (data) => view.set({ selected_layer: Number(data.layer), selected_neuron: Number(data.neuron) }),
  }).el;
  view.root.append(controls, body, search);

  const layers = new Map<number, LayerData>();
  const routes = new Map<number, Route>(); // by position
  let textVersion = 0;
  let tokenKey = "";
  let neuronKey = "";
  let routerKey = "";

  function renderHeader(): void {
    const idx = indexLayers();
    const moe = experts();
    const shape = moe.n_experts
      ? ` (${moe.n_experts} experts × ${moe.d_expert} units${moe.d_shared ? ` + ${moe.d_shared} shared` : ""})`
      : "";
    view.setHeader(
      `${view.tokens().length} tokens · ${nLayers()} layers × ${view.int("d_mlp", 0)} neurons${shape}` +
        (idx.length ? ` · corpus index on layers ${idx.join(", ")}` : ""),
    );
  }

  function renderControls(): void {
    const n = nLayers();
    if (layerSelect.options.length !== n) fillOptions(layerSelect, Array.from({ length: n }, (_, l) => [String(l), String(l)] as const));
    const choices = view.list<[string, string]>("rank_by_choices");
    if (rankSelect.options.length !== choices.length) fillOptions(rankSelect, choices);
    layerSelect.value = String(layer());
    rankSelect.value = String(view.get("rank_by"));
    prev.disabled = layer() <= 0;
    next.disabled = layer() >= n - 1;
    search.hidden = !indexLayers().length;
  }

  const schedule = batched(() => {
    renderControls();
    void updateTokenPanel();
    void updateNeuronPanel();
    void updateRouter();
  });

  async function layerData(l: number): Promise<LayerData | null> {
    const cached = layers.get(l);
    if (cached && cached.k >= k()) return cached;
    const response = await view.client.request("layer", "layer", { layer: l, k: k() });
    if (response === null) return null;
    const data = { k: Number(response.msg["k"]), neurons: ints(response.arrays, "neurons"), values: floats(response.arrays, "values") };
    layers.set(l, data);
    return data;
  }

  function neuronRow(rank: number, n: number, activation: number, scale: number, contribution?: number): HTMLElement {
    const shown = contribution ?? activation;
    const row = tagged(rankRow(rank, neuronLabel(n, experts()), Math.abs(shown) / scale, formatValue(shown)), "neuron-row", {
      neuron: n,
      value: activation,
    });
    row.classList.add("lw-neuron-row");
    row.classList.toggle("lw-selected", n === neuron());
    row.querySelector(".lw-bar")!.classList.toggle("lw-neg", shown < 0);
    row.title = `${neuronName(n, experts())}: activation ${formatValue(activation)}`;
    if (contribution !== undefined) {
      row.dataset.contribution = String(contribution);
      row.title += `, contribution ${formatValue(contribution)}`;
    }
    return row;
  }

  async function updateTokenPanel(): Promise<void> {
    const l = layer();
    const i = view.selected();
    const rank = String(view.get("rank_by"));
    const target = view.int("target");
    const key = `${textVersion}:${l}:${i}:${rank}:${k()}:${target}`;
    if (key === tokenKey) return;
    tokenKey = key;
    if (l < 0) return panelState(tokenPanel, "idle", el("div", "lw-hint", "Pick a layer."));
    if (i < 0) {
      panelState(tokenPanel, "idle", el("div", "lw-hint", "Click a token to see the neurons that fire on it."));
      void layerData(l).catch(() => undefined); // prefetch, so the first click is instant
      return;
    }
    const title = quotedToken("lw-title", `Layer ${l}, token #${i} `, view.tokens()[i] ?? "");
    Object.assign(tokenPanel.dataset, { layer: String(l), position: String(i) });
    panelState(tokenPanel, "loading", title, el("div", "lw-loading", `Loading layer ${l}…`));
    try {
      if (rank !== "contribution") {
        const data = await layerData(l);
        if (data === null || tokenKey !== key) return;
        const rows = rowAt(data.neurons, data.values, data.k, i).slice(0, k());
        const scale = scaleFor(rows.map((r) => r.value));
        panelState(tokenPanel, "ready", title, ...rows.map((r, j) => neuronRow(j + 1, r.neuron, r.value, scale)));
        return;
      }
      const response = await view.client.request("token", "contributions", { layer: l, position: i, target, k: k() });
      if (response === null || tokenKey !== key) return;
      const acts = floats(response.arrays, "activations");
      const contribs = floats(response.arrays, "contributions");
      const about = tagged(el("div", "lw-muted", "to the logit of "), "target", { target: response.msg["target"] });
      const t = el("span", "lw-mono");
      appendVisibleToken(t, String(response.msg["target_token"] ?? ""));
      about.append(t, " (activation × gradient)");
      const scale = scaleFor(contribs);
      const rows = Array.from(ints(response.arrays, "neurons"), (n, r) => neuronRow(r + 1, n, acts[r]!, scale, contribs[r]!));
      panelState(tokenPanel, "ready", title, about, ...rows);
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
    for (const row of tokenPanel.querySelectorAll<HTMLElement>(".lw-neuron-row")) {
      row.classList.toggle("lw-selected", row.dataset.neuron === String(n));
    }
    if (l < 0 || n < 0) {
      view.client.cancel("neuron");
      view.client.cancel("examples");
      return panelState(neuronPanel, "idle", el("div", "lw-hint", "Click a neuron to see it over the text."));
    }
    Object.assign(neuronPanel.dataset, { layer: String(l), neuron: String(n) });
    const title = el("h4", "", `Layer ${l}, ${neuronName(n, experts())}`);
    panelState(neuronPanel, "loading", title, el("div", "lw-loading", "Computing…"));
    try {
      const response = await view.client.request("neuron", "neuron", { layer: l, neuron: n, k: 10, bins: 30 });
      if (response === null || neuronKey !== key) return;
      const m = response.msg;
      const acts = floats(response.arrays, "activations");
      const children: (Node | string)[] = [
        title,
        activationOverlay(view, acts, scaleFor(acts)),
        el("h4", "", "Histogram"),
        ...histogram(ints(response.arrays, "hist"), Number(m["hist_lo"]), Number(m["hist_hi"]), "activation over the text"),
        vocabulary(m, response.arrays, "logit per unit"),
      ];
      const stats = m["stats"] as Record<string, number> | undefined;
      if (stats) {
        const f = (name: string): string => formatValue(stats[name] ?? NaN);
        const line = `corpus: mean ${f("mean")}, std ${f("std")}, max ${f("max")}, active (> 0) on ${((stats["positive"] ?? 0) * 100).toFixed(1)}% of ${stats["tokens"]} tokens`;
        children.push(tagged(el("div", "lw-muted", line), "stats"));
      }
      const examples = tagged(el("div"), "examples");
      const indexed = indexLayers().includes(l);
      if (indexed) children.push(el("h4", "", "Top examples in the corpus"), examples);
      panelState(neuronPanel, "ready", ...children);
      if (indexed) void loadExamples(l, n, key, examples);
    } catch (e) {
      if (neuronKey === key) panelState(neuronPanel, "error", title, errorBox(e, "neuron-error"));
    }
  }

  // The router box: where the selected token went in every layer (mixtures of experts only).
  async function updateRouter(): Promise<void> {
    const i = view.selected();
    const moe = experts().n_experts > 0;
    const key = `${textVersion}:${i}:${layer()}`;
    routerBox.hidden = !moe;
    if (!moe || key === routerKey) return;
    routerKey = key;
    if (i < 0) return panelState(routerBox, "idle", el("div", "lw-hint", "Click a token to see the experts it was sent to."));
    const title = quotedToken("lw-title", `Router, token #${i} `, view.tokens()[i] ?? "");
    Object.assign(routerBox.dataset, { position: String(i) });
    try {
      let route = routes.get(i);
      if (!route) {
        panelState(routerBox, "loading", title, el("div", "lw-loading", "Loading the router…"));
        const response = await view.client.request("router", "router", { position: i });
        if (response === null || routerKey !== key) return;
        route = { experts: ints(response.arrays, "experts"), weights: floats(response.arrays, "weights") };
        if (Object.prototype.hasOwnProperty.call(response.arrays, "shared_gate")) route.shared = floats(response.arrays, "shared_gate");
        routes.set(i, route);
      }
      const k = route.experts.length / Math.max(1, nLayers());
      const rows = Array.from({ length: nLayers() }, (_, l) => {
        const row = tagged(el("div", "lw-router-row", `layer ${l}: ${routeLine(route.experts, route.weights, k, l, route.shared)}`), "router-row", {
          layer: l,
        });
        row.classList.toggle("lw-selected", l === layer());
        return row;
      });
      const note = el("div", "lw-muted", "experts and routing weights (what multiplies each expert's output)");
      panelState(routerBox, "ready", title, note, ...rows);
    } catch (e) {
      if (routerKey === key) panelState(routerBox, "error", title, errorBox(e, "router-error"));
    }
  }

  async function loadExamples(l: number, n: number, key: string, box: HTMLElement): Promise<void> {
    panelState(box, "loading", el("div", "lw-loading", "Loading examples…"));
    try {
      const response = await view.client.request("examples", "examples", { layer: l, neuron: n });
      if (response === null || neuronKey !== key) return;
      const examples = (response.msg["examples"] as Example[] | undefined) ?? [];
      const acts = splitByLengths(floats(response.arrays, "activations"), examples.map((e) => e.tokens.length));
      const scale = scaleFor(examples.map((e) => e.activation));
      panelState(box, "ready", ...examples.map((e, r) => exampleRow(e, acts[r]!, scale, "example")));
    } catch (e) {
      panelState(box, "error", errorBox(e, "examples-error"));
    }
  }

  function stepLayer(delta: number): void {
    const to = Math.min(nLayers() - 1, Math.max(0, layer() + delta));
    if (to !== layer()) view.set({ selected_layer: to });
  }

  view.listen(prev, "click", () => stepLayer(-1));
  view.listen(next, "click", () => stepLayer(1));
  view.listen(layerSelect, "change", () => view.set({ selected_layer: Number(layerSelect.value) }));
  view.listen(rankSelect, "change", () => view.set({ rank_by: rankSelect.value }));
  view.listen(tokenPanel, "click", (e) => {
    const row = (e.target as HTMLElement).closest<HTMLElement>(".lw-neuron-row");
    if (row) view.set({ selected_neuron: Number(row.dataset.neuron) });
  });
  // ↑ ↓ step through the layers (a select keeps its own arrow keys).
  view.listen(view.root, "keydown", (e) => {
    if ((e.key !== "ArrowUp" && e.key !== "ArrowDown") || (e.target as HTMLElement).closest("select")) return;
    e.preventDefault();
    e.stopPropagation();
    stepLayer(e.key === "ArrowUp" ? -1 : 1);
  });

  view.on(["tokens", "token_ids"], () => {
    textVersion++;
    layers.clear();
    routes.clear();
    renderHeader();
    schedule();
  });
  view.on("selected_token", () => {
    setSelected([...neuronPanel.querySelectorAll<HTMLElement>("[data-testid=overlay-token]")], view.selected());
    schedule();
  });
  view.on(["selected_layer", "selected_neuron", "rank_by", "rank_by_choices", "target", "k"], schedule);
  view.on(["index_layers", "model_name", "n_experts", "d_expert", "d_shared"], () => (renderHeader(), schedule()));
  renderHeader();
  schedule();
}

export default defineView({
  name: "neurons",
  selectionStrip: "click one, or use the arrow keys; ↑ ↓ change the layer",
  mount,
});
