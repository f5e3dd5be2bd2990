"""One offline HTML handout per notebook: its prose, code and outputs, with each view exported live.

Each notebook is run top to bottom in a kernel (in a temporary folder, so the files a notebook writes land
there). After a cell whose output is a view, the kernel exports that view the way ``save_html`` does
(``views/export.py``: the front-end bundle and the answers to the requests it records, packed), and the
handout puts the export where the output was. A page holds one copy of the export runtime at its end and no
network at all (the same content policy as ``save_html``): a student opens it from disk and clicks the views
with no kernel. Other outputs are written as text (a progress bar as its final line) and images as images;
the prose's LaTeX stays as written (no MathJax: nothing is loaded)::

    python tools/course.py --handouts build/handouts         # every notebook with an exercise
    python tools/course.py --handouts build/handouts notebooks/01_attention.ipynb
"""

from __future__ import annotations

import html
import json
import os
import sys
import tempfile
from pathlib import Path

import mistune
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, in this process as in the kernel (_pythonpath)
from llmasos_widgets.views import export  # noqa: E402

WIDGET = "application/vnd.jupyter.widget-view+json"

# Run in the kernel after a cell that displayed widgets: each of our views among them (or among a box's
# children) exported to <folder>/<model id>.html, as save_html's parts.
EXPORT_IN_KERNEL = """
def _lw_handout_export(model_ids, folder):
    import pathlib
    from ipywidgets.widgets.widget import _instances
    from llmasos_widgets.views import export
    from llmasos_widgets.views.base import ViewBase
    for mid in model_ids:
        w = _instances.get(mid)
        views = [w] if isinstance(w, ViewBase) else [c for c in getattr(w, "children", ()) if isinstance(c, ViewBase)]
        if views:
            parts = [export.view_part(v, f"lw-{mid}-{i}")[0] for i, v in enumerate(views)]
            pathlib.Path(folder, mid + ".html").write_text("\\n".join(parts), encoding="utf-8")
"""

STYLE = """
.lw-handout-code { background: #f6f8fa; padding: 8px; border-left: 3px solid #4078c0; overflow-x: auto; }
.lw-handout-out { padding: 4px 8px; overflow-x: auto; border-left: 3px solid #ddd; }
.lw-handout-err { color: #b00; }
main { max-width: 1100px; }
"""


def _text(data: object) -> str:
    return "".join(data) if isinstance(data, list) else str(data)


def output_html(output: dict, exported: dict[str, str]) -> str:
    """One output as HTML: a view's export, an image, or text (escaped: model text is never markup)."""
    kind = output["output_type"]
    if kind == "stream":
        return f"<pre class='lw-handout-out'>{html.escape(_text(output['text']))}</pre>"
    if kind == "error":
        error = html.escape(f"{output['ename']}: {output['evalue']}")
        return f"<pre class='lw-handout-out lw-handout-err'>{error}</pre>"
    data = output.get("data", {})
    model_id = data.get(WIDGET, {}).get("model_id")
    if model_id in exported:
        return exported[model_id]
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            return f"<img alt='output' src='data:{mime};base64,{_text(data[mime]).strip()}'>"
    text = _text(data.get("text/plain", ""))
    return f"<pre class='lw-handout-out'>{html.escape(text)}</pre>" if text.strip() else ""


def widget_ids(outputs: list) -> list[str]:
    return [o["data"][WIDGET]["model_id"] for o in outputs if WIDGET in o.get("data", {})]


def handout(notebook: str | os.PathLike[str], out_folder: str | os.PathLike[str], timeout: int = 1800) -> Path:
    """Run ``notebook`` and write ``<out_folder>/<name>.html``; returns its path."""
    source = Path(notebook)
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    path = export.check_path(out / (source.stem + ".html"))
    nb = nbformat.read(source, as_version=4)
    markdown = mistune.create_markdown(escape=False, plugins=["table", "math"])
    body: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": work}}, allow_errors=False
        )
        with client.setup_kernel(env={**os.environ, "PYTHONPATH": _pythonpath()}):
            cells = list(nb.cells)
            scratch = len(cells)  # the kernel-side export runs as a cell of its own, after the notebook's
            nb.cells.append(nbformat.v4.new_code_cell(EXPORT_IN_KERNEL))
            client.execute_cell(nb.cells[scratch], scratch)
            for i, cell in enumerate(cells):
                if cell.cell_type == "markdown":
                    body.append(f"<section>{markdown(cell.source)}</section>")
                    continue
                if cell.cell_type != "code":
                    continue
                client.execute_cell(cell, i)
                ids = widget_ids(cell.outputs)
                if ids:
                    call = f"_lw_handout_export({json.dumps(ids)}, {json.dumps(work)})"
                    nb.cells[scratch] = nbformat.v4.new_code_cell(call)
                    client.execute_cell(nb.cells[scratch], scratch)
                exported = {p.stem: p.read_text(encoding="utf-8") for p in Path(work).glob("*.html") if p.stem in ids}
                shown = "\n".join(line for line in cell.source.splitlines() if not line.startswith("# NBVAL_"))
                code = html.escape(shown)  # without the notebook checker's markers
                outs = "".join(output_html(o, exported) for o in cell.outputs)
                body.append(f"<pre class='lw-handout-code'>{code}</pre>{outs}")
    title = source.stem
    note = (
        f"<p class='lw-export-note'>Handout of {html.escape(source.name)}: every view works offline with no kernel; "
        "clicks are answered from what was recorded when the handout was made.</p>"
    )
    runtime = export.check_bundles([])
    size = export.write_page(
        path, export.page(title, note + "<main>" + "\n".join(body) + "</main>", runtime, style=STYLE)
    )
    print(f"wrote {path} ({size / 2**20:.1f} MB)")
    return path


def _pythonpath() -> str:
    """The checkout first, so the kernel imports the package the handout documents."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
