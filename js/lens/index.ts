// LensView: the logit lens. A grid of layers × positions, each cell the top token after that layer
// (the residual stream through the final norm and unembedding) shaded by its probability. Layers
// stream in one by one; click a cell (it sets selected_layer and selected_token) for its top-k.

import { el, quotedToken, rankRow, visibleText } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, ints } from "../shared/wire";
import { columnWindow, probColor, shorten } from "./grid";
import "./style.css";

const COLUMNS = 48; // positions shown at once; the window follows the selection
const BLOCKS_AFTER_MS = 300; // a moved window asks for its blocks this long after the click

function mount(view: View): void {
  const status = el("div", "lw-muted");
  status.dataset.testid = "progress";
  const left = el("button", "", "◀");
  const right = el("button", "", "▶");
  const range = el("span", "lw-muted");
  const nav = el("div", "lw-nav");
  nav.append(left, range, right);
  const table = el("table");
  table.dataset.testid = "lens-grid";
  const wrap = el("div", "lw-grid-wrap");
  wrap.append(table);
  const topk = el("div", "lw-topk");
  topk.dataset.testid = "lens-topk";
  topk.setAttribute("aria-live", "polite");
  view.root.append(status, nav, wrap, topk);

  // Per block of positions (the kernel's `block` trait), per layer: the top token id and its
  // probability at each of the block's positions, filled as chunks arrive.
  interface Block {
    ids: (Int32Array | undefined)[];
    probs: (Float32Array | undefined)[];
    done: boolean;
  }
  const blocks = new Map<number, Block>();
  // Single columns asked for on a click, before their block arrives: position -> [layer] arrays.
  const columns = new Map<number, { ids: Int32Array; probs: Float32Array }>();
  const vocab = new Map<number, string>();
  let start = 0;
  let cellKey = "";
  let shownBlocks = "";
  let blocksTimer: ReturnType<typeof setTimeout> | undefined;
  const nLayers = (): number => view.int("n_layers", 0);
  const size = (): number => Math.max(1, view.int("block", COLUMNS));

  function renderHeader(): void {
    view.setHeader(`logit lens: the top next-token guess after each of ${nLayers()} layers, at ${view.tokens().length} positions`);
  }

  function renderGrid(): void {
    const list = view.tokens();
    const selected = view.selected();
    const layer = view.int("selected_layer");
    const [s, e] = columnWindow(list.length, COLUMNS, start, selected);
    start = s;
    range.textContent = `positions ${s}–${e - 1} of ${list.length}`;
    left.disabled = s <= 0;
    right.disabled = e >= list.length;
    const head = el("tr");
    head.append(el("th", "", "layer"));
    for (let p = s; p < e; p++) {
      const th = el("th", p === selected ? "lw-col lw-selected" : "lw-col", visibleText(list[p] ?? ""));
      th.title = `#${p}`;
      head.append(th);
    }
    const rows: HTMLElement[] = [head];
    const B = size();
    for (let l = nLayers() - 1; l >= 0; l--) {
      const tr = el("tr");
      tr.append(el("th", "", String(l)));
      for (let p = s; p < e; p++) {
        const block = blocks.get(Math.floor(p / B));
        const column = block?.done ? undefined : columns.get(p);
        const lid = column ? column.ids : block?.ids[l];
        const lp = column ? column.probs : block?.probs[l];
        const at = column ? l : p % B;
        const td = el("td");
        Object.assign(td.dataset, { testid: "lens-cell", layer: String(l), pos: String(p) });
        if (lid && lp) {
          const id = lid[at]!;
          const prob = lp[at]!;
          const name = visibleText(vocab.get(id) ?? `<${id}>`);
          td.textContent = shorten(name);
          Object.assign(td.dataset, { tokenId: String(id), prob: String(prob) });
          td.style.background = probColor(prob);
          td.title = `layer ${l}, position ${p}: ${name} ${(prob * 100).toFixed(1)}%`;
        } else {
          td.classList.add("lw-pending");
        }
        if (p === selected) td.classList.add("lw-in-col");
        if (p === selected && l === layer) td.classList.add("lw-selected");
        tr.append(td);
      }
      rows.push(tr);
    }
    table.replaceChildren(...rows);
    const [first, last] = [Math.floor(s / B), Math.floor((e - 1) / B)];
    if (`${first}:${last}` !== shownBlocks && e > s) {
      // The first window at once; after a click, a moment later: the clicked column comes first (its own
      // request), the other panels answer the click meanwhile, and keys held down do not queue blocks.
      const wait = shownBlocks === "" ? 0 : BLOCKS_AFTER_MS;
      shownBlocks = `${first}:${last}`;
      clearTimeout(blocksTimer);
      blocksTimer = setTimeout(() => void loadVisible(first, last), wait);
    }
  }

  /** Redraw the grid once per frame however many layers arrived in it (a block streams 30). */
  let frame = 0;
  function scheduleGrid(): void {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      renderGrid();
    });
  }
  view.onDispose(() => {
    cancelAnimationFrame(frame);
    clearTimeout(blocksTimer);
  });

  /**
   * Fetch the blocks the grid shows that are not here yet, the selected token's first, one after the
   * other: the kernel answers one lens request at a time and a newer one cancels the older, so moving
   * on drops what is no longer shown.
   */
  async function loadVisible(first: number, last: number): Promise<void> {
    const n = nLayers();
    const B = size();
    const near = Math.floor(Math.max(0, view.selected()) / B);
    const need: number[] = [];
    for (let b = first; b <= last; b++) if (!blocks.get(b)?.done) need.push(b);
    need.sort((a, b) => Math.abs(a - near) - Math.abs(b - near) || a - b);
    for (const [done, b] of need.entries()) {
      const block: Block = { ids: [], probs: [], done: false };
      blocks.set(b, block);
      Object.assign(status.dataset, { state: "loading", done: String(done), total: String(need.length) });
      status.textContent = `Computing the lens at positions ${b * B}–${Math.min(view.tokens().length, (b + 1) * B) - 1}…`;
      try {
        const response = await view.client.request("lens", "lens", { block: b });
        if (response === null) {
          if (blocks.get(b) === block) blocks.delete(b); // a newer window asked first: fetched again when shown
          return;
        }
        for (const [id, name] of Object.entries(response.msg["vocab"] ?? {})) vocab.set(Number(id), String(name));
        const ids = ints(response.arrays, "ids"); // [layer, position]
        const probs = floats(response.arrays, "probs");
        const width = ids.length / Math.max(1, n);
        for (let l = 0; l < n; l++) {
          block.ids[l] = ids.subarray(l * width, (l + 1) * width);
          block.probs[l] = probs.subarray(l * width, (l + 1) * width);
        }
        block.done = true;
        scheduleGrid();
      } catch (e) {
        blocks.delete(b);
        shownBlocks = ""; // shown again, it is asked again
        status.dataset.state = "error";
        status.replaceChildren(errorBox(e, "lens-error"));
        return;
      }
    }
    Object.assign(status.dataset, { state: "ready", done: String(need.length), total: String(need.length) });
    status.textContent = "";
  }

  async function updateTopk(): Promise<void> {
    const l = view.int("selected_layer");
    const p = view.selected();
    const k = view.int("k", 10);
    const key = `${l}:${p}:${k}:${view.tokens().length}`;
    if (key === cellKey) return;
    cellKey = key;
    if (l < 0 || p < 0) {
      view.client.cancel("cell");
      topk.dataset.state = "idle";
      topk.replaceChildren(el("div", "lw-hint", "Click a cell to see the top tokens at that layer and position."));
      return;
    }
    Object.assign(topk.dataset, { state: "loading", layer: String(l), pos: String(p) });
    const title = quotedToken("lw-topk-title", `After layer ${l}, position ${p} `, view.tokens()[p] ?? "");
    topk.replaceChildren(title, el("div", "lw-loading", "Computing…"));
    try {
      const response = await view.client.request("cell", "cell", { layer: l, position: p, k });
      if (response === null || cellKey !== key) return;
      const cellIds = ints(response.arrays, "ids");
      const cellProbs = floats(response.arrays, "probs");
      const names = Array.isArray(response.msg["tokens"]) ? (response.msg["tokens"] as unknown[]) : [];
      const rows = Array.from(cellIds, (id, r) => {
        const prob = cellProbs[r]!;
        const row = rankRow(r + 1, String(names[r] ?? `<${id}>`), prob, `${(prob * 100).toFixed(2)}%`);
        Object.assign(row.dataset, { testid: "lens-topk-row", tokenId: String(id), prob: String(prob) });
        return row;
      });
      topk.dataset.state = "ready";
      topk.replaceChildren(title, ...rows);
    } catch (e) {
      if (cellKey !== key) return;
      topk.dataset.state = "error";
      topk.replaceChildren(title, errorBox(e, "lens-topk-error"));
    }
  }

  view.listen(left, "click", () => {
    start = Math.max(0, start - COLUMNS);
    renderGrid();
  });
  view.listen(right, "click", () => {
    start = Math.min(Math.max(0, view.tokens().length - COLUMNS), start + COLUMNS);
    renderGrid();
  });
  view.listen(table, "click", (e) => {
    const cell = (e.target as HTMLElement).closest("td");
    if (cell?.dataset.layer) view.set({ selected_layer: Number(cell.dataset.layer), selected_token: Number(cell.dataset.pos) });
  });
  view.on("tokens", () => {
    blocks.clear();
    columns.clear();
    vocab.clear();
    shownBlocks = "";
    renderHeader();
    renderGrid();
    void updateTopk();
  });
  /** The clicked token's column at once (30 unembeddings), while its block of the grid is computed. */
  async function loadColumn(): Promise<void> {
    const p = view.selected();
    if (p < 0 || columns.has(p) || blocks.get(Math.floor(p / size()))?.done) return;
    try {
      const response = await view.client.request("column", "column", { position: p });
      if (response === null) return;
      for (const [id, name] of Object.entries(response.msg["vocab"] ?? {})) vocab.set(Number(id), String(name));
      columns.set(p, { ids: ints(response.arrays, "ids"), probs: floats(response.arrays, "probs") });
      scheduleGrid();
    } catch {
      // The column is only a head start (an exported file does not record it): its block follows.
    }
  }

  view.on(["selected_token", "selected_layer"], () => {
    void loadColumn();
    void updateTopk();
    scheduleGrid(); // drawn in the next frame: the other panels' requests of this click leave first
  });
  view.on("k", () => void updateTopk());
  view.on("model_name", renderHeader);

  renderHeader();
  renderGrid();
  void updateTopk();
}

export default defineView({ name: "lens", selectionStrip: "click one, or use the arrow keys, to follow its column", mount });
