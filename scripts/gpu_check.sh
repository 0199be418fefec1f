#!/usr/bin/env bash
# The ONE prepared script for a lent GPU machine (offline; its python has cupy-cuda13x and torch with
# CUDA).  From this checkout, once, on a machine that reaches PyPI: `bash scripts/fetch_gpu_wheels.sh`
# (fills .whl/); then on the GPU, from the repository root (the device tool: carry [".whl"],
# timeout_s 570):
#
#     bash scripts/gpu_check.sh          # gpu tests, then the benchmark with torch.compile   (<= 9 min)
#     bash scripts/gpu_check.sh quick    # gpu tests + benchmark without torch.compile       (<= 6 min)
#     bash scripts/gpu_check.sh ops      # full, then tests/ops with every tensor on cuda    (<= 9.5 min)
#
# Nothing is downloaded.  Python packages the machine lacks (llvmlite, networkx, hypothesis, pytest
# and their deps) are installed from .whl/ when it was carried along into /tmp/ember-site, appended
# to PYTHONPATH (never shadowing the machine's own).  Every step runs under `timeout` (a hung step
# is killed and the next one runs); what is missing is skipped and said so.
# Logs and results go to $OUT (default /tmp/ember-gpu-out):
#   env.txt          GPU, driver, python, package versions, what was installed
#   gpu_tests.log    python -m pytest -m gpu tests/cuda   (kernels, eager ops, models, CUDA graphs)
#   gpu_bench.log    python benchmarks/gpu_bench.py       (+ gpu_results.md: the tables; the training
#                    table has ms/step, host us/step, launches/step and GPU busy per variant)
#   ops_on_cuda.log  tests/ops with every tensor on cuda  (ops mode only)
#   summary.txt      one line per step with its exit status and duration
set -u
cd "$(dirname "$0")/.."
MODE=${1:-full}
OUT=${OUT:-/tmp/ember-gpu-out}
mkdir -p "$OUT"
export OUT
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/ember-cupy-cache}
export EMBER_CACHE_DIR=${EMBER_CACHE_DIR:-/tmp/ember-cache}
export PYTHONDONTWRITEBYTECODE=1

step() {   # step NAME TIMEOUT_S LOGFILE CMD...
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$(date +%s)
  echo "== $name: $*" | tee -a "$SUMMARY"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  echo "   -> rc=$rc in ${dt}s (log: $log)$([ $rc -eq 124 ] && echo ' TIMED OUT')" | tee -a "$SUMMARY"
  tail -n 15 "$OUT/$log" | sed 's/^/   | /'
}

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u)"; echo "mode: $MODE"; echo "git: $(git rev-parse --short HEAD 2>/dev/null) (+ working tree)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | head -5
  $PY -c "import sys; print('python', sys.version.split()[0])"
  for m in numpy cupy torch llvmlite networkx hypothesis pytest scipy; do
    $PY -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>/dev/null || echo "$m: MISSING"
  done
} > "$OUT/env.txt" 2>&1

# ------------------------------------------------- offline install of what is missing
SITE=/tmp/ember-site
installed=""
want() {   # want MODULE WHEEL_PREFIX...: install the wheels when MODULE does not import
  local mod=$1; shift
  if ! $PY -c "import $mod" 2>/dev/null; then
    for prefix in "$@"; do
      for w in .whl/${prefix}-*.whl; do
        [ -e "$w" ] || { echo "no wheel for $prefix in .whl/" >> "$OUT/env.txt"; continue; }
        if $PY -m pip install -q --no-index --no-deps --target "$SITE" "$w" >> "$OUT/env.txt" 2>&1; then
          installed="$installed $(basename "$w")"
        else
          echo "FAILED to install $w" >> "$OUT/env.txt"
        fi
      done
    done
  fi
}
if [ -d .whl ]; then
  mkdir -p "$SITE"
  export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$SITE"
  want pytest pytest pluggy iniconfig packaging pygments
  want pluggy pluggy
  want iniconfig iniconfig
  want packaging packaging
  want pygments pygments
  want llvmlite llvmlite
  want networkx networkx
  want hypothesis hypothesis attrs sortedcontainers
  want sortedcontainers sortedcontainers
  want attr attrs
else
  echo "no .whl/ folder carried: using the machine's packages only" >> "$OUT/env.txt"
fi
echo "installed from .whl:${installed:- nothing}" >> "$OUT/env.txt"
cat "$OUT/env.txt" | tee -a "$SUMMARY"

$PY - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import ember, ember.cuda as C
print("ember.cuda.is_available():", C.is_available(), "device_count:", C.device_count())
if C.is_available():
    from ember.runtime import cuda as rt
    print("device:", rt.device_info())
EOF

# ---------------------------------------------------------------- the checks
PYTEST=($PY -m pytest -p no:cacheprovider -q -rfE --tb=short)
# step limits add up to < 9 minutes (full) / < 6 (quick): run with the device tool's timeout_s=570
step "gpu tests" 200 gpu_tests.log "${PYTEST[@]}" -m gpu tests/cuda
if [ "$MODE" = quick ]; then
  step "gpu benchmark" 140 gpu_bench.log $PY benchmarks/gpu_bench.py --rounds 8 --no-torch-compile --budget 100
else
  # the training section stops starting variants after --budget s; one variant (torch.compile
  # included) gets --variant-timeout s to build and warm up, else it is an n/a row
  step "gpu benchmark" 320 gpu_bench.log $PY benchmarks/gpu_bench.py --rounds 8 --no-kernel-torch-compile --budget 170 --variant-timeout 75
fi
if [ "$MODE" = ops ]; then
  step "op tests on cuda" 100 ops_on_cuda.log "${PYTEST[@]}" -p tests.cuda.ops_on_cuda --maxfail=200 tests/ops
fi
[ -f "$OUT/gpu_results.md" ] && cp "$OUT/gpu_results.md" "$OUT/gpu_results.txt"
echo "== done; results in $OUT" | tee -a "$SUMMARY"
