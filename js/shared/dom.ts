// Small DOM helpers every view uses: an element the browser tests can find, a panel's state with its
// content, a select's options. Text still goes through `el` (js/shared/tokens.ts), so through visibleText.

import { el } from "./tokens";

/** `node` with a data-testid (what the browser tests find it by) and `data-*` attributes from `data`. */
export function tagged<T extends HTMLElement>(node: T, testid: string, data: Record<string, unknown> = {}): T {
  node.dataset.testid = testid;
  for (const [key, value] of Object.entries(data)) node.dataset[key] = String(value);
  return node;
}

/** Show `children` in `panel` and say which state it is in (data-state: idle, loading, ready, error, ...). */
export function panelState(panel: HTMLElement, state: string, ...children: (Node | string)[]): void {
  panel.dataset.state = state;
  panel.replaceChildren(...children);
}

/** Replace a select's options with `choices`, `[value, label]` pairs (labels through visibleText). */
export function fillOptions(select: HTMLSelectElement, choices: readonly (readonly [string, string])[]): void {
  select.replaceChildren(...choices.map(([value, label]) => Object.assign(el("option", "", label), { value })));
}
