// LensView: the logit lens. A grid of layers × positions, each cell the top token after that layer
// (the residual stream through the final norm and unembedding) shaded by its probability. Layers
// stream in one by one; click a cell for its top-k. Linked to the token selection.

import type { RenderProps } from "@anywidget/types";
import { Client } from "../shared/client";
import { injectStyle, sharedCss } from "../shared/style";
import { appendVisibleToken, el, renderTokenStrip, setSelected, textStripOptions, type TokenTraits, visibleText } from "../shared/tokens";
import { floats, ints } from "../shared/wire";
import { columnWindow, probColor, shorten } from "./grid";

interface LensModel extends TokenTraits {
  selected_layer: number;
  n_layers: number;
  k: number;
}

const COLUMNS = 48; // positions shown at once; the window follows the selection

const css = `
.lw-lens .lw-grid-wrap { overflow-x: auto; margin-top: 8px; }
.lw-lens table { border-collapse: collapse; font-family: var(--lw-mono); font-size: 0.9em; }
.lw-lens th { font-weight: 400; color: var(--lw-fg-muted); padding: 1px 4px; white-space: pre; }
.lw-lens th.lw-col { max-width: 6em; overflow: hidden; text-overflow: ellipsis; }
.lw-lens th.lw-col.lw-selected { color: var(--lw-fg); font-weight: 600; }
.lw-lens td {
  border: 1px solid var(--lw-border); padding: 0 3px; min-width: 3.5em; max-width: 6em; height: 1.6em;
  white-space: pre; overflow: hidden; cursor: pointer;
}
.lw-lens td.lw-pending { background: var(--lw-tint); }
.lw-lens td.lw-selected { outline: 2px solid var(--lw-accent); outline-offset: -2px; }
.lw-lens td.lw-in-col { box-shadow: inset 0 0 0 9999px rgba(128, 128, 128, 0.08); }
.lw-lens .lw-nav { display: flex; gap: 8px; align-items: center; margin-top: 6px; }
.lw-lens button { font: inherit; color: inherit; background: var(--lw-tint); border: 1px solid var(--lw-border); border-radius: 4px; }
.lw-lens .lw-topk { margin-top: 8px; max-width: 480px; }
.lw-lens .lw-topk-row { display: grid; grid-template-columns: 2em minmax(6em, 12em) minmax(60px, 1fr) 5.5em; column-gap: 8px; align-items: center; }
.lw-lens .lw-topk-row .lw-tok { font-family: var(--lw-mono); white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.lw-lens .lw-topk-row .lw-prob { text-align: right; font-variant-numeric: tabular-nums; }
`;

function intOr(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isInteger(v) ? v : fallback;
}

function render({ model, el: root }: RenderProps<LensModel>): () => void {
  root.classList.add("lw-root", "lw-lens");
  injectStyle(root, sharedCss + css);

  const header = el("div", "lw-header");
  const strip = el("div", "lw-strip");
  strip.dataset.testid = "token-strip";
  const status = el("div", "lw-muted");
  status.dataset.testid = "progress";
  const nav = el("div", "lw-nav");
  const left = el("button", "", "◀");
  const right = el("button", "", "▶");
  const range = el("span", "lw-muted");
  nav.append(left, range, right);
  const wrap = el("div", "lw-grid-wrap");
  const table = el("table");
  table.dataset.testid = "lens-grid";
  wrap.append(table);
  const topk = el("div", "lw-topk");
  topk.dataset.testid = "lens-topk";
  topk.setAttribute("aria-live", "polite");
  root.append(header, strip, status, nav, wrap, topk);

  const client = new Client(model);
  // Per layer: the top token id and its probability at every position (filled as chunks arrive).
  let ids: (Int32Array | undefined)[] = [];
  let probs: (Float32Array | undefined)[] = [];
  const vocab = new Map<number, string>();
  let spans: HTMLSpanElement[] = [];
  let start = 0;
  let cellKey = "";

  const tokens = (): string[] => model.get("tokens") ?? [];
  const selected = (): number => intOr(model.get("selected_token"), -1);
  const layer = (): number => intOr(model.get("selected_layer"), -1);
  const nLayers = (): number => intOr(model.get("n_layers"), 0);

  function set(changes: Partial<LensModel>): void {
    for (const [key, value] of Object.entries(changes)) model.set(key as keyof LensModel, value as never);
    model.save_changes();
  }

  function renderHeader(): void {
    header.replaceChildren();
    const name = model.get("model_name");
    if (name) header.append(el("span", "lw-model", name), " · ");
    header.append(`logit lens: the top next-token guess after each of ${nLayers()} layers, at ${tokens().length} positions`);
  }

  function renderStrip(): void {
    spans = renderTokenStrip(strip, tokens(), {
      ...textStripOptions(model),
      selected: selected(),
      onSelect: (i) => set({ selected_token: i }),
    });
  }

  function renderGrid(): void {
    const list = tokens();
    const [s, e] = columnWindow(list.length, COLUMNS, start, selected());
    start = s;
    range.textContent = `positions ${s}–${e - 1} of ${list.length}`;
    left.disabled = s <= 0;
    right.disabled = e >= list.length;
    const head = el("tr");
    head.append(el("th", "", "layer"));
    for (let p = s; p < e; p++) {
      const th = el("th", p === selected() ? "lw-col lw-selected" : "lw-col", visibleText(list[p] ?? ""));
      th.title = `#${p}`;
      head.append(th);
    }
    const rows: HTMLElement[] = [head];
    for (let l = nLayers() - 1; l >= 0; l--) {
      const tr = el("tr");
      tr.append(el("th", "", String(l)));
      const lid = ids[l];
      const lp = probs[l];
      for (let p = s; p < e; p++) {
        const td = el("td");
        td.dataset.testid = "lens-cell";
        td.dataset.layer = String(l);
        td.dataset.pos = String(p);
        if (lid && lp) {
          const id = lid[p]!;
          const name = vocab.get(id) ?? `<${id}>`;
          td.textContent = shorten(visibleText(name));
          td.dataset.tokenId = String(id);
          td.dataset.prob = String(lp[p]);
          td.style.background = probColor(lp[p]!);
          td.title = `layer ${l}, position ${p}: ${visibleText(name)} ${(lp[p]! * 100).toFixed(1)}%`;
        } else {
          td.classList.add("lw-pending");
        }
        if (p === selected()) td.classList.add("lw-in-col");
        if (p === selected() && l === layer()) td.classList.add("lw-selected");
        td.addEventListener("click", () => set({ selected_layer: l, selected_token: p }));
        tr.append(td);
      }
      rows.push(tr);
    }
    table.replaceChildren(...rows);
  }

  async function loadLens(): Promise<void> {
    const n = nLayers();
    ids = new Array(n).fill(undefined);
    probs = new Array(n).fill(undefined);
    vocab.clear();
    status.dataset.state = "loading";
    status.dataset.done = "0";
    status.dataset.total = String(n);
    status.textContent = `Computing the lens… 0/${n} layers`;
    renderGrid();
    try {
      const response = await client.request(
        "lens",
        "lens",
        {},
        ({ done, total }) => {
          status.dataset.done = String(done);
          status.textContent = `Computing the lens… ${done}/${total} layers`;
        },
        {
          onChunk: (msg, arrays) => {
            const l = intOr(msg["layer"], -1);
            if (l < 0 || l >= n) return;
            const names = (msg["vocab"] as Record<string, string> | undefined) ?? {};
            for (const [id, name] of Object.entries(names)) vocab.set(Number(id), String(name));
            ids[l] = ints(arrays, "ids");
            probs[l] = floats(arrays, "probs");
            renderGrid();
          },
        },
      );
      if (response === null) return;
      status.dataset.state = "ready";
      status.dataset.done = String(n);
      status.textContent = "";
    } catch (e) {
      status.dataset.state = "error";
      status.replaceChildren(el("div", "lw-error", e instanceof Error ? e.message : String(e)));
    }
  }

  async function updateTopk(): Promise<void> {
    const l = layer();
    const p = selected();
    const k = intOr(model.get("k"), 10);
    const key = `${l}:${p}:${k}:${tokens().length}`;
    if (key === cellKey) return;
    cellKey = key;
    if (l < 0 || p < 0) {
      client.cancel("cell");
      topk.dataset.state = "idle";
      topk.replaceChildren(el("div", "lw-hint", "Click a cell to see the top tokens at that layer and position."));
      return;
    }
    topk.dataset.state = "loading";
    topk.dataset.layer = String(l);
    topk.dataset.pos = String(p);
    const title = el("h4", "", `After layer ${l}, position ${p} `);
    const quote = el("span", "lw-mono", "“");
    appendVisibleToken(quote, tokens()[p] ?? "");
    quote.append("”");
    title.append(quote);
    topk.replaceChildren(title, el("div", "lw-loading", "Computing…"));
    try {
      const response = await client.request("cell", "cell", { layer: l, position: p, k });
      if (response === null || cellKey !== key) return;
      const cellIds = ints(response.arrays, "ids");
      const cellProbs = floats(response.arrays, "probs");
      const names: unknown[] = Array.isArray(response.msg["tokens"]) ? (response.msg["tokens"] as unknown[]) : [];
      const rows = Array.from(cellIds, (id, r) => {
        const row = el("div", "lw-topk-row");
        row.dataset.testid = "lens-topk-row";
        row.dataset.tokenId = String(id);
        row.dataset.prob = String(cellProbs[r]);
        const tok = el("span", "lw-tok");
        appendVisibleToken(tok, String(names[r] ?? `<${id}>`));
        const track = el("div", "lw-bar-track");
        const bar = el("div", "lw-bar");
        bar.style.width = `${Math.min(1, Math.max(0, cellProbs[r]!)) * 100}%`;
        track.append(bar);
        row.append(el("span", "lw-muted", String(r + 1)), tok, track, el("span", "lw-prob", `${(cellProbs[r]! * 100).toFixed(2)}%`));
        return row;
      });
      topk.dataset.state = "ready";
      topk.replaceChildren(title, ...rows);
    } catch (e) {
      if (cellKey !== key) return;
      topk.dataset.state = "error";
      topk.replaceChildren(title, el("div", "lw-error", e instanceof Error ? e.message : String(e)));
    }
  }

  left.addEventListener("click", () => {
    start = Math.max(0, start - COLUMNS);
    renderGrid();
  });
  right.addEventListener("click", () => {
    start = Math.min(Math.max(0, tokens().length - COLUMNS), start + COLUMNS);
    renderGrid();
  });

  const onTokens = (): void => {
    renderHeader();
    renderStrip();
    void loadLens();
    void updateTopk();
  };
  const onSelection = (): void => {
    setSelected(spans, selected());
    renderGrid();
    void updateTopk();
  };
  const handlers: [string, () => void][] = [
    ["change:tokens", onTokens],
    ["change:selected_token", onSelection],
    ["change:selected_layer", onSelection],
    ["change:k", () => void updateTopk()],
    ["change:model_name", renderHeader],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);

  renderHeader();
  renderStrip();
  void loadLens();
  void updateTopk();

  return () => {
    for (const [event, handler] of handlers) model.off(event as `change:${keyof LensModel}`, handler);
    client.dispose();
  };
}

export default { render };
