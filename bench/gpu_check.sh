#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, nvcc and a CUDA build of torch: builds ember_kernels with
# its CUDA ops (for this GPU's architecture only), runs tests/unit/test_kernels.py (CUDA cases
# included) and times each op against its reference on the GPU. About 2-3 minutes on a
# 16-core machine; well under 5.
#
#   bash bench/gpu_check.sh [OUTDIR]     # logs, table and plot go to OUTDIR (bench/out)
#
# Uses .venv/bin/python when there is one, else $PYTHON or python3 (the project is put on
# PYTHONPATH, so a machine with torch, lightning and transformers needs no install).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-bench/out}"
mkdir -p "$OUTDIR"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
case $PY in /*) ;; */*) PY="$PWD/$PY" ;; esac  # the build runs in kernels/
export PYTHONPATH="$PWD/kernels:$PWD/daemon:$PWD/clients/python:$PWD/examples${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export EMBER_KERNELS_CUDA=1  # a missing toolkit is an error here, not a CPU-only build
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST
fi

echo "== environment"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"
nvcc --version | tail -n 1
echo "arch $TORCH_CUDA_ARCH_LIST, $MAX_JOBS jobs"

echo "== build"
start=$(date +%s)
(cd kernels && "$PY" setup.py build_ext --inplace) >"$OUTDIR/gpu_build.log" 2>&1 || { tail -n 40 "$OUTDIR/gpu_build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s: $(ls kernels/ember_kernels/_C*.so)"

echo "== tests/unit/test_kernels.py"
set +e
"$PY" -m pytest -q -rs -p no:cacheprovider tests/unit/test_kernels.py 2>&1 | tee "$OUTDIR/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
set -e

echo "== timings on the GPU"
"$PY" bench/kernel_ops.py --device cuda --quick --plot "$OUTDIR/kernels_cuda.png" | tee "$OUTDIR/gpu_bench.txt"

echo "== DDP training samples/s per GPU (needs ../shared/data; does not change the exit code)"
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" bench/ddp_throughput.py --gpus --devices $(seq -s ' ' 1 "$ngpu") --rows 2000 2>"$OUTDIR/gpu_ddp.log" | tee "$OUTDIR/gpu_ddp.txt" \
  || tail -n 20 "$OUTDIR/gpu_ddp.log"
exit "$tests_rc"
