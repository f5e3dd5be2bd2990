"""tools/course.py: the student copies hide every solution, keep every signature, and run to a verdict."""

import ast
import importlib.util
import json
from pathlib import Path

import pytest

import llmasos_widgets as lw

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
    for original, copy in zip(notebook["cells"], student["cells"], strict=True):
        if "solution" not in original.get("metadata", {}).get("tags", []):
            assert copy["source"] == original["source"]
            continue
        before, after = ast.parse("".join(original["source"])), ast.parse("".join(copy["source"]))
        defs = [n for n in before.body if isinstance(n, ast.FunctionDef)]
        stubs = {n.name: n for n in after.body if isinstance(n, ast.FunctionDef)}
        for fn in defs:
            assert ast.dump(fn.args) == ast.dump(stubs[fn.name].args)  # the same signature
            body = ast.unparse(fn.body)
            assert body not in "".join(copy["source"])  # the solution is gone
            assert isinstance(stubs[fn.name].body[-1], ast.Raise)
        assert "assert verdict.passed" not in "".join(copy["source"])
        assert copy["outputs"] == []


def test_a_stub_gets_a_verdict_not_an_exception():
    namespace = {}
    exec(course.hide("def top_k(logits, k):\n    return logits.topk(k)\n"), namespace)
    verdict = lw.check("top_k", namespace["top_k"], models=["tiny-llama"])
    assert not verdict.passed and "NotImplementedError" in verdict.message
