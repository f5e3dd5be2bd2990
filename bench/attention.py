"""AttentionView against bertviz's model_view on the same smollm2-135m traces.

(a) bytes sent to the browser until the overview is complete: ours = the widget's state (bundle
    included) plus every overview message and buffer; bertviz = the HTML page model_view builds
    (it embeds every weight as JSON), built only up to --bertviz-max tokens;
(b) time from the view's first render to the full overview drawn, in JupyterLab + Chromium;
(c) click on a token to every thumbnail redrawn, median over 20 clicks, at T = 1024.

    python bench/attention.py                      # T = 512, 2048, 4096; bertviz at 512
    python bench/attention.py --tokens 512 --no-browser
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

SAMPLE = (
    "The history of the city is long. Merchants came by river and by road, and the market grew "
    "around the old bridge. Every spring the town held a fair where farmers sold wool, cheese and "
    "horses, and travellers told stories of distant places. "
)
MB = 1e6


def text_of(model, n_tokens: int) -> str:
    ids = model.tokenizer(SAMPLE * (n_tokens // 40 + 2))["input_ids"][:n_tokens]
    return model.tokenizer.decode(ids)


def our_bytes(trace) -> tuple[int, float]:
    import llmasos_widgets as lw
    from llmasos_widgets.views.protocol import Reply

    view = lw.AttentionView(trace)
    state = view.get_state()
    sent = [len(json.dumps(state, default=str))]

    def send(content, buffers=None):
        sent.append(len(json.dumps(content)) + sum(len(b) for b in buffers or []))

    view.send = send
    start = time.perf_counter()
    view._stream_overview(Reply(view, 1, "overview"), view.thumb_size)
    return sum(sent), time.perf_counter() - start


def bertviz_bytes(trace) -> tuple[int, float]:
    from bertviz import model_view

    start = time.perf_counter()
    attention = [trace.attention(layer)[None] for layer in range(trace.n_layers)]
    html = model_view(attention, trace.tokens, html_action="return")
    return len(html.data.encode()), time.perf_counter() - start


# The first cell of a bench notebook: the model, and text_of from this file.
SETUP_CELL = (
    "import llmasos_widgets as lw, sys\n"
    f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
    "from attention import text_of\n"
    "model = lw.load_model('smollm2-135m')"
)


def browser_times(sizes: list[int], click_tokens: int) -> dict:
    """Overview time for each size and click latency at click_tokens, in one JupyterLab session."""
    import _lab

    results: dict = {"overview_s": {}, "clicks_ms": []}
    with _lab.lab_and_browser() as (lab, browser):
        for n in sorted(set(sizes) | {click_tokens}):
            cells = [SETUP_CELL, f"trace = model.trace(text_of(model, {n}))", "view = lw.AttentionView(trace)\nview"]
            nb = _lab.open_notebook(lab, browser, f"bench-{n}.ipynb", cells, timeout=600)
            page = nb.page
            overview = page.locator('[data-testid="overview"]')
            page.wait_for_function(
                "() => document.querySelector('[data-testid=overview]')?.dataset.overviewMs !== undefined",
                timeout=600_000,
                polling=250,  # Playwright's default polls every frame, which keeps a core busy
            )
            if n in sizes:
                results["overview_s"][n] = float(overview.get_attribute("data-overview-ms")) / 1000
            if n == click_tokens:
                results["clicks_ms"] = click_latencies(page, n)
            nb.close()
    return results


def click_latencies(page, n: int, clicks: int = 20) -> list[float]:
    # Measured in the page: from the click to the overview drawn for that token (data-position).
    script = """async ([i]) => {
        const el = document.querySelector('[data-testid=overview]');
        const token = document.querySelectorAll('[data-testid=token]')[i];
        const t0 = performance.now();
        token.click();
        while (!(el.dataset.position === String(i) && el.dataset.state === 'ready')) {
            await new Promise(r => requestAnimationFrame(r));
        }
        return performance.now() - t0;
    }"""
    positions = [(97 * k + 13) % n for k in range(clicks)]
    return [page.evaluate(script, [i]) for i in positions]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="*", default=[512, 2048, 4096])
    parser.add_argument("--bertviz-max", type=int, default=512)
    parser.add_argument("--click-tokens", type=int, default=1024)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    import torch

    import llmasos_widgets as lw

    torch.set_grad_enabled(False)
    model = lw.load_model("smollm2-135m")
    print("(a) bytes to the browser until the overview is complete, smollm2-135m (30 layers x 9 heads)")
    print(f"{'T':>6} {'ours MB':>9} {'ours s':>7} {'bertviz MB':>11} {'bertviz s':>10} {'ratio':>9}")
    for n in args.tokens:
        trace = model.trace(text_of(model, n))
        ours, ours_s = our_bytes(trace)
        if n <= args.bertviz_max:
            theirs, theirs_s = bertviz_bytes(trace)
            tail = f"{theirs / MB:>11.1f} {theirs_s:>10.1f} {theirs / ours:>8.0f}x"
        else:
            tail = f"{'(not built)':>11} {'':>10} {'':>9}"
        print(f"{len(trace):>6} {ours / MB:>9.2f} {ours_s:>7.1f} {tail}")
        del trace
    if args.no_browser:
        return
    times = browser_times(args.tokens, args.click_tokens)
    print("\n(b) first render to the full overview drawn, JupyterLab + Chromium")
    for n, s in times["overview_s"].items():
        print(f"{n:>6} tokens: {s:6.2f} s")
    clicks = times["clicks_ms"]
    print(f"\n(c) click -> every thumbnail redrawn at T = {args.click_tokens}, {len(clicks)} clicks:")
    print(f"       median {statistics.median(clicks):.0f} ms, min {min(clicks):.0f} ms, max {max(clicks):.0f} ms")


if __name__ == "__main__":
    main()
