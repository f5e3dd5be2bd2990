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
# The notebooks under nbval, on other kernels than the ones that saved them. They are saved by executing
# them in order (torch on its default 2 threads or on 1; notebooks 00-06 were last saved on 1), without widget state:
#   jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.store_widget_state=False \
#     --ExecutePreprocessor.record_timing=False notebooks/NAME.ipynb
# Here torch runs 1 thread (it reads OMP_NUM_THREADS when imported, and the kernels nbval starts inherit
# it) and the AVX2 code paths of ATen and MKL: a sum split over another number of threads or computed with
# other vector instructions rounds differently, so an output that depends on the last bits of a float (a
# -0.00, an order between equal activations, a draw whose population moves with rounding) fails here as it
# would on another machine. Where AVX-512 is missing the two AVX2 switches change nothing; the thread
# count still does.
threads=$(OMP_NUM_THREADS=1 "$PY" -c "import torch; print(torch.get_num_threads())")
[ "$threads" = 1 ] || { echo "torch runs $threads threads under OMP_NUM_THREADS=1" >&2; exit 1; }
nbval() {
  OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    "$PY" -m pytest -q -p no:cacheprovider --nbval --sanitize-with notebooks/sanitize.cfg "$1"
}
# The student copies (tools/course.py: solutions hidden) under the same nbval: each exercise cell runs and prints
# its verdict (its outputs are cleared, so not compared); every other cell must print what the solution's does.
# The two passes run side by side, one torch thread each (a machine's two cores), each into its own log.
"$PY" tools/course.py >/dev/null
nbval notebooks >build/nbval-notebooks.log 2>&1 &
notebooks=$!
nbval build/student >build/nbval-student.log 2>&1 &
students=$!
failed=0
wait "$notebooks" || failed=1
wait "$students" || failed=1
cat build/nbval-notebooks.log build/nbval-student.log
exit "$failed"
