// CSS shared by every view, scoped under .lw-root with :where() so that it weighs as one class and a
// view's own rules (prefixed with its class, e.g. .lw-lens) always win, whichever view's sheet came last.
// Colours come from JupyterLab's theme variables (then VS Code's), with light fallbacks; tints are translucent so they read on light and dark.

export const sharedCss = `
.lw-root {
  --lw-fg: var(--jp-ui-font-color1, var(--vscode-editor-foreground, #222));
  --lw-fg-muted: var(--jp-ui-font-color2, var(--vscode-descriptionForeground, #666));
  --lw-border: var(--jp-border-color2, rgba(128, 128, 128, 0.35));
  --lw-accent: var(--jp-brand-color1, var(--vscode-focusBorder, #1976d2));
  --lw-error: var(--jp-error-color1, #d32f2f);
  --lw-mono: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, Consolas, monospace);
  --lw-tint: rgba(128, 128, 128, 0.13);
  --lw-tint-strong: rgba(128, 128, 128, 0.28);
  --lw-selected-tint: rgba(25, 118, 210, 0.18);
  --lw-generated: #ef8a00;
  --lw-generated-tint: rgba(239, 138, 0, 0.16);
  color: var(--lw-fg);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  line-height: 1.5;
  padding: 4px 0;
}
.lw-root *, .lw-root *::before, .lw-root *::after { box-sizing: border-box; }
:where(.lw-root) .lw-header { color: var(--lw-fg-muted); margin-bottom: 6px; }
:where(.lw-root) .lw-header .lw-model { color: var(--lw-fg); font-weight: 600; }
:where(.lw-root) .lw-strip {
  font-family: var(--lw-mono);
  line-height: 1.9;
  outline: none;
  border-radius: 4px;
  padding: 2px;
}
:where(.lw-root) .lw-strip:focus-visible { box-shadow: 0 0 0 2px var(--lw-accent); }
:where(.lw-root) .lw-token {
  display: inline-block;
  white-space: pre;
  padding: 0 3px;
  margin: 1px 1px;
  line-height: 1.5;
  border-radius: 3px;
  background: var(--lw-tint);
  outline: 2px solid transparent;
  outline-offset: -1px;
  cursor: pointer;
  user-select: none;
  unicode-bidi: isolate; /* a right-to-left token never reorders its neighbours */
}
:where(.lw-root) .lw-token:hover { background: var(--lw-tint-strong); }
:where(.lw-root) .lw-token.lw-generated {
  background: var(--lw-generated-tint);
  text-decoration: underline;
  text-decoration-color: var(--lw-generated);
  text-decoration-thickness: 2px;
  text-underline-offset: 3px;
}
:where(.lw-root) .lw-token.lw-selected {
  outline-color: var(--lw-accent);
  background: var(--lw-selected-tint);
}
:where(.lw-root) .lw-ws { opacity: 0.45; }
:where(.lw-root) .lw-muted { color: var(--lw-fg-muted); }
:where(.lw-root) .lw-mono { font-family: var(--lw-mono); }
:where(.lw-root) .lw-bar-track { height: 0.8em; background: var(--lw-tint); border-radius: 2px; overflow: hidden; }
:where(.lw-root) .lw-bar { height: 100%; background: var(--lw-accent); opacity: 0.75; }
:where(.lw-root) .lw-empty { color: var(--lw-fg-muted); font-style: italic; }
:where(.lw-root) .lw-hint { color: var(--lw-fg-muted); }
:where(.lw-root) .lw-loading { color: var(--lw-fg-muted); }
:where(.lw-root) .lw-loading::after {
  content: "";
  display: inline-block;
  width: 0.8em;
  height: 0.8em;
  margin-left: 6px;
  vertical-align: -0.1em;
  border: 2px solid var(--lw-border);
  border-top-color: var(--lw-accent);
  border-radius: 50%;
  /* A stepped turn: 5 repaints a second instead of 60, which on a small machine would take CPU
     from the kernel computing what the spinner waits for (software-rendered browsers especially). */
  animation: lw-spin 1.6s steps(8) infinite;
}
@keyframes lw-spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { .lw-loading::after { animation: none; } }
:where(.lw-root) .lw-error {
  color: var(--lw-error);
  background: rgba(211, 47, 47, 0.08);
  border: 1px solid var(--lw-error);
  border-left-width: 4px;
  border-radius: 4px;
  padding: 6px 10px;
  white-space: pre-wrap;
  font-family: var(--lw-mono);
}
`;

/** Add a `<style>` holding `css` to the widget's element (not the document, so views stay apart). */
export function injectStyle(root: HTMLElement, css: string): HTMLStyleElement {
  const style = document.createElement("style");
  style.textContent = css;
  root.appendChild(style);
  return style;
}
