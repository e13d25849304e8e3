#!/usr/bin/env bash
# Issue 4 device check, for a bare GPU machine without registry access: install resgraph, run the
# GPU tests, then the GPU benchmarks (cupy against numba). About 8 minutes at most: every step has
# its own timeout, and a failing step does not stop the next. Output also goes to
# $OUT/gpu_check.log when OUT is set.
#
#     bash benchmarks/gpu_check.sh            # from anywhere; PYTHON=python3.12 to pick the interpreter
#
# Offline installs come from benchmarks/wheels: setuptools, wheel and packaging (the build backend
# of the editable install) and the CPU-side dependencies pyamg, tqdm and threadpoolctl (Python 3.12
# wheels). osqp (reference QP solver) is not
# needed by these checks and is not brought.
set -u
cd "$(dirname "$0")/.."
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
fi
PY=${PYTHON:-python3}
WHEELS=benchmarks/wheels
START=$(date +%s)
STATUS=()
FAILED=0

step() { echo; echo "== $1 ($(( $(date +%s) - START )) s elapsed)"; }
record() { STATUS+=("$1: exit $2"); [ "$2" -eq 0 ] || FAILED=1; }

step "machine"
nvidia-smi -L || echo "nvidia-smi failed"
$PY -c "import sys; print('python', sys.version)"
$PY -c "import cupy; print('cupy', cupy.__version__, '-', cupy.cuda.runtime.getDeviceCount(), 'device(s)')" \
    || echo "cupy is not usable here"

step "install (offline)"
timeout -k 5 60 $PY -m pip install -q --no-index --find-links "$WHEELS" --no-deps pyamg tqdm threadpoolctl \
    || echo "pyamg/tqdm/threadpoolctl not installed: resgraph.solve needs threadpoolctl"
if timeout -k 5 120 $PY -m pip install -q --no-index --find-links "$WHEELS" --no-deps -e .; then
    echo "resgraph installed (editable)"
elif timeout -k 5 120 $PY -m pip install -q --no-build-isolation --no-deps -e .; then
    echo "resgraph installed (editable, no build isolation)"
else
    # Last resort: make `resgraph.backends` importable from this checkout without installing.
    echo "pip install failed; using this checkout through PYTHONPATH and a resgraph/backends link"
    if [ ! -e resgraph/backends ]; then
        ln -s ../backends resgraph/backends
        trap 'rm -f resgraph/backends' EXIT
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY -c "import resgraph, resgraph.backends; print('resgraph', resgraph.__version__, 'from', resgraph.__file__)"
record install $?

step "GPU tests: every test marked gpu, the DRN kernels on cupy, the CUDA source through NVRTC"
timeout -k 5 150 $PY -m pytest -q -rs tests/ -m gpu
record "gpu tests" $?
timeout -k 5 60 $PY -m pytest -q -rs "tests/test_drn.py::test_backend_kernels_agree_with_numpy" \
    "tests/test_cupy.py::test_cuda_sources_compile_with_nvrtc"
record "drn kernels + nvrtc" $?

step "benchmark: random networks, cupy vs numba"
timeout -k 5 130 $PY benchmarks/gpu_bench.py networks
record "networks benchmark" $?

step "benchmark: DRN epochs, cupy vs numba"
timeout -k 5 160 $PY benchmarks/gpu_bench.py drn
record "drn benchmark" $?

step "done"
printf '%s\n' "${STATUS[@]}"
exit $FAILED
