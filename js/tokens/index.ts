// TokensView: the text as the model's tokens; click one (or set selected_token from Python) to see
// the model's top-k next-token predictions after it, computed by the kernel on request.

import { batched } from "../shared/batch";
import { el, quotedToken, rankRow } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats, ints } from "../shared/wire";
import "./style.css";

function mount(view: View): void {
  const panel = el("div", "lw-predictions");
  panel.dataset.testid = "predictions";
  panel.setAttribute("aria-live", "polite");
  view.root.append(panel);
  let textVersion = 0; // bumped when the tokens change, so the same position is fetched anew
  let shownKey = ""; // what the panel shows or is fetching: "version:position:k"

  function renderHeader(): void {
    const n = view.tokens().length;
    const generated = view.list("generated").filter(Boolean).length;
    view.setHeader(`${n} token${n === 1 ? "" : "s"}${generated ? ` (${generated} generated)` : ""}`);
  }

  function setPanel(state: "idle" | "loading" | "ready" | "error", ...children: (Node | string)[]): void {
    panel.dataset.state = state;
    panel.replaceChildren(...children);
  }

  /** Coalesce the change events of one sync (tokens and selection together) into one request. */
  const schedule = batched(() => void update());

  async function update(): Promise<void> {
    const list = view.tokens();
    const i = view.selected();
    const k = view.int("k", 5);
    const key = `${textVersion}:${i}:${k}`;
    if (key === shownKey) return;
    shownKey = key;
    if (i < 0 || i >= list.length) {
      view.client.cancel("predictions");
      setPanel("idle", el("div", "lw-hint", list.length ? "Click a token to see what the model predicts next." : ""));
      return;
    }
    const loading = el("div", "lw-loading", `Computing next-token predictions after #${i}…`);
    setPanel("loading", loading);
    try {
      const response = await view.client.request("predictions", "predictions", { position: i, k }, ({ done, total }) => {
        loading.textContent = `Computing next-token predictions after #${i}… ${done}/${total}`;
      });
      if (response === null || shownKey !== key) return; // stale: a newer request owns the panel
      const ids = ints(response.arrays, "ids");
      const probs = floats(response.arrays, "probs");
      const names = Array.isArray(response.msg["tokens"]) ? (response.msg["tokens"] as unknown[]) : [];
      const next = i + 1 < list.length ? view.list<number>("token_ids")[i + 1] : undefined;
      const rows = Array.from(ids, (id, r) => {
        const p = probs[r]!;
        const name = names[r];
        const row = rankRow(r + 1, typeof name === "string" ? name : `id ${id}`, p, `${(p * 100).toFixed(2)}%`);
        Object.assign(row.dataset, { testid: "prediction-row", rank: String(r + 1), tokenId: String(id), prob: String(p) });
        row.children[1]!.setAttribute("title", `id ${id}${id === next ? "  (the token that follows in the text)" : ""}`);
        if (id === next) {
          row.classList.add("lw-actual");
          row.dataset.actual = "true";
        }
        return row;
      });
      setPanel("ready", quotedToken("lw-pred-title", `Next-token predictions after #${i} `, list[i] ?? ""), ...rows);
    } catch (e) {
      if (shownKey === key) setPanel("error", errorBox(e, "predictions-error"));
    }
  }

  view.on(["tokens", "token_ids"], () => {
    textVersion++;
    renderHeader();
    schedule();
  });
  view.on(["generated", "model_name"], renderHeader);
  view.on(["selected_token", "k"], schedule);
  // Clicking the selected token again retries a failed request.
  view.listen(view.root, "click", (e) => {
    const target = e.target as HTMLElement;
    if (panel.dataset.state === "error" && target.closest(".lw-token.lw-selected")) {
      shownKey = "";
      schedule();
    }
  });
  renderHeader();
  schedule();
}

export default defineView({ name: "tokens", selectionStrip: "click one, or use the arrow keys, to see the next-token predictions", mount });
