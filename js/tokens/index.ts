// TokensView: the text as the model's tokens; click one (or set selected_token from Python) to see
// the model's top-k next-token predictions after it, computed by the kernel on request.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { appendVisibleToken, el, renderTokenStrip, setSelected, textStripOptions, tokenKeyTarget, type TokenTraits } from "../shared/tokens";
import { floats, ints } from "../shared/wire";

interface TokensModel extends TokenTraits {
  k: number;
}

const css = `
.lw-tokens .lw-strip { margin-bottom: 10px; }
.lw-tokens .lw-predictions { min-height: 1.5em; max-width: 640px; }
.lw-tokens .lw-pred-title { margin-bottom: 4px; }
.lw-tokens .lw-pred-title .lw-quote { font-family: var(--lw-mono); white-space: pre; }
.lw-tokens .lw-pred-row {
  display: grid;
  grid-template-columns: 2.2em minmax(6em, 14em) minmax(60px, 1fr) 5.5em;
  align-items: center;
  column-gap: 8px;
  padding: 1px 0;
}
.lw-tokens .lw-pred-row .lw-rank { color: var(--lw-fg-muted); text-align: right; font-variant-numeric: tabular-nums; }
.lw-tokens .lw-pred-row .lw-pred-token {
  font-family: var(--lw-mono);
  white-space: pre;
  overflow: hidden;
  text-overflow: ellipsis;
}
.lw-tokens .lw-pred-row.lw-actual .lw-pred-token { font-weight: 700; }
.lw-tokens .lw-pred-row.lw-actual .lw-pred-token::after { content: " ✓"; color: var(--lw-accent); }
.lw-tokens .lw-pred-row .lw-prob { text-align: right; font-variant-numeric: tabular-nums; }
`;

function percent(p: number): string {
  return `${(p * 100).toFixed(2)}%`;
}

function render({ model, el: root }: RenderProps<TokensModel>): () => void {
  root.classList.add("lw-root", "lw-tokens");
  injectStyle(root, sharedCss + css);

  const header = el("div", "lw-header");
  header.dataset.testid = "header";
  const strip = el("div", "lw-strip");
  strip.dataset.testid = "token-strip";
  strip.tabIndex = 0;
  strip.setAttribute("aria-label", "Tokens: click one, or use the arrow keys, to see the next-token predictions");
  // JupyterLab leaves keys pressed in here to the widget (arrow keys move the selection).
  strip.setAttribute("data-lm-suppress-shortcuts", "true");
  const panel = el("div", "lw-predictions");
  panel.dataset.testid = "predictions";
  panel.setAttribute("aria-live", "polite");
  root.append(header, strip, panel);

  const client = new Client(model);
  let spans: HTMLSpanElement[] = [];
  let textVersion = 0; // bumped when the tokens change, so the same position is fetched anew
  let shownKey = ""; // what the panel shows or is fetching: "version:position:k"
  let scheduled = false;

  const tokens = (): string[] => model.get("tokens") ?? [];
  const selected = (): number => {
    const i = model.get("selected_token");
    return typeof i === "number" && Number.isInteger(i) ? i : -1;
  };

  function renderHeader(): void {
    const n = tokens().length;
    const generated = (model.get("generated") ?? []).filter(Boolean).length;
    header.replaceChildren();
    const name = model.get("model_name");
    if (name) header.append(el("span", "lw-model", name), " · ");
    let count = `${n} token${n === 1 ? "" : "s"}`;
    if (generated) count += ` (${generated} generated)`;
    header.append(el("span", "lw-count", count));
  }

  function renderStrip(): void {
    const list = tokens();
    if (list.length === 0) {
      strip.replaceChildren(el("span", "lw-empty", "(no tokens)"));
      spans = [];
      return;
    }
    spans = renderTokenStrip(strip, list, {
      ...textStripOptions(model),
      selected: selected(),
      onSelect: select,
    });
  }

  function select(i: number): void {
    if (i === selected()) {
      // Clicking the selected token again retries a failed request.
      if (panel.dataset.state === "error") {
        shownKey = "";
        schedulePredictions();
      }
      return;
    }
    model.set("selected_token", i);
    model.save_changes();
  }

  function setPanel(state: "idle" | "loading" | "ready" | "error", ...children: (Node | string)[]): void {
    panel.dataset.state = state;
    panel.replaceChildren(...children);
  }

  function showError(message: string): void {
    const box = el("div", "lw-error", message);
    box.dataset.testid = "predictions-error";
    setPanel("error", box);
  }

  /** Coalesce the change events of one sync (tokens and selection together) into one request. */
  function schedulePredictions(): void {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      void updatePredictions();
    });
  }

  async function updatePredictions(): Promise<void> {
    const list = tokens();
    const i = selected();
    const kRaw = model.get("k");
    const k = typeof kRaw === "number" ? kRaw : 5;
    const key = `${textVersion}:${i}:${k}`;
    if (key === shownKey) return;
    shownKey = key;

    if (i < 0) {
      client.cancel("predictions");
      setPanel("idle", el("div", "lw-hint", list.length ? "Click a token to see what the model predicts next." : ""));
      return;
    }
    if (i >= list.length) {
      client.cancel("predictions");
      showError(`token ${i} is out of range: the text has tokens 0..${list.length - 1}`);
      return;
    }

    const token = list[i] ?? "";
    const loading = el("div", "lw-loading", `Computing next-token predictions after #${i}…`);
    setPanel("loading", loading);
    let response;
    try {
      response = await client.request("predictions", "predictions", { position: i, k }, ({ done, total }) => {
        loading.textContent = `Computing next-token predictions after #${i}… ${done}/${total}`;
      });
    } catch (e) {
      if (shownKey === key) showError(e instanceof Error ? e.message : String(e));
      return;
    }
    if (response === null || shownKey !== key) return; // stale: a newer request owns the panel

    try {
      const ids = ints(response.arrays, "ids");
      const probs = floats(response.arrays, "probs");
      const rawTokens = response.msg["tokens"];
      const names: unknown[] = Array.isArray(rawTokens) ? rawTokens : [];
      const next = i + 1 < list.length ? model.get("token_ids")?.[i + 1] : undefined;

      const title = el("div", "lw-pred-title", `Next-token predictions after #${i} `);
      const quote = el("span", "lw-quote", "“");
      appendVisibleToken(quote, token);
      quote.append("”");
      title.append(quote);

      const rows: HTMLElement[] = [];
      const n = Math.min(ids.length, probs.length);
      for (let r = 0; r < n; r++) {
        const id = ids[r]!;
        const p = probs[r]!;
        const row = el("div", "lw-pred-row");
        row.dataset.testid = "prediction-row";
        row.dataset.rank = String(r + 1);
        row.dataset.tokenId = String(id);
        row.dataset.prob = String(p);
        const name = names[r];
        const cell = el("span", "lw-pred-token");
        if (typeof name === "string") appendVisibleToken(cell, name);
        else cell.textContent = `id ${id}`;
        cell.title = `id ${id}`;
        if (id === next) {
          row.classList.add("lw-actual");
          row.dataset.actual = "true";
          cell.title += "  (the token that follows in the text)";
        }
        const track = el("div", "lw-bar-track");
        const bar = el("div", "lw-bar");
        bar.style.width = `${Number.isFinite(p) ? Math.min(1, Math.max(0, p)) * 100 : 0}%`;
        track.append(bar);
        row.append(el("span", "lw-rank", String(r + 1)), cell, track, el("span", "lw-prob", percent(p)));
        rows.push(row);
      }
      setPanel("ready", title, ...rows);
    } catch (e) {
      showError(e instanceof Error ? e.message : String(e));
    }
  }

  function moveSelection(event: KeyboardEvent): void {
    const i = selected();
    const to = tokenKeyTarget(event.key, i, spans.length);
    if (to === null) return;
    event.preventDefault();
    event.stopPropagation();
    if (to !== i) select(to);
    spans[to]?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  const onTokens = (): void => {
    textVersion++;
    renderHeader();
    renderStrip();
    schedulePredictions();
  };
  const onDetails = (): void => {
    renderHeader();
    renderStrip();
  };
  const onSelected = (): void => {
    setSelected(spans, selected());
    schedulePredictions();
  };
  const onK = (): void => schedulePredictions();

  const handlers: [string, () => void][] = [
    ["change:tokens", onTokens],
    ["change:token_ids", onTokens],
    ["change:offsets", onDetails],
    ["change:generated", onDetails],
    ["change:model_name", renderHeader],
    ["change:selected_token", onSelected],
    ["change:k", onK],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);
  strip.addEventListener("keydown", moveSelection);

  renderHeader();
  renderStrip();
  schedulePredictions();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof TokensModel}`, handler);
    strip.removeEventListener("keydown", moveSelection);
    client.dispose();
  };
}

export default { render };
