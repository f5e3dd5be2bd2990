#!/usr/bin/env bash
# Every test: Python unit and integration tests, doctests, browser tests in JupyterLab + Chromium,
# the notebooks under nbval, and the TypeScript unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export LW_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
npm test --silent
"$PY" -m pytest -q tests llmasos_widgets
"$PY" -m pytest -q --nbval --sanitize-with notebooks/sanitize.cfg notebooks
