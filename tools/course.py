"""Write the student copy of each notebook: exercise solutions hidden, everything else as it is.

One source: the notebooks in ``notebooks/`` are the solution copies (each exercise's solution cell is
tagged ``solution``). In a student copy, each function defined at the top level of a solution cell keeps
its signature and loses its body (it raises ``NotImplementedError`` until the student writes it), and the
``assert verdict.passed`` line is dropped, so the cell runs and prints the checker's verdict; the other
cells keep the solution's outputs, which nbval compares::

    python tools/course.py              # writes build/student/<name>.ipynb (build/ is not committed)
    pytest --nbval --sanitize-with notebooks/sanitize.cfg build/student   # outputs compared, exercises run
    python tools/course.py --handouts build/handouts   # one offline HTML handout per notebook (handouts.py)
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

STUB = '    """Your code here."""\n    raise NotImplementedError("write this function, then run the cell")\n'


def hide(source: str) -> str:
    r"""``source`` with every top-level function's body replaced by a stub and ``assert verdict.passed`` dropped.

    >>> student = hide("def f(x):\n    return x + 1\n\n\nverdict = check(f)\nassert verdict.passed\n")
    >>> "return x + 1" in student, "raise NotImplementedError" in student, student.splitlines()[-1]
    (False, True, 'verdict = check(f)')
    """
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    taken = 0
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            header_end = node.body[0].lineno - 1  # the lines of the signature
            out += lines[taken:header_end]
            out.append(STUB)
            taken = node.end_lineno or header_end
    out += lines[taken:]
    return "".join(line for line in out if line.strip() != "assert verdict.passed")


def student_copy(notebook: dict) -> dict:
    """A copy of ``notebook`` with its ``solution``-tagged cells hidden (see :func:`hide`) and their outputs cleared.

    Every other cell keeps the solution copy's outputs, so ``pytest --nbval`` checks that the student's copy
    computes what the solution's does everywhere but in the exercises (a cell with no outputs and no execution
    count is run, not compared).
    """
    copy = json.loads(json.dumps(notebook))
    hidden: set[str] = set()  # the functions whose bodies the student writes
    for cell in copy["cells"]:
        if cell["cell_type"] != "code":
            continue
        solution = "solution" in cell.get("metadata", {}).get("tags", [])
        if solution:
            tree = ast.parse("".join(cell["source"]))
            hidden |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if solution or _uses(cell, hidden):
            # A cell that calls the student's function (a planted mistake built on it) prints something else
            # until it is written: run, not compared.
            cell["outputs"], cell["execution_count"] = [], None
        if solution:
            text = hide("".join(cell["source"]))
            cell["source"] = text.splitlines(keepends=True)
            cell["metadata"]["tags"] = [t for t in cell["metadata"]["tags"] if t != "solution"] + ["exercise"]
    return copy


def _uses(cell: dict, names: set[str]) -> bool:
    """Whether ``cell``'s code reads any of ``names``."""
    if not names:
        return False
    try:
        tree = ast.parse("".join(cell["source"]))
    except SyntaxError:  # IPython magics: compare the words
        return any(name in "".join(cell["source"]) for name in names)
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(tree))


def main(folder: str = "notebooks", out_folder: str = "build/student") -> None:
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(folder).glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        if not any("solution" in c.get("metadata", {}).get("tags", []) for c in notebook["cells"]):
            continue
        (out / path.name).write_text(json.dumps(student_copy(notebook), indent=1, ensure_ascii=False) + "\n")
        print("wrote", out / path.name)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--handouts"]:
        # python tools/course.py --handouts DIR [NOTEBOOK ...]: one offline HTML handout per notebook (handouts.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from handouts import handout

        if len(sys.argv) < 3:
            sys.exit("usage: python tools/course.py --handouts DIR [NOTEBOOK ...]")
        chosen = sys.argv[3:] or [
            str(p)
            for p in sorted(Path("notebooks").glob("*.ipynb"))
            if any("solution" in c.get("metadata", {}).get("tags", []) for c in json.loads(p.read_text())["cells"])
        ]
        for name in chosen:
            handout(name, sys.argv[2])
    else:
        main(*sys.argv[1:])
