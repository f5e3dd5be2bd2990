// FeatureView: the SAE features active on the selected token (from codes the kernel encoded once), and a
// selected feature's dashboard: its activation over the text, histogram and density, the tokens its decoder
// row promotes and suppresses, corpus examples by quantile (with a FeatureIndex), a search by token, and
// "steer with this feature": baseline and steered generations, in the columns SteeringView draws too
// (js/shared/generation.ts).

import { formatValue, scaleFor, splitByLengths } from "../shared/activations";
import { batched } from "../shared/batch";
import { activationOverlay, exampleRow, histogram, vocabulary, type Example } from "../shared/dashboard";
import { fillOptions, panelState, tagged } from "../shared/dom";
import { effectNode, generationColumns, steerAnswer } from "../shared/generation";
import { searchBox } from "../shared/search";
import { nearestStep } from "../shared/steps";
import { el, quotedToken, rankRow, setSelected } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, ints } from "../shared/wire";
import { bandTitle, binLabels, densityText, readScale, scaleLabel } from "./format";
import "./style.css";

const PROMPT_TAIL = 24; // prompt tokens shown before a steered generation

interface Band {
  start: number;
  stop: number;
  lo: number;
  hi: number;
}

function mount(view: View): void {
  const feature = (): number => view.int("selected_feature");
  const k = (): number => view.int("k", 20);
  const unread = (): Set<number> => new Set(view.list<number>("unread"));

  const tokenPanel = tagged(el("div", "lw-token-features"), "token-features");
  const dashboard = tagged(el("div", "lw-dashboard"), "dashboard");
  dashboard.setAttribute("aria-live", "polite");
  const body = el("div", "lw-body");
  body.append(tokenPanel, dashboard);

  type Found = { feature: number; count: number; activation: number };
  const search = searchBox<Found>(view, {
    button: "find features",
    row: (r, answer) => ({
      text:
        `feature ${r.feature}: ${r.count} ` +
        (answer["source"] === "index" ? "of its top examples" : `of the token's ${String(answer["positions"])} place(s) in this text`) +
        `, up to ${formatValue(r.activation)}`,
      data: { feature: r.feature },
    }),
    none: (answer) =>
      answer["source"] === "index" ? "No feature's top examples peak on that token." : "That token does not occur in this text, or no feature fires on it.",
    pick: (data) => view.set({ selected_feature: Number(data.feature) }),
  });
  view.root.append(body, search.el);

  let textVersion = 0;
  let tokenKey = "";
  let featureKey = "";

  function renderHeader(): void {
    const note = String(view.get("index_note") ?? "");
    view.setHeader(
      `${String(view.get("sae_name") ?? "SAE")} · ${view.tokens().length} tokens · ${view.int("n_features", 0)} features` +
        (note ? " · no corpus index" : " · corpus index"),
    );
    search.title.textContent = note
      ? "Features that fire on a token of this text (no corpus index)"
      : "Features whose top corpus examples peak on a token";
  }

  const schedule = batched(() => {
    void updateTokenPanel();
    void updateDashboard();
  });

  function skipNote(): HTMLElement {
    return tagged(
      el(
        "div",
        "lw-skip-note",
        "The SAE does not read this token: its activation is a massive one (an attention sink, like the first " +
          "position of this model, ten to hundreds of times the others' norm), so the SAE was trained and is indexed " +
          "without such tokens. The features below are what its encoder makes of that vector, not features of the text.",
      ),
      "skip-note",
    );
  }


  async function updateTokenPanel(): Promise<void> {
    const i = view.selected();
    const key = `${textVersion}:${i}:${k()}`;
    if (key === tokenKey) return;
    tokenKey = key;
    if (i < 0) return panelState(tokenPanel, "idle", el("div", "lw-hint", "Click a token to see the features active on it."));
    const title = quotedToken("lw-title", `Layer ${view.int("layer", 0)}, token #${i} `, view.tokens()[i] ?? "");
    tokenPanel.dataset.position = String(i);
    panelState(tokenPanel, "loading", title, el("div", "lw-loading", "Loading…"));
    try {
      const response = await view.client.request("token", "token", { position: i, k: k() });
      if (response === null || tokenKey !== key) return;
      const features = ints(response.arrays, "features");
      const acts = floats(response.arrays, "activations");
      const skipped = response.msg["skipped"] === true;
      const scale = scaleFor(acts);
      const rows = Array.from(features, (f, r) => {
        const row = tagged(rankRow(r + 1, `F${f}`, acts[r]! / scale, formatValue(acts[r]!)), "feature-row", { feature: f, value: acts[r] });
        row.classList.add("lw-feature-row");
        row.classList.toggle("lw-selected", f === feature());
        row.classList.toggle("lw-skipped", skipped);
        row.title = `feature ${f}: activation ${formatValue(acts[r]!)}`;
        return row;
      });
      const none = rows.length ? [] : [el("div", "lw-hint", "No feature is active here.")];
      panelState(tokenPanel, skipped ? "skipped" : "ready", title, ...(skipped ? [skipNote()] : []), ...rows, ...none);
    } catch (e) {
      if (tokenKey === key) panelState(tokenPanel, "error", title, errorBox(e, "token-error"));
    }
  }

  async function updateDashboard(): Promise<void> {
    const f = feature();
    const key = `${textVersion}:${f}`;
    if (key === featureKey) return;
    featureKey = key;
    for (const row of tokenPanel.querySelectorAll<HTMLElement>(".lw-feature-row")) {
      row.classList.toggle("lw-selected", row.dataset.feature === String(f));
    }
    if (f < 0) {
      view.client.cancel("feature");
      return panelState(dashboard, "idle", el("div", "lw-hint", "Click a feature to see its dashboard."));
    }
    dashboard.dataset.feature = String(f);
    const title = el("h4", "", `Feature ${f} (layer ${view.int("layer", 0)})`);
    panelState(dashboard, "loading", title, el("div", "lw-loading", "Loading…"));
    try {
      // The params come from the state (vocab_k, text_bins), as an exported file's recorded keys do.
      const params = { feature: f, k: view.int("vocab_k"), bins: view.int("text_bins") };
      const response = await view.client.request("feature", "feature", params);
      if (response === null || featureKey !== key) return;
      const m = response.msg;
      const acts = floats(response.arrays, "activations");
      const children: (Node | string)[] = [title];

      // Over the current text.
      children.push(
        tagged(
          el("div", "lw-muted", `On this text: ${densityText(Number(m["text_fires"]), Number(m["text_tokens"]))}, max ${formatValue(Number(m["text_max"]))}`),
          "text-density",
        ),
      );
      const skip = unread();
      children.push(activationOverlay(view, acts, readScale(acts, skip), skip, "not read by the SAE (a massive activation)"));
      children.push(
        el("h4", "", "Histogram of its non-zero activations on this text"),
        ...histogram(ints(response.arrays, "hist"), Number(m["hist_lo"]), Number(m["hist_hi"]), "activation"),
      );

      // Through the unembedding.
      if (typeof m["vocab_note"] === "string") children.push(tagged(el("div", "lw-hint", m["vocab_note"]), "vocab-note"));
      else children.push(vocabulary(m, response.arrays, "logit per unit, through the final norm's gain"));

      // In the corpus.
      const corpus = tagged(el("div", "lw-corpus"), "corpus");
      if (typeof m["index_note"] === "string") {
        corpus.append(el("h4", "", "In the corpus"), tagged(el("div", "lw-missing", m["index_note"]), "index-missing"));
      } else corpus.append(...corpusSection(m, response.arrays));
      children.push(corpus);
      children.push(steerBox(f));
      panelState(dashboard, "ready", ...children);
    } catch (e) {
      if (featureKey === key) panelState(dashboard, "error", title, errorBox(e, "feature-error"));
    }
  }

  function corpusSection(m: Record<string, unknown>, arrays: Parameters<typeof floats>[0]): (Node | string)[] {
    const stats = (m["stats"] ?? {}) as Record<string, number | null>;
    const top = (m["top_examples"] as Example[] | undefined) ?? [];
    const sample = (m["sample_examples"] as Example[] | undefined) ?? [];
    const bands = (m["bands"] as Band[] | undefined) ?? [];
    const fmt = (name: string): string => formatValue(Number(stats[name] ?? NaN));
    const density = Number(stats["density"] ?? 0);
    const line =
      `Corpus (${String(m["index_texts"])} texts): ${densityText(Number(stats["fires"] ?? 0), Number(stats["tokens"] ?? 0))}` +
      (density > 0 ? `, log₁₀ density ${Math.log10(density).toFixed(2)}` : "") +
      `; when it fires: mean ${fmt("mean")}, std ${fmt("std")}, max ${fmt("max")}`;
    const out: (Node | string)[] = [el("h4", "", "In the corpus"), tagged(el("div", "lw-muted", line), "stats")];
    const edges = floats(arrays, "index_edges");
    const counts = ints(arrays, "index_hist");
    const [lo, hi] = [edges[0] ?? 0, edges[edges.length - 1] ?? 1];
    out.push(...histogram(counts, lo, hi, "activation (log scale)", { labels: binLabels(edges), testid: "index-histogram", barTestid: "index-hist-bar" }));
    const flat = floats(arrays, "example_activations");
    const acts = splitByLengths(flat, [...top, ...sample].map((e) => e.tokens.length));
    const scale = scaleFor([...top, ...sample].map((e) => e.activation));
    const topBox = tagged(el("div"), "top-examples");
    topBox.append(...top.map((e, r) => exampleRow(e, acts[r]!, scale, "example")));
    out.push(el("h4", "", "Top examples"), topBox);
    if (!top.length) topBox.append(el("div", "lw-hint", "It never fires in the corpus."));
    if (bands.length) {
      out.push(el("h4", "", "Examples by activation quantile (a uniform sample of where it fires)"));
      bands.forEach((b, i) => {
        const band = tagged(el("div", "lw-band"), "band", { lo: b.lo, hi: b.hi });
        band.append(el("div", "lw-muted", bandTitle(i, bands.length, b.lo, b.hi)));
        for (let r = b.start; r < b.stop; r++) band.append(exampleRow(sample[r]!, acts[top.length + r]!, scale, "band-example"));
        out.push(band);
      });
    }
    return out;
  }

  function steerBox(f: number): HTMLElement {
    const box = tagged(el("div", "lw-steer"), "steer");
    box.append(el("h4", "", "Steer with this feature"));
    if (view.get("can_steer") !== true) {
      box.append(el("div", "lw-hint", "This model has no causal language-model head: nothing to generate."));
      return box;
    }
    const scales = view.list<number>("steer_scales");
    const select = tagged(el("select"), "steer-scale");
    fillOptions(select, scales.map((s, i) => [String(i), scaleLabel(s)] as const));
    select.value = String(nearestStep(scales, 1));
    const button = tagged(el("button", "", "steer with this feature"), "steer-button");
    const result = tagged(el("div", "lw-steer-result"), "steer-result");
    result.dataset.state = "idle";
    const controls = el("div", "lw-controls");
    controls.append(
      el("span", "lw-muted", `add α × its decoder row to the stream entering layer ${view.int("layer", 0) + 1}, α = `),
      select,
      button,
    );
    box.append(controls, result);
    view.listen(button, "click", () => void runSteer(f, Number(select.value), result));
    return box;
  }

  async function runSteer(f: number, step: number, result: HTMLElement): Promise<void> {
    panelState(result, "loading", el("div", "lw-loading", `Generating ${view.int("steer_tokens", 0)} tokens with and without the feature…`));
    result.dataset.step = String(step);
    try {
      const r = await view.client.request("steer", "steer", { feature: f, step });
      if (r === null) return;
      const answer = steerAnswer(r.msg);
      const columns = generationColumns(PROMPT_TAIL);
      columns.show(view.tokens(), answer, ["baseline (α = 0)", `steered (${scaleLabel(Number(r.msg["scale"]))})`]);
      const line = effectNode(answer.effect, `α = ${answer.alpha.toPrecision(3)}: `);
      result.dataset.changed = String(answer.effect.changed);
      panelState(result, answer.effect.noEffect ? "no-effect" : "ready", line, columns.el);
    } catch (e) {
      panelState(result, "error", errorBox(e, "steer-error"));
    }
  }

  view.listen(tokenPanel, "click", (e) => {
    const row = (e.target as HTMLElement).closest<HTMLElement>(".lw-feature-row");
    if (row) view.set({ selected_feature: Number(row.dataset.feature) });
  });

  view.on(["tokens", "token_ids"], () => {
    textVersion++;
    renderHeader();
    schedule();
  });
  view.on("selected_token", () => {
    setSelected([...dashboard.querySelectorAll<HTMLElement>("[data-testid=overlay-token]")], view.selected());
    schedule();
  });
  view.on(["selected_feature", "k"], schedule);
  view.on(["index_note", "sae_name", "n_features", "model_name"], () => (renderHeader(), schedule()));
  renderHeader();
  schedule();
}

export default defineView({
  name: "features",
  selectionStrip: "click a token to list the SAE features active on it, or use the arrow keys",
  mount,
});
