// The search by token of NeuronView and FeatureView: a box where the user types a token, a button, the
// kernel's `search` request, one clickable line per result. The view says what a result's line reads and
// what a click on it selects. Styled by search.css.

import { panelState, tagged } from "./dom";
import { el } from "./tokens";
import { errorBox, type View } from "./view";
import "./search.css";

/** The token to search for as typed: "␣" stands for a space (a leading space is hard to see in a box). */
export function searchToken(typed: string): string {
  return typed.replace(/␣/g, " ");
}

export interface SearchOptions<R> {
  /** The button's text ("find neurons"). */
  button: string;
  /** The heading above the box (the view may change it later through the returned `title`). */
  title?: string;
  /** A result's line, and the data-* attributes a click on it hands to `pick`. */
  row(result: R, answer: Record<string, unknown>): { text: string; data: Record<string, unknown> };
  /** What to say when the answer holds no result. */
  none(answer: Record<string, unknown>): string;
  /** A result line was clicked: its data-* attributes. */
  pick(data: DOMStringMap): void;
}

/**
 * The search box (testids search, search-input, search-button, search-results, search-result), its
 * listeners registered through `view`. Typing in the box is not navigation: its keys stay in it.
 */
export function searchBox<R>(view: View, options: SearchOptions<R>): { el: HTMLElement; title: HTMLElement } {
  const input = tagged(el("input"), "search-input");
  input.placeholder = "token, e.g. ␣Paris (leading space: type it)";
  const button = tagged(el("button", "", options.button), "search-button");
  const title = el("h4", "", options.title);
  const results = tagged(el("div"), "search-results");
  const box = tagged(el("div", "lw-search"), "search");
  box.append(title, input, " ", button, results);

  async function run(): Promise<void> {
    const token = searchToken(input.value);
    if (!token) return;
    panelState(results, "loading", el("div", "lw-loading", "Searching…"));
    try {
      // k: the kernel's default number of results.
      const response = await view.client.request("search", "search", { token });
      if (response === null) return;
      const answer = response.msg;
      const found = Array.isArray(answer["results"]) ? (answer["results"] as R[]) : [];
      const rows = found.map((r) => {
        const { text, data } = options.row(r, answer);
        return tagged(el("div", "lw-search-result", text), "search-result", data);
      });
      panelState(results, "ready", ...(rows.length ? rows : [el("div", "lw-hint", options.none(answer))]));
    } catch (e) {
      panelState(results, "error", errorBox(e, "search-error"));
    }
  }

  view.listen(button, "click", () => void run());
  view.listen(input, "keydown", (e) => {
    e.stopPropagation(); // typing is not navigation
    if (e.key === "Enter") void run();
  });
  view.listen(results, "click", (e) => {
    const row = (e.target as HTMLElement).closest<HTMLElement>(".lw-search-result");
    if (row) options.pick(row.dataset);
  });
  return { el: box, title };
}
