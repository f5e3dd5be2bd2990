// CSS of the attention view, on top of the shared sheet (js/shared/style.ts).

export const attentionCss = `
.lw-attention .lw-header { display: flex; flex-wrap: wrap; gap: 0 6px; align-items: baseline; }
.lw-attention .lw-progress { margin-left: 6px; font-variant-numeric: tabular-nums; }
.lw-attention .lw-progress[data-state="error"] { color: var(--lw-error); }
.lw-attention .lw-strip-box { margin-bottom: 6px; max-height: 16em; overflow-y: auto; }
.lw-attention .lw-strip-box.lw-scroll {
  max-height: 9em;
  overflow-y: auto;
  border: 1px solid var(--lw-border);
  border-radius: 4px;
}
.lw-attention .lw-toolbar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin: 6px 0 4px; }
.lw-attention .lw-toolbar label { display: inline-flex; gap: 4px; align-items: center; color: var(--lw-fg-muted); }
.lw-attention .lw-group { display: inline-flex; }
.lw-attention .lw-group > button { border-radius: 0; margin-left: -1px; }
.lw-attention .lw-group > button:first-child { border-radius: 4px 0 0 4px; margin-left: 0; }
.lw-attention .lw-group > button:last-child { border-radius: 0 4px 4px 0; }
.lw-attention button, .lw-attention select {
  font: inherit;
  color: inherit;
  background: var(--lw-tint);
  border: 1px solid var(--lw-border);
  border-radius: 4px;
  padding: 1px 8px;
  line-height: 1.5;
  cursor: pointer;
}
.lw-attention select { background: transparent; padding: 1px 4px; }
.lw-attention select option { color: #222; background: #fff; }
.lw-attention button:hover:not(:disabled) { background: var(--lw-tint-strong); }
.lw-attention button:disabled { opacity: 0.45; cursor: default; }
.lw-attention button[aria-pressed="true"], .lw-attention button[aria-selected="true"] {
  background: var(--lw-selected-tint);
  border-color: var(--lw-accent);
  font-weight: 600;
  position: relative;
}
.lw-attention button:focus-visible, .lw-attention select:focus-visible { outline: 2px solid var(--lw-accent); outline-offset: 1px; }
.lw-attention .lw-help { font-size: 12px; margin-bottom: 6px; }
.lw-attention .lw-panel { position: relative; min-height: 2em; }
.lw-attention .lw-panel[hidden] { display: none; }
.lw-attention .lw-panel > .lw-error { margin: 4px 0; }
.lw-attention .lw-panel-title { font-weight: 600; margin: 2px 0 4px; }
.lw-attention .lw-legend { font-size: 12px; margin: 2px 0 6px; }
.lw-attention .lw-grid-wrap { position: relative; }
.lw-attention .lw-grid, .lw-attention .lw-grid-overlay { position: absolute; left: 0; top: 0; }
.lw-attention .lw-grid-overlay { pointer-events: none; }
.lw-attention .lw-tooltip {
  position: absolute;
  z-index: 10;
  pointer-events: none;
  background: var(--jp-layout-color1, var(--vscode-editor-background, #fff));
  color: var(--lw-fg);
  border: 1px solid var(--lw-border);
  border-radius: 4px;
  padding: 3px 7px;
  font-size: 12px;
  line-height: 1.45;
  white-space: pre;
  box-shadow: 0 2px 6px rgba(0, 0, 0, 0.18);
}
.lw-attention .lw-tooltip[hidden] { display: none; }
.lw-attention .lw-ov-body { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: flex-start; }
.lw-attention .lw-ov-side { width: 230px; flex: none; position: sticky; top: 4px; }
.lw-attention .lw-sharp { display: flex; flex-direction: column; align-items: flex-start; gap: 3px; margin: 8px 0 4px; font-size: 12px; }
.lw-attention .lw-sharp[hidden] { display: none; }
.lw-attention .lw-chips { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin: 2px 0 6px; }
.lw-attention .lw-chip { font-family: var(--lw-mono); font-size: 12px; padding: 0 6px; }
.lw-attention .lw-hv-nav { display: flex; gap: 8px; align-items: center; margin: 2px 0 4px; }
.lw-attention .lw-hv-nav[hidden] { display: none; }
.lw-attention .lw-hv-body { display: grid; grid-template-columns: minmax(110px, 220px) 180px minmax(110px, 220px); align-items: start; }
.lw-attention .lw-hv-col { font-family: var(--lw-mono); min-width: 0; }
.lw-attention .lw-hv-tok {
  display: flex;
  gap: 6px;
  align-items: center;
  height: 20px;
  line-height: 20px;
  padding: 0 4px;
  border-radius: 3px;
  white-space: pre;
  cursor: pointer;
  overflow: hidden;
}
.lw-attention .lw-hv-left .lw-hv-tok { justify-content: flex-end; }
.lw-attention .lw-hv-text { overflow: hidden; text-overflow: ellipsis; }
.lw-attention .lw-hv-idx { color: var(--lw-fg-muted); font-size: 10px; flex: none; }
.lw-attention .lw-hv-tok:hover { outline: 1px solid var(--lw-border); }
.lw-attention .lw-hv-tok.lw-selected { outline: 2px solid var(--lw-accent); outline-offset: -2px; }
.lw-attention .lw-hv-info { min-height: 1.5em; margin-top: 4px; font-size: 12px; white-space: pre-wrap; }
.lw-attention .lw-mx-bar { display: flex; gap: 8px; align-items: center; margin: 2px 0 4px; font-size: 12px; }
.lw-attention .lw-mx-grid { display: grid; grid-template-columns: 130px 480px; grid-template-rows: 96px 480px; }
.lw-attention .lw-mx-corner { font-size: 11px; align-self: end; padding: 0 4px 4px 0; text-align: right; }
.lw-attention .lw-mx-plot { position: relative; width: 480px; height: 480px; }
.lw-attention .lw-mx-canvas { display: block; cursor: crosshair; touch-action: none; }
.lw-attention .lw-legend-bar { display: inline-block; width: 120px; height: 10px; vertical-align: middle; border: 1px solid var(--lw-border); }
`;
