#!/usr/bin/env bash
# Open the tour notebook in JupyterLab (the bundled smollm2-135m model, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_FLAG=""; [ "$(id -u)" -ne 0 ] || ROOT_FLAG="--allow-root"   # JupyterLab refuses root without it
exec "${PYTHON:-python3}" -m jupyterlab $ROOT_FLAG "$@" notebooks/00_tour.ipynb
