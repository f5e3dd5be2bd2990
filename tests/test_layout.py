"""The package's layout keeps its rules: layers that import downwards, no private names across modules,
no import cycle, no module past about 900 lines (DESIGN.md, "The package")."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmasos_widgets"
LAYERS = {"core": 0, "analyses": 1, "views": 2}  # a module imports from its own layer or the ones below
MAX_LINES = 950


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names, from inside ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    is_package = modules()[module].name == "__init__.py"
    base = package[: len(package) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, *, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` of the package's own imports in ``module``.

    With ``top_level_only``, imports inside functions and under ``if TYPE_CHECKING:`` are left out
    (they do not run when the module is imported, so they make no import-time cycle).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not top_level_only:
                    visit(child, False)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                if not top_level_only:
                    visit(child, False)
                continue
            if isinstance(child, ast.ImportFrom):
                target = resolve(module, child)
                if target.startswith("llmasos_widgets"):
                    names = [a.name for a in child.names]
                    # `from . import wire` imports a module: count it as that module
                    if all(f"{target}.{n}" in modules() for n in names):
                        found.extend((f"{target}.{n}", [], child.lineno) for n in names)
                    else:
                        found.append((target, names, child.lineno))
            visit(child, top)

    visit(tree, True)
    return found


def test_no_module_imports_a_private_name_from_another_module():
    bad = [
        f"{mod}:{line} imports {', '.join(n for n in names if n.startswith('_'))} from {target}"
        for mod, path in modules().items()
        for target, names, line in imports(mod, path, top_level_only=False)
        if target != mod and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert bad == []


def test_layers_import_downwards():
    bad = []
    for mod, path in modules().items():
        parts = mod.split(".")
        if len(parts) < 3 or parts[1] not in LAYERS:
            continue
        for target, _, line in imports(mod, path, top_level_only=False):
            tparts = target.split(".")
            if len(tparts) > 1 and tparts[1] in LAYERS and LAYERS[tparts[1]] > LAYERS[parts[1]]:
                bad.append(f"{mod}:{line} ({parts[1]}) imports {target} ({tparts[1]})")
    assert bad == []


def test_no_import_cycle():
    graph = {
        mod: {t for t, _, _ in imports(mod, path, top_level_only=True) if t in modules() and t != mod}
        for mod, path in modules().items()
    }
    # A package's __init__ re-exports its modules: an edge from a module to its own package's __init__
    # is the one a `from . import x` makes, not a cycle of code.
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not mod.startswith(t + ".")}
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

    def walk(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for nxt in sorted(graph[mod]):
            if state[nxt] == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif state[nxt] == 0:
                walk(nxt, [*path, nxt])
        state[mod] = 2

    for mod in sorted(graph):
        if state[mod] == 0:
            walk(mod, [mod])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_past_about_900_lines(name):
    n = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines: split it by concern"
