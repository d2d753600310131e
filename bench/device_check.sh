#!/usr/bin/env bash
# The device check, in one call on a lent GPU machine (an H100 or H200: Python 3.12, its own torch and
# transformers, no Biopython, nothing to install). From the repository root:
#
#     bash bench/device_check.sh          # at most about 6 minutes; results in $OUT (default /tmp/virnucpro-device)
#
# bench/gpu.py runs its steps in order of value, each with its own deadline, and rewrites
# $OUT/gpu.json after every step (a run cut short keeps what it measured): bf16 DNABERT-S, bf16
# ESM-2 3B, end to end through `virnucpro embed`, agreement with fp32, the original-loop ratio, the
# GPU tests (pytest -m gpu; whole log in $OUT/gpu_tests.log), fp8, bf16-cast, the other kernels.
# $OUT: gpu_info.txt (card, driver, versions), gpu_bench.log (everything printed), gpu.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/virnucpro-device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/virnucpro-inductor}  # shared by the steps' processes
PYTHON=${PYTHON:-python3}
MINUTES=${MINUTES:-5.5}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    "$PYTHON" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)"
    "$PYTHON" -c "import triton; print('triton', triton.__version__)"
    command -v cc gcc nvcc
    nproc
    df -h /tmp
} > "$OUT/gpu_info.txt" 2>&1
cat "$OUT/gpu_info.txt"

# The outer limit is a backstop: the budget (MINUTES) ends the last step well before it.
timeout --signal=TERM --kill-after=10 $(( ${MINUTES%.*} * 60 + 90 )) \
    "$PYTHON" bench/gpu.py --json "$OUT/gpu.json" --logs "$OUT" --gpu-tests --minutes "$MINUTES" 2>&1 \
    | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
echo "bench/gpu.py exit status: $status"
exit "$status"
