"""tools/course.py: the student copies hide every solution, keep every signature, and run to a verdict."""

import ast
import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import llmasos_widgets as lw
from llmasos_widgets.views import export

ROOT = Path(__file__).parent.parent
spec = importlib.util.spec_from_file_location("course", ROOT / "tools" / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def solution_cells(notebook):
    return [c for c in notebook["cells"] if "solution" in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_an_exercise_with_a_planted_mistake(path):
    notebook = json.loads(path.read_text())
    cells = solution_cells(notebook)
    assert cells, f"{path.name} has no exercise (a code cell tagged 'solution')"
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert any("lw.check(" in s and "assert not wrong.passed" in s for s in sources)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_student_copy_hides_each_solution_and_keeps_its_signature(path):
    notebook = json.loads(path.read_text())
    student = course.student_copy(notebook)
    hidden = set()
    for original, copy in zip(notebook["cells"], student["cells"], strict=True):
        if "solution" not in original.get("metadata", {}).get("tags", []):
            assert copy["source"] == original["source"]
            uses = original["cell_type"] == "code" and any(
                isinstance(n, ast.Name) and n.id in hidden for n in ast.walk(ast.parse("".join(original["source"])))
            )
            # Compared by nbval in the student's copy too, unless it calls the student's function (run only).
            assert copy.get("outputs") == ([] if uses else original.get("outputs"))
            continue
        hidden |= {n.name for n in ast.parse("".join(original["source"])).body if isinstance(n, ast.FunctionDef)}
        before, after = ast.parse("".join(original["source"])), ast.parse("".join(copy["source"]))
        defs = [n for n in before.body if isinstance(n, ast.FunctionDef)]
        stubs = {n.name: n for n in after.body if isinstance(n, ast.FunctionDef)}
        for fn in defs:
            assert ast.dump(fn.args) == ast.dump(stubs[fn.name].args)  # the same signature
            body = ast.unparse(fn.body)
            assert body not in "".join(copy["source"])  # the solution is gone
            assert isinstance(stubs[fn.name].body[-1], ast.Raise)
        assert "assert verdict.passed" not in "".join(copy["source"])
        assert copy["outputs"] == [] and copy["execution_count"] is None  # run by nbval, not compared


def test_a_stub_gets_a_verdict_not_an_exception():
    namespace = {}
    exec(course.hide("def top_k(logits, k):\n    return logits.topk(k)\n"), namespace)
    verdict = lw.check("top_k", namespace["top_k"], models=["tiny-llama"])
    assert not verdict.passed and "NotImplementedError" in verdict.message


def test_a_handout_holds_the_prose_the_code_the_outputs_and_each_view_offline(tmp_path):
    import nbformat

    handouts = _load_handouts()
    text = "The capital of France is"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Tokens\n\nThe **tokens** of a text, and $x_i$."),
            nbformat.v4.new_code_cell(
                "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')\nprint('<b>x</b>')"
            ),
            nbformat.v4.new_code_cell(f"lw.TokensView(model.trace({text!r}))"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "tokens.ipynb"
    nbformat.write(nb, source)
    page = handouts.handout(source, tmp_path / "out").read_text(encoding="utf-8")
    assert "<h1>Tokens</h1>" in page and "<strong>tokens</strong>" in page
    assert "lw.TokensView(model.trace(&#x27;The capital" in page  # the code, escaped
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page  # printed text stays text
    # The view's offline data: its bundle, its traits and the predictions it recorded at every token.
    [packed] = re.findall(r'<script type="application/octet-stream" class="lw-export"[^>]*>([^<]*)</script>', page)
    data = export.unpack(packed)
    trace = lw.load_model("tiny-llama").trace(text)
    assert data["state"]["tokens"] == trace.tokens and len(data["recorded"]) == len(trace)
    assert "Content-Security-Policy" in page and page.count("DecompressionStream") == 1  # one runtime
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing from a network


def _load_handouts():
    sys.path.insert(0, str(ROOT / "tools"))
    return importlib.import_module("handouts")
