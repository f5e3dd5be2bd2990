// Token rendering shared by every view. Model text is untrusted: it only ever reaches the page
// through textContent, never innerHTML.

/** Create an element; `text` is set with textContent, through `visibleText(text, "text")`. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = visibleText(text, "text");
  return node;
}

/** Set a node's text (a message, a name, a line that quotes tokens) through `visibleText(text, "text")`. */
export function setText(node: Node, text: string): void {
  node.textContent = visibleText(text, "text");
}

/** Set an element's hover text (`title`) through `visibleText(text, "text")`. */
export function setTitle(node: HTMLElement, text: string): void {
  node.title = visibleText(text, "text");
}

/**
 * How a string is shown. `"token"`: a token, whose whitespace is the point (" the" → "·the", "\n" →
 * "↵", "" → "⋯"). `"text"`: running text (a name, a message, a generation, a line that quotes a token
 * already shown as a token), whose spaces, tabs and line breaks stay as they are.
 */
export type TextKind = "token" | "text";

/** The visible stand-in of a whitespace or control character, or undefined for ordinary ones. */
function marker(ch: string, kind: TextKind): string | undefined {
  if (kind === "text") {
    // Running text keeps its whitespace, and the joiners that shape scripts (Persian's ZWNJ) and emoji
    // sequences (👩‍💻); every other invisible character is named, as in a token.
    if (ch === " " || ch === "\n" || ch === "\t" || ch === "\r" || ch === "\u00a0" || ch === "\u200c" || ch === "\u200d") return undefined;
  } else {
    switch (ch) {
      case " ":
        return "·";
      case "\n":
        return "↵";
      case "\t":
        return "→";
      case "\r":
        return "␍";
      case "\u00a0":
        return "⍽";
    }
  }
  if (ch === "\u007f") return "␡";
  const code = ch.codePointAt(0)!;
  if (code < 0x20) return String.fromCharCode(0x2400 + code); // ␀ ␁ …
  // Other controls, invisible format characters (zero-width space, joiners, bidi overrides and
  // isolates, soft hyphen, BOM) and line/paragraph separators are named, never applied: a right-to-left
  // override in model text must not reorder the page.
  if (INVISIBLE.test(ch)) return `⟨U+${code.toString(16).toUpperCase().padStart(4, "0")}⟩`;
  return undefined;
}

const INVISIBLE = /^[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]$/u;
/** Whether a string may hold a character that `marker` names in text (the fast path skips the rest). */
const ANY_INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * Shown for a token whose text is "": it carries the rest of a character that an earlier token
 * shows whole (a CJK character or an emoji split over byte-level tokens).
 */
export const CONTINUATION = "⋯";

/**
 * A string in runs: ordinary text, and the markers that stand for its invisible characters. The one
 * place that decides how a string from the model or the user is shown; `visibleText` joins the runs,
 * `appendVisibleToken` puts the markers in faint spans.
 */
function visibleRuns(text: string, kind: TextKind): { text: string; marker: boolean }[] {
  if (kind === "token" && text === "") return [{ text: CONTINUATION, marker: true }];
  if (kind === "text" && !ANY_INVISIBLE.test(text)) return text ? [{ text, marker: false }] : [];
  const runs: { text: string; marker: boolean }[] = [];
  let run = "";
  for (const ch of text) {
    const m = marker(ch, kind);
    if (m === undefined) {
      run += ch;
      continue;
    }
    if (run) runs.push({ text: run, marker: false });
    run = "";
    runs.push({ text: m, marker: true });
  }
  if (run) runs.push({ text: run, marker: false });
  return runs;
}

/**
 * The one way a string from the model or the user becomes page text (a text node, a `title`, an
 * `aria-label`, an `<option>`, a canvas label): invisible and bidi characters are named
 * (`⟨U+202E⟩`), never applied, so a right-to-left override cannot reorder the page. As a token
 * (`kind` "token", the default) its whitespace shows too: " the" → "·the", "\n" → "↵".
 */
export function visibleText(text: string, kind: TextKind = "token"): string {
  return visibleRuns(String(text), kind)
    .map((r) => r.text)
    .join("");
}

/** A token (or, with `kind` "text", a name) in quotes, shown by `visibleText`: “·Paris”. */
export function quoted(text: string, kind: TextKind = "token"): string {
  return `“${visibleText(text, kind)}”`;
}

/**
 * Append a token's text to `parent` as `visibleText` shows it: ordinary characters as text nodes,
 * whitespace and invisible characters as faint markers in `<span class="lw-ws">` (so a leading space
 * shows as a faint "·").
 */
export function appendVisibleToken(parent: HTMLElement, token: string, kind: TextKind = "token"): void {
  if (kind === "token" && token === "") {
    parent.appendChild(el("span", "lw-ws lw-cont", CONTINUATION));
    return;
  }
  for (const run of visibleRuns(String(token), kind)) {
    parent.appendChild(run.marker ? el("span", "lw-ws", run.text) : document.createTextNode(run.text));
  }
}

/** `<span class="lw-quote">“token”</span>`, the token shown by `appendVisibleToken`, appended to `parent`. */
export function appendQuoted(parent: HTMLElement, token: string, kind: TextKind = "token"): HTMLSpanElement {
  const quote = el("span", "lw-quote", "“");
  appendVisibleToken(quote, token, kind);
  quote.append("”");
  parent.append(quote);
  return quote;
}

/** `data` (parsed JSON, e.g. a chart built in Python) with every string in it shown by `visibleText` as text. */
export function visibleStrings(item: unknown): unknown {
  if (typeof item === "string") return visibleText(item, "text");
  if (Array.isArray(item)) return item.map(visibleStrings);
  if (item !== null && typeof item === "object") {
    return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, visibleStrings(v)]));
  }
  return item;
}

/**
 * A chat transcript's tokens (the traits `token_messages`, `token_roles`, `template`, `message_offsets`;
 * empty lists for a plain text): each token's message (its index in the messages traced), that message's
 * role, whether the chat template wrote it, and its [start, end) in its message's own content.
 */
export interface ChatTokens {
  messages: readonly number[];
  roles: readonly string[];
  template: readonly boolean[];
  messageOffsets: readonly (readonly number[])[];
}

/**
 * What each token of a chat is, in words for its hover: a template token names the turn it opens or closes
 * ("template: start of user message (messages[1])"; "end of" once the message's content has begun), a
 * content token its message and its characters there ("user message (messages[1]), chars 0–2"). Empty for
 * a plain text (no chat traits).
 */
export function chatLabels(chat: ChatTokens): string[] {
  const begun = new Set<number>(); // messages whose content has started
  return chat.messages.map((m, i) => {
    const message = `${chat.roles[i] ?? "?"} message (messages[${m}])`;
    if (chat.template[i]) return `template: ${begun.has(m) ? "end" : "start"} of ${message}`;
    begun.add(m);
    const [start, end] = chat.messageOffsets[i] ?? [0, 0];
    return `${message}, ${end! > start! ? `chars ${start}–${end}` : `the rest of the character at ${start! - 1}`}`;
  });
}

export interface TokenStripOptions {
  tokenIds?: readonly number[];
  /** Character offsets into the text ([0, 0] for special tokens). */
  offsets?: readonly (readonly number[])[];
  generated?: readonly boolean[];
  /** Each token's bytes in hex ("e5 a4"), where the vocabulary is byte-level; "" otherwise. */
  tokenBytes?: readonly string[];
  /** For a chat transcript: template tokens are greyed and named, each token's hover names its message. */
  chat?: ChatTokens;
  /** Index of the selected token, -1 for none. */
  selected?: number;
  /** Called with a token's index when it is clicked. */
  onSelect?: (index: number) => void;
}

/** What a token's hover text says about it, beside its index. */
export interface TokenInfo {
  id?: number;
  offset?: readonly number[];
  generated?: boolean;
  bytes?: string;
  /** The token's text: "" marks a token carrying the rest of the character before it. */
  text?: string;
  /** In a chat, what the token is there (`chatLabels`): it takes the place of the characters in the transcript. */
  chat?: string;
}

/** The hover text of token i: "#i  id 1234  chars 3–11  bytes e5 a4" (in a chat: "#i  template: … id 1"). */
export function tokenTitle(i: number, info: TokenInfo = {}): string {
  let title = `#${i}`;
  if (info.chat) title += `  ${info.chat}`;
  if (info.id !== undefined) title += `  id ${info.id}`;
  const start = info.offset?.[0];
  const end = info.offset?.[1];
  if (info.chat === undefined && start !== undefined && end !== undefined) {
    title += end > start ? `  chars ${start}–${end}` : "  special (no chars)";
  }
  if (info.bytes) title += `  bytes ${info.bytes}`;
  if (info.text === "") title += "  (the rest of the character before)";
  if (info.generated) title += "  generated";
  return title;
}

/**
 * Fill `container` with one `<span class="lw-token" data-testid="token" data-index=i>` per token
 * (replacing what it held). A token holding a newline is followed by a real line break.
 * Returns the spans, indexed like `tokens`.
 */
export function renderTokenStrip(
  container: HTMLElement,
  tokens: readonly string[],
  opts: TokenStripOptions = {},
): HTMLSpanElement[] {
  container.replaceChildren();
  container.classList.add("lw-strip");
  const spans: HTMLSpanElement[] = [];
  const chat = opts.chat && opts.chat.messages.length === tokens.length ? opts.chat : undefined;
  const labels = chat ? chatLabels(chat) : [];
  tokens.forEach((token, i) => {
    const span = el("span", "lw-token");
    span.dataset.index = String(i);
    span.dataset.testid = "token";
    appendVisibleToken(span, String(token));
    // Through setTitle: a role name is the user's text.
    setTitle(
      span,
      tokenTitle(i, {
        id: opts.tokenIds?.[i],
        offset: opts.offsets?.[i],
        generated: opts.generated?.[i],
        bytes: opts.tokenBytes?.[i],
        text: String(token),
        chat: labels[i],
      }),
    );
    if (opts.generated?.[i]) span.classList.add("lw-generated");
    if (chat) {
      span.dataset.role = chat.roles[i] ?? "";
      span.dataset.message = String(chat.messages[i]);
      if (chat.template[i]) span.classList.add("lw-template");
    }
    if (opts.onSelect) {
      const onSelect = opts.onSelect;
      span.addEventListener("click", () => onSelect(i));
    }
    spans.push(span);
    container.appendChild(span);
    // At most two breaks, so a run of blank lines does not push the strip off the screen.
    const newlines = Math.min(2, String(token).split("\n").length - 1);
    for (let n = 0; n < newlines; n++) container.appendChild(document.createElement("br"));
  });
  setSelected(spans, opts.selected ?? -1);
  return spans;
}

/** Mark spans[index] as the selected token (index -1: none). */
export function setSelected(spans: readonly HTMLElement[], index: number): void {
  spans.forEach((span, i) => {
    const on = i === index;
    span.classList.toggle("lw-selected", on);
    if (on) span.setAttribute("aria-current", "true");
    else span.removeAttribute("aria-current");
  });
}

/** The token traits every view syncs with ViewBase (same names in Python). */
export interface TokenTraits {
  tokens: string[];
  token_ids: number[];
  offsets: [number, number][];
  token_bytes: string[];
  generated: boolean[];
  selected_token: number;
  model_name: string;
  token_messages: number[];
  token_roles: string[];
  template: boolean[];
  message_offsets: [number, number][];
}

/** The traits that describe a trace's text (Python's `TEXT_TRAITS`): a strip is redrawn when one changes. */
export const TEXT_TRAITS = [
  "tokens",
  "token_ids",
  "offsets",
  "token_bytes",
  "generated",
  "model_name",
  "token_messages",
  "token_roles",
  "template",
  "message_offsets",
] as const;

/** The strip options that come from a view's synced text traits (ids, offsets, generated flags, a chat's). */
export function textStripOptions<T extends TokenTraits>(model: {
  get<K extends keyof T>(key: K): T[K];
}): Pick<TokenStripOptions, "tokenIds" | "offsets" | "generated" | "tokenBytes" | "chat"> {
  const messages = model.get("token_messages") ?? [];
  return {
    tokenIds: model.get("token_ids") ?? [],
    offsets: model.get("offsets") ?? [],
    tokenBytes: model.get("token_bytes") ?? [],
    generated: model.get("generated") ?? [],
    chat: messages.length
      ? {
          messages,
          roles: model.get("token_roles") ?? [],
          template: model.get("template") ?? [],
          messageOffsets: model.get("message_offsets") ?? [],
        }
      : undefined,
  };
}

/**
 * Where a key press moves the token selection in a strip of `n` tokens (−1: none selected),
 * or null when the key is not a navigation key. ←/→ step, Home/End jump, Escape clears.
 */
export function tokenKeyTarget(key: string, current: number, n: number): number | null {
  if (n === 0) return null;
  switch (key) {
    case "ArrowRight":
      return current < 0 ? 0 : Math.min(n - 1, current + 1);
    case "ArrowLeft":
      return current < 0 ? n - 1 : Math.max(0, current - 1);
    case "Home":
      return 0;
    case "End":
      return n - 1;
    case "Escape":
      return -1;
    default:
      return null;
  }
}

/** One row of a ranked token list (class lw-rank-row): rank, the token, a bar of `fraction` (0..1), the value. */
export function rankRow(rank: number, token: string, fraction: number, value: string): HTMLDivElement {
  const row = el("div", "lw-rank-row");
  const cell = el("span", "lw-rank-token");
  appendVisibleToken(cell, token);
  const track = el("div", "lw-bar-track");
  const bar = el("div", "lw-bar");
  bar.style.width = `${Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) * 100 : 0}%`;
  track.append(bar);
  row.append(el("span", "lw-rank", String(rank)), cell, track, el("span", "lw-value", value));
  return row;
}

/** A title naming token i: `prefix “token”` with the token's whitespace made visible. */
export function quotedToken(className: string, prefix: string, token: string): HTMLElement {
  const title = el("div", className, prefix);
  appendQuoted(title, token);
  return title;
}
