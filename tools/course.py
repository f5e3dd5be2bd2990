"""Write the student copy of each notebook: exercise solutions hidden, everything else as it is.

One source: the notebooks in ``notebooks/`` are the solution copies (each exercise's solution cell is
tagged ``solution``). In a student copy, each function defined at the top level of a solution cell keeps
its signature and loses its body (it raises ``NotImplementedError`` until the student writes it), and the
``assert verdict.passed`` line is dropped, so the cell runs and prints the checker's verdict::

    python tools/course.py              # writes build/student/<name>.ipynb (build/ is not committed)
    pytest --nbval-lax build/student    # each cell runs; an exercise cell prints its FAIL verdict
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
    """A copy of ``notebook`` with its ``solution``-tagged cells hidden (see :func:`hide`) and outputs cleared."""
    copy = json.loads(json.dumps(notebook))
    for cell in copy["cells"]:
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if "solution" in cell.get("metadata", {}).get("tags", []):
            text = hide("".join(cell["source"]))
            cell["source"] = text.splitlines(keepends=True)
            cell["metadata"]["tags"] = [t for t in cell["metadata"]["tags"] if t != "solution"] + ["exercise"]
    return copy


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
    main(*sys.argv[1:])
