"""The Explorer on smollm2-135m: build, draw, click and export times and sizes; the front-end's size.

(a) Python: the cell's work (trace + every panel) at each T;
(b) JupyterLab + Chromium: the cell finished -> every panel drawn (targets 3 s at 256, 10 s at 2,048), the panels
    folded as the Explorer folds them by default (the saliency panel above 512 tokens: its backward pass is
    most of the cost; it is timed when unfolded, after the quiet clicks); --collapsed chooses instead;
(c) a click on the shared strip -> every panel updated for that token, median of 20 (target 100 ms at 1,024),
    beside the floor measured in the same page: a bare anywidget's round trip (a message to the kernel and
    back, no work), so each figure reads as a ratio on any machine; then 10 clicks while the kernel is busy
    (an integrated-gradients attribution running in another cell);
(d) an exported file with the attention and saliency panels against bertviz's model_view HTML of the
    same text (two layers, and all of them);
(e) lines of TypeScript and CSS in js/ now and at the commit before the scaffold.

    python bench/explorer.py                   # T = 256 and 2048
    python bench/explorer.py --tokens 256 --no-browser
    python bench/explorer.py --browser-only --tokens 1024 --width 800   # the one-column layout
    python bench/explorer.py --browser-only --tokens 1024 --cache-mb 0  # every click asks the kernel
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


def browser_times(sizes: list[int], collapsed: list[str] | None, width: int, cache_mb: int | None) -> dict:
    """Cell -> all panels drawn, and click latencies, for each size, in one JupyterLab session."""
    import _lab

    results: dict = {}
    folding = "" if collapsed is None else f", collapsed={collapsed!r}"  # None: the Explorer's own default
    folding += "" if cache_mb is None else f", cache_mb={cache_mb}"
    with _lab.lab_and_browser() as (lab, browser):
        for n in sizes:
            cells = [SETUP_CELL, f"text = text_of(model, {n})"]
            # A page tall enough to show every panel at once: a panel mounts (and fetches) when it is first seen.
            viewport = (width, VIEWPORT[1])
            nb = _lab.open_notebook(lab, browser, f"explorer-{n}.ipynb", cells, timeout=600, viewport=viewport)
            page = nb.page
            # Run the Explorer's cell from the page, as a user does, and time it there.
            page.evaluate("() => window.__lw_t0 = performance.now()")
            _lab_add_cell(nb, f"ex = lw.Explorer(model, text{folding})\nex")
            page.wait_for_function(
                "() => document.querySelector('.lw-explorer [data-testid=panel-lens]') !== null", timeout=600_000
            )
            cell_done = page.evaluate("() => performance.now() - window.__lw_t0") / 1000
            page.wait_for_function(ALL_DRAWN, arg=-1, timeout=600_000, polling=100)
            drawn = page.evaluate("() => performance.now() - window.__lw_t0") / 1000
            layout = page.evaluate("() => document.querySelector('.lw-explorer').dataset.layout")
            folded = page.evaluate(
                "() => [...document.querySelectorAll('.lw-explorer section.lw-folded')].map(s => s.dataset.panel)"
            )
            cached = cache_filled(page) if cache_mb != 0 else {"s": None, "entries": 0, "has": False}
            floor = round_trips(nb)
            quiet = clicks(page, n)
            keys = clicks(page, n, step=1)
            opened = open_folded(page, folded)
            busy = busy_clicks(nb, n)
            results[n] = {"cell_s": cell_done, "drawn_s": drawn - cell_done, "clicks_ms": quiet, "keys_ms": keys}
            results[n] |= {"layout": layout, "folded": folded, "opened_s": opened}
            results[n] |= {"floor_ms": floor, "busy": busy, "cache": cached}
            nb.close()
    return results


# A bare anywidget: the page sends a message, the kernel sends one back, nothing else (the floor of a click
# that needs the kernel). `window.__lw_echo()` resolves with one round trip's milliseconds.
ECHO_CELL = '''
import anywidget
class _Echo(anywidget.AnyWidget):
    _esm = """export default { render({ model, el }) {
      el.textContent = "echo";
      window.__lw_echo = () => new Promise((resolve) => {
        const t0 = performance.now();
        const on = (msg) => { if (msg && msg.echo) { model.off("msg:custom", on); resolve(performance.now() - t0); } };
        model.on("msg:custom", on);
        model.send({ ping: 1 });
      });
    } }"""
    def __init__(self):
        super().__init__()
        self.on_msg(lambda widget, content, buffers: self.send({"echo": 1}))
_Echo()
'''

# What keeps the kernel busy in the busy case: a long attribution in another cell (about 40 s here).
BUSY_CELL = "busy = lw.attribute(model, text_of(model, 48), method='integrated_gradients', n_steps=512)"
_BUSY_MARK = "print('kernel busy', flush=True)\n"  # printed first: the cell runs from then on
_FREE_MARK = "\nprint('kernel free', flush=True)"  # printed last
# Whether the page shows a line the busy cell printed. (The kernel's status is no guide: the widgets' messages,
# answered beside the running cell, report the kernel idle while the cell still runs.)
_PRINTED = "(text) => [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.textContent.includes(text))"


VIEWPORT = (1400, 6000)


def open_folded(page, folded: list[str]) -> dict[str, float]:
    """Unfold each panel the Explorer started folded (its first draw is costly): seconds until it is drawn."""
    out = {}
    for panel in folded:
        page.evaluate("() => window.__lw_t1 = performance.now()")
        page.click(f'.lw-explorer [data-testid="toggle-{panel}"]')
        page.wait_for_function(
            f"(i) => ({PANELS_DRAWN})(i)[{panel!r}] && "
            f"!document.querySelector('.lw-explorer [data-testid=\"panel-{panel}\"].lw-folded')",
            arg=-1,
            timeout=600_000,
            polling=50,
        )
        out[panel] = page.evaluate("() => performance.now() - window.__lw_t1") / 1000
    return out


def cache_filled(page, limit_s: float = 120) -> dict:
    """Seconds after every panel was drawn until the kernel said the page's cache is full (None: no cache,
    or not within limit_s), and what it holds."""
    t0 = time.perf_counter()
    has = page.evaluate("() => document.querySelector('.lw-explorer').dataset.prefetchDone !== undefined")
    done = None
    if has:
        try:
            page.wait_for_function(
                "() => document.querySelector('.lw-explorer').dataset.prefetchDone === 'true'",
                timeout=limit_s * 1000,
                polling=250,
            )
            done = time.perf_counter() - t0
        except Exception:
            pass
    held = page.evaluate("() => document.querySelector('.lw-explorer').dataset.prefetched ?? '0'")
    return {"s": done, "entries": int(held), "has": has}


def round_trips(nb, count: int = 20) -> list[float]:
    """Bare anywidget round trips (ms), measured in the page."""
    page = nb.page
    _lab_add_cell(nb, ECHO_CELL)
    page.wait_for_function("() => typeof window.__lw_echo === 'function'", timeout=120_000, polling=100)
    page.evaluate("() => window.__lw_echo()")  # warm
    return [page.evaluate("() => window.__lw_echo()") for _ in range(count)]


def busy_clicks(nb, n: int, count: int = 10, limit_ms: float = 3000) -> dict:
    """Clicks while another cell keeps the kernel busy: their times (inf: not drawn within limit_ms)."""
    page = nb.page
    _lab_add_cell(nb, _BUSY_MARK + BUSY_CELL + _FREE_MARK)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => o.textContent.includes('kernel busy'))",
        timeout=120_000,
    )
    time.sleep(1.0)
    times = clicks(page, n, count, limit_ms=limit_ms, offset=7)
    still = not page.evaluate(_PRINTED, "kernel free")
    page.wait_for_function(_PRINTED, arg="kernel free", timeout=600_000, polling=250)
    return {"clicks_ms": times, "busy_throughout": still, "limit_ms": limit_ms}


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


def clicks(
    page, n: int, count: int = 20, limit_ms: float = 60000, offset: int = 13, step: int = 97
) -> list[dict[str, float]]:
    """Click -> each panel drawn for that token (ms, measured in the page), and "all" (inf: not within limit_ms)."""
    script = (
        """async ([i, limit]) => {
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
          if (now > limit) {
            if (limit >= 60000) throw new Error('not drawn after 60 s: ' + JSON.stringify(drawn(i)));
            for (const panel of Object.keys(drawn(i))) if (at[panel] === undefined) at[panel] = -1;
            break;
          }
          await new Promise(r => setTimeout(r, 4));
        }
        at.all = Object.values(at).includes(-1) ? -1 : Math.max(...Object.values(at));
        return at;
    }"""
    )
    positions = [(step * k + offset) % n for k in range(count)]
    out = []
    for i in positions:
        at = page.evaluate(script, [i, limit_ms])
        out.append({k: (float("inf") if v < 0 else v) for k, v in at.items()})  # -1: not drawn in time
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="*", default=[256, 2048])
    parser.add_argument("--export-tokens", type=int, default=256)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--browser-only", action="store_true", help="only (b) and (c)")
    parser.add_argument(
        "--collapsed", nargs="*", default=None, help="panels folded in (b) and (c) (default: the Explorer's own)"
    )
    parser.add_argument("--cache-mb", type=int, default=None, help="the page's cache (0: off, every click asks)")
    parser.add_argument("--width", type=int, default=VIEWPORT[0], help="page width: 1400 a grid, 800 one column")
    args = parser.parse_args()

    import torch

    import llmasos_widgets as lw

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    model = lw.load_model("smollm2-135m")
    if args.browser_only:
        report_browser(args.tokens, args.collapsed, args.width, args.cache_mb)
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
        report_browser(args.tokens, args.collapsed, args.width, args.cache_mb)


def report_browser(sizes: list[int], collapsed: list[str] | None, width: int, cache_mb: int | None = None) -> None:
    before = _load()
    times = browser_times(sizes, collapsed, width, cache_mb)
    print("\n(b) JupyterLab + Chromium: cell run -> every panel drawn; (c) click -> every panel updated")
    cache = "" if cache_mb is None else f"; the page's cache {cache_mb} MB"
    print(f"  page {width} px wide{cache}; load average before: {before}")
    for n, r in times.items():
        c = r["clicks_ms"]
        floor = statistics.median(r["floor_ms"])
        med = {k: statistics.median(x[k] for x in c) for k in c[0]}
        alls = [x["all"] for x in c]
        folded = ", ".join(r["folded"]) or "none"
        print(
            f"  T = {n:>5}: cell {r['cell_s']:.2f} s, then drawn in {r['drawn_s']:.2f} s "
            f"(total {r['cell_s'] + r['drawn_s']:.2f} s); layout: {r['layout']}; folded at first: {folded}\n"
            f"    bare anywidget round trip (the floor): median {floor:.1f} ms, min {min(r['floor_ms']):.1f}, "
            f"max {max(r['floor_ms']):.1f}\n"
            f"    click median {med['all']:.0f} ms = {med['all'] / floor:.1f}x the floor, "
            f"min {min(alls):.0f}, max {max(alls):.0f}; median per panel (x the floor): "
            + ", ".join(f"{k} {v:.0f} ({v / floor:.1f}x)" for k, v in med.items() if k != "all")
        )
        k = r["keys_ms"]
        kmed = statistics.median(x["all"] for x in k)
        print(
            f"    clicks on the next token (as the arrow key steps): median {kmed:.0f} ms "
            f"= {kmed / floor:.1f}x the floor, "
            f"max {max(x['all'] for x in k):.0f}"
        )
        cache = r["cache"]
        if cache["has"]:
            filled = "not within 120 s" if cache["s"] is None else f"{cache['s']:.1f} s"
            print(f"    page cache filled by the kernel {filled} after the draw ({cache['entries']} answers held)")
        b = r["busy"]
        bc = b["clicks_ms"]
        answered = [x["all"] for x in bc if x["all"] != float("inf")]
        bmed = {k: statistics.median(x[k] for x in bc) for k in bc[0]}
        print(
            f"    kernel busy (another cell: {BUSY_CELL}; still busy after the clicks: {b['busy_throughout']}): "
            f"{len(answered)} of {len(bc)} clicks drawn within {b['limit_ms'] / 1000:.0f} s"
            + (f", median {statistics.median(answered):.0f} ms" if answered else "")
            + "; median per panel: "
            + ", ".join(f"{k} {_ms(v)}" for k, v in bmed.items() if k != "all")
        )
        for panel, seconds in r["opened_s"].items():
            print(f"    {panel} unfolded after the quiet clicks: drawn in {seconds:.2f} s")
    print(f"  load average after: {_load()}")


def _ms(v: float) -> str:
    return "not drawn" if v == float("inf") else f"{v:.0f}"


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: read figures beside them)."""
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
