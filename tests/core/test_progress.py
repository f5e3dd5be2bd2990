"""core/progress.py: a notebook saved after a bar finished shows the final line, not a bar stuck at 0 %."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from llmasos_widgets.core.progress import tqdm


def run(*sources: str) -> list:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute(
        env=env
    )
    return [cell.outputs for cell in nb.cells]


def texts(outputs: list) -> list[str]:
    return [o["data"].get("text/plain", "") for o in outputs if o["output_type"] == "display_data"]


def test_a_finished_bar_is_saved_as_its_final_line_and_a_passing_one_as_text():
    done, gone, stopped = run(
        "from llmasos_widgets.core.progress import tqdm\nfor _ in tqdm(range(7), desc='counting', unit='x'):\n    pass",
        "for _ in tqdm(range(3), desc='passing', leave=False):\n    pass",
        "bar = tqdm(total=10, desc='stopped')\nbar.update(4)\nbar.close()",
    )
    [line] = texts(done)
    assert line.startswith("counting: 100%|") and "7/7" in line, line
    assert any(
        o["output_type"] == "display_data" and "application/vnd.jupyter.widget-view+json" in o["data"] for o in done
    )  # still the live widget in a page that runs widgets
    [line] = texts(gone)
    assert line.startswith("passing: 100%|") and all(
        "application/vnd.jupyter.widget-view+json" not in o["data"] for o in gone
    )
    [line] = texts(stopped)
    assert line.startswith("stopped:  40%|") and "4/10" in line, line


def test_outside_a_notebook_it_is_tqdms_text_bar(capsys: pytest.CaptureFixture[str]):
    for _ in tqdm(range(4), desc="text", file=None):
        pass
    assert "text: 100%" in capsys.readouterr().err
