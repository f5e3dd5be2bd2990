"""The Explorer on smollm2-135m: build, draw, click and export times and sizes; the front-end's size.

(a) Python: the cell's work (trace + every panel) at each T;
(b) JupyterLab + Chromium: the cell finished -> every panel drawn (targets 3 s at 256, 10 s at 2,048);
(c) a click on the shared strip -> every panel updated for that token, median of 20 (target 200 ms at 256);
(d) an exported file with the attention and saliency panels against bertviz's model_view HTML of the
    same text (two layers, and all of them);
(e) lines of TypeScript and CSS in js/ now and at the commit before the scaffold.

    python bench/explorer.py                   # T = 256 and 2048
    python bench/explorer.py --tokens 256 --no-browser
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from attention import SETUP_CELL, text_of  # noqa: E402

BEFORE = "20087f9"  # the last commit before the front-end scaffold (issue 11)
MB = 1e6

PANELS_DRAWN = (ROOT / "bench" / "explorer_drawn.js").read_text().split("\n", 2)[2]  # (i) => {panel: drawn}
ALL_DRAWN = f"(i) => Object.values(({PANELS_DRAWN})(i)).every(Boolean)"


def build_time(model, n: int) -> tuple[int, float]:
    import llmasos_widgets as lw

    start = time.perf_counter()
    explorer = lw.Explorer(model, text_of(model, n))
    return len(explorer.tokens), time.perf_counter() - start


def export_sizes(model, n: int) -> tuple[float, float, float, str]:
    """MB of our file (attention + saliency panels), bertviz's page for 2 layers and for all; our note."""
    import io
    from contextlib import redirect_stdout

    from bertviz import model_view

    import llmasos_widgets as lw

    explorer = lw.Explorer(model, text_of(model, n), panels=["attention", "saliency"])
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(io.StringIO()) as said:
        ours = explorer.save_html(Path(tmp) / "ours.html").stat().st_size
    trace = explorer.trace
    attention = [trace.attention(layer)[None] for layer in range(trace.n_layers)]
    two = len(model_view(attention, trace.tokens, include_layers=[0, 1], html_action="return").data.encode())
    every = len(model_view(attention, trace.tokens, html_action="return").data.encode())
    return ours / MB, two / MB, every / MB, said.getvalue().strip()


def ts_lines(commit: str | None) -> tuple[int, int]:
    """Lines of TypeScript (tests left out) and CSS under js/, now or at ``commit``."""
    if commit is None:
        files = [p for p in (ROOT / "js").rglob("*") if p.suffix in (".ts", ".css")]
        texts = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    else:
        names = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", commit, "js"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        texts = {
            n: subprocess.run(["git", "show", f"{commit}:{n}"], cwd=ROOT, capture_output=True, text=True).stdout
            for n in names
            if n.endswith((".ts", ".css"))
        }
    ts = sum(t.count("\n") for n, t in texts.items() if n.endswith(".ts") and not n.endswith(".test.ts"))
    css = sum(t.count("\n") for n, t in texts.items() if n.endswith(".css"))
    return ts, css


def browser_times(sizes: list[int], collapsed: list[str]) -> dict:
    """Cell -> all panels drawn, and click latencies, for each size, in one JupyterLab session."""
    import _lab

    results: dict = {}
    with _lab.lab_and_browser() as (lab, browser):
        for n in sizes:
            cells = [SETUP_CELL, f"text = text_of(model, {n})"]
            nb = _lab.open_notebook(lab, browser, f"explorer-{n}.ipynb", cells, timeout=600)
            page = nb.page
            # Run the Explorer's cell from the page, as a user does, and time it there.
            page.evaluate("() => window.__lw_t0 = performance.now()")
            _lab_add_cell(nb, f"ex = lw.Explorer(model, text, collapsed={collapsed!r})\nex")
            page.wait_for_function(
                "() => document.querySelector('.lw-explorer [data-testid=panel-lens]') !== null", timeout=600_000
            )
            cell_done = page.evaluate("() => performance.now() - window.__lw_t0") / 1000
            page.wait_for_function(ALL_DRAWN, arg=-1, timeout=600_000, polling=100)
            drawn = page.evaluate("() => performance.now() - window.__lw_t0") / 1000
            results[n] = {"cell_s": cell_done, "drawn_s": drawn - cell_done, "clicks_ms": clicks(page, n)}
            nb.close()
    return results


def _lab_add_cell(nb, source: str) -> None:
    """Append a code cell to the open notebook and run it from the page."""
    nb.page.evaluate(
        """(source) => {
          const panel = window.jupyterapp.shell.currentWidget;
          const nb = panel.content;
          nb.activeCellIndex = nb.widgets.length - 1;
          window.jupyterapp.commands.execute('notebook:insert-cell-below');
          nb.activeCell.model.sharedModel.setSource(source);
          window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        source,
    )


def clicks(page, n: int, count: int = 20) -> list[dict[str, float]]:
    """Click -> each panel drawn for that token (ms, measured in the page), and "all"."""
    script = (
        """async (i) => {
        const drawn = """
        + PANELS_DRAWN
        + """;
        const token = document.querySelectorAll('.lw-explorer > [data-testid=token-strip] [data-testid=token]')[i];
        const t0 = performance.now();
        token.click();
        const at = {};
        for (;;) {
          const now = performance.now() - t0;
          for (const [panel, done] of Object.entries(drawn(i))) if (done && at[panel] === undefined) at[panel] = now;
          if (Object.keys(at).length === 5) break;
          if (now > 60000) throw new Error('not drawn after 60 s: ' + JSON.stringify(drawn(i)));
          await new Promise(r => setTimeout(r, 4));
        }
        at.all = Math.max(...Object.values(at));
        return at;
    }"""
    )
    positions = [(97 * k + 13) % n for k in range(count)]
    return [page.evaluate(script, i) for i in positions]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="*", default=[256, 2048])
    parser.add_argument("--export-tokens", type=int, default=256)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--browser-only", action="store_true", help="only (b) and (c)")
    parser.add_argument("--collapsed", nargs="*", default=[], help="panels folded in (b) and (c)")
    args = parser.parse_args()

    import torch

    import llmasos_widgets as lw

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    model = lw.load_model("smollm2-135m")
    if args.browser_only:
        report_browser(args.tokens, args.collapsed)
        return
    print(f"(a) Python: Explorer(model, text) with every panel, {model.name}")
    for n in args.tokens:
        t, s = build_time(model, n)
        print(f"  T = {t:>5}: {s:6.2f} s")

    ours, two, every, note = export_sizes(model, args.export_tokens)
    print(f"\n(d) exported file at T = {args.export_tokens}: attention + saliency panels")
    print(f"  ours {ours:.2f} MB; bertviz model_view 2 layers {two:.2f} MB ({two / ours:.1f}x ours), ", end="")
    print(f"all 30 layers {every:.1f} MB ({every / ours:.0f}x ours)")
    print(f"  ours holds: {note}")

    (ts_before, css_before), (ts_now, css_now) = ts_lines(BEFORE), ts_lines(None)
    print(f"\n(e) front-end lines (TypeScript without tests, CSS): at {BEFORE} {ts_before} + {css_before}, ", end="")
    print(f"now {ts_now} + {css_now} (CSS was inside TypeScript strings before)")

    if not args.no_browser:
        report_browser(args.tokens, args.collapsed)


def report_browser(sizes: list[int], collapsed: list[str]) -> None:
    times = browser_times(sizes, collapsed)
    folded = f" ({', '.join(collapsed)} folded)" if collapsed else ""
    print(f"\n(b) JupyterLab + Chromium: cell run -> every panel drawn; (c) click -> every panel updated{folded}")
    for n, r in times.items():
        c = r["clicks_ms"]
        med = {k: statistics.median(x[k] for x in c) for k in c[0]}
        alls = [x["all"] for x in c]
        print(
            f"  T = {n:>5}: cell {r['cell_s']:.2f} s, then drawn in {r['drawn_s']:.2f} s "
            f"(total {r['cell_s'] + r['drawn_s']:.2f} s); click median {med['all']:.0f} ms, "
            f"min {min(alls):.0f}, max {max(alls):.0f}; median per panel: "
            + ", ".join(f"{k} {v:.0f}" for k, v in med.items() if k != "all")
        )


if __name__ == "__main__":
    main()
