#!/usr/bin/env bash
# The device check, in one call on a lent GPU machine (an H200: Python 3.12, its own torch and
# transformers, no Biopython, nothing to install). From the repository root:
#
#     bash bench/device_check.sh          # about 8 minutes; results in $OUT (default /tmp/virnucpro-device)
#
# 1. the GPU tests (pytest -m gpu): compiled FlexAttention against the CPU reference, mixed bf16
#    and fp8 against fp32, pinned-memory staging, no CUDA context in the parent;
# 2. bench/gpu.py: every model, precision and path, agreement, the original-loop ratio, end to end
#    through `virnucpro embed`, scaling when several GPUs are visible; table on stdout, JSON in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/virnucpro-device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>&1 | tee "$OUT/gpu_info.txt"
"$PYTHON" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)" 2>&1 | tee -a "$OUT/gpu_info.txt"

timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_gpu_paths.py tests/test_embedding_engine.py tests/test_pool.py 2>&1 | tail -25 | tee "$OUT/gpu_tests.txt"

timeout 420 "$PYTHON" bench/gpu.py --json "$OUT/gpu.json" --minutes 6 2>&1 | tee "$OUT/gpu_bench.txt"
status=${PIPESTATUS[0]}
echo "bench/gpu.py exit status: $status"
exit "$status"
