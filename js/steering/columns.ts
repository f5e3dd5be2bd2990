// One generation as SteeringView shows it (also drawn by FeatureView's "steer with this feature"): the
// prompt faded, then the generated tokens, those that differ from the baseline marked. DOM only, text
// through textContent; styled by js/steering/style.css under .lw-steering.

import { appendVisibleToken, el } from "../shared/tokens";

/**
 * A column's title and text. `promptTail` keeps only the prompt's last tokens (an ellipsis before them),
 * for a long prompt; `changed[i]` marks generated token i.
 */
export function generationColumn(
  label: string,
  prompt: readonly string[],
  tokens: readonly string[],
  changed: readonly boolean[] | null,
  promptTail = Infinity,
): HTMLElement[] {
  const text = el("div", "lw-gen");
  const shown = el("span", "lw-prompt");
  const start = Math.max(0, prompt.length - promptTail);
  if (start > 0) shown.append("…");
  // A token carrying the rest of a split character ("") adds nothing to running text: skipped.
  for (const t of prompt.slice(start)) if (t !== "") appendVisibleToken(shown, t);
  text.append(shown);
  tokens.forEach((t, i) => {
    const span = el("span", "lw-out");
    span.dataset.testid = "gen-token";
    span.dataset.index = String(i);
    if (t !== "") appendVisibleToken(span, t);
    if (changed?.[i]) {
      span.classList.add("lw-changed");
      span.dataset.changed = "true";
      span.title = "differs from the baseline's token here";
    }
    text.append(span);
  });
  return [el("div", "lw-col-title", label), text];
}
