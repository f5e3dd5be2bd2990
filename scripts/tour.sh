#!/usr/bin/env bash
# Open the tour notebook in JupyterLab (the bundled smollm2-135m model, offline), from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv here: run bash scripts/setup.sh first" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"   # the kernel JupyterLab starts is this environment's Python
exec .venv/bin/llmasos-widgets lab "$@"
