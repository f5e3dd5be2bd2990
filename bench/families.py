"""Every supported causal family against its references, as a family x analysis table of largest differences.

The comparisons are tests/core/test_families.py's own ``measure_*`` functions (HF eager attention and plain
hooks, a hook loop for patching, captum for attribution, ``generate`` for steering), printed as a Markdown
table to paste. Run from the repository root: ``python -m bench.families`` (about a minute per family on 2 cores).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import warnings  # noqa: E402

import llmasos_widgets as lw  # noqa: E402
from llmasos_widgets.analyses import causal  # noqa: E402
from tests.core import test_families as t  # noqa: E402


def row(name: str) -> dict[str, float]:
    model = lw.load_model(name)
    cells = dict(t.measure_trace(model))
    for over in causal.SITES:
        cells[f"patch {over}"] = t.measure_patching(model, over)
    cells.update(t.measure_attribution(model))
    cells.update(t.measure_steering(model))
    cells["SAE read"] = t.measure_sae(model)
    if t.FAMILIES[name][4] is not None:  # a mixture's expert units are checked by tests/core/test_moe.py
        cells["neurons"] = t.measure_neurons(model)
    return cells


def main(names: list[str]) -> None:
    warnings.filterwarnings("ignore")
    rows = {}
    for name in names:
        start = time.perf_counter()
        rows[name] = row(name)
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    columns = list(dict.fromkeys(c for cells in rows.values() for c in cells))
    print("| family | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, cells in rows.items():
        shown = [
            "—" if c not in cells else f"{cells[c]:.0f}" if "tokens" in c else f"{cells[c]:.1e}"  # a count, or a gap
            for c in columns
        ]
        print(f"| {name} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or list(t.FAMILIES))
