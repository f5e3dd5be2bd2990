#!/usr/bin/env bash
# Every test, inside the .venv that scripts/setup.sh built: undeclared imports (deptry), Python unit
# and integration tests, doctests, browser tests (JupyterLab, Notebook 7 and marimo in Chromium), the
# notebooks under nbval, and the TypeScript unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv here: run bash scripts/setup.sh first" >&2; exit 1; }
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"   # the kernel JupyterLab starts is this environment's Python
export LW_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" -m deptry llmasos_widgets
npm test --silent
"$PY" -m pytest -q tests llmasos_widgets
"$PY" -m pytest -q --nbval --sanitize-with notebooks/sanitize.cfg notebooks
