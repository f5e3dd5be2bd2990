#!/usr/bin/env bash
# Open the tour notebook in JupyterLab (the bundled smollm2-135m model, offline), from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv here: run bash scripts/setup.sh first" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"   # the kernel JupyterLab starts is this environment's Python
ROOT_FLAG=""; [ "$(id -u)" -ne 0 ] || ROOT_FLAG="--allow-root"   # JupyterLab refuses root without it
exec .venv/bin/python -m jupyterlab $ROOT_FLAG "$@" notebooks/00_tour.ipynb
