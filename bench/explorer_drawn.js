// Which panels of the Explorer are drawn (for a token i >= 0: drawn for that token), read in the page.
// bench/explorer.py evaluates this function with Playwright.
(i) => {
  const q = (panel, s) => document.querySelector(`.lw-explorer [data-testid="panel-${panel}"] ${s}`);
  const state = (panel, s) => q(panel, s)?.dataset.state;
  const at = (panel, s) => q(panel, s)?.dataset.position === String(i);
  const overview = q('attention', '[data-testid="overview"]');
  const folded = (panel) => !!document.querySelector(`.lw-explorer [data-testid="panel-${panel}"].lw-folded`);
  const drawn = {
    tokens: i < 0 ? state('tokens', '[data-testid="predictions"]') === 'idle'
                  : state('tokens', '[data-testid="predictions"]') === 'ready' && q('tokens', '.lw-pred-title')?.textContent.includes('#' + i),
    attention: overview?.dataset.state === 'ready' && (i < 0 ? overview.dataset.overviewMs !== undefined : overview.dataset.position === String(i)),
    saliency: state('saliency', '[data-testid="overlay"]') === 'ready' && (i < 0 || !!q('saliency', `.lw-token.lw-selected[data-index="${i}"]`)),
    neurons: i < 0 ? state('neurons', '[data-testid="token-neurons"]') === 'idle' : at('neurons', '[data-testid="token-neurons"]') && state('neurons', '[data-testid="token-neurons"]') === 'ready',
    // The lens: all of it at first; after a click, the clicked token's column (the rest fills in after).
    lens: i < 0 ? state('lens', '[data-testid="progress"]') === 'ready'
                : !!q('lens', `td.lw-in-col[data-pos="${i}"]`) && !q('lens', `td.lw-in-col.lw-pending[data-pos="${i}"]`),
  };
  for (const panel of Object.keys(drawn)) if (folded(panel)) drawn[panel] = true; // a folded panel draws nothing
  return drawn;
}
