#!/usr/bin/env bash
# The GPU figures of the scale-up issue in one device call, prepared so a session that is lent a
# GPU spends its 15 device minutes measuring, not setting up. Here, once: bash benchmarks/gpu_kit.sh
# Then the device tool:   run  command="bash benchmarks/gpu_check.sh"  carry=[".gpu"]  timeout_s=600
#
#   1. torch, albumentations and the GPU;
#   2. first call only: training throughput of the preset's step (bench_throughput): batch 2, batch 16,
#      and batch 2 under torch.compile;
#   3. the preset (default `full`) on the GPU through bench_denoiser (held-out RMSE, training time),
#      stopped by SIGINT BUDGET seconds after the call began. Its checkpoints stay in .cache/ (git-
#      ignored, kept on a warm machine): a second call within ~30 s resumes it (--resume) and skips 2.
#
# Compare with README: `full` trained 54.4 min on 2 CPU cores (AVX512-BF16), held-out RMSE 0.01138.
# Dry run on a CPU: PY=.venv/bin/python DEVICE=cpu PRESET=smoke bash benchmarks/gpu_check.sh
# (EXTRA="--flag value" adds train_denoiser flags, e.g. EXTRA="--epochs 200" BUDGET=40 to see it stop).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
BUDGET=${BUDGET:-560}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-full}; EXTRA=${EXTRA:-}; STEPS=${STEPS:-300}
LOG=${OUT:-.cache}/gpu_check.log
mkdir -p "$(dirname "$LOG")"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
if ! "$PY" -c "import albumentations" 2>/dev/null; then
    [ -d .gpu/whl ] || { echo "gpu_check: no albumentations and no .gpu/whl: run benchmarks/gpu_kit.sh here and carry .gpu" >&2; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
[ -f .gpu/data/train.zip ] || { echo "gpu_check: no .gpu/data/train.zip: run benchmarks/gpu_kit.sh here and carry .gpu" >&2; exit 1; }

{
    date -u
    nvidia-smi -L 2>/dev/null
    "$PY" -c "import torch, albumentations as A; print('torch', torch.__version__, '| albumentations', A.__version__,
'| cuda', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
    if [ ! -e ".cache/bench_$PRESET/denoiser_last.pt" ]; then
        for run in "--gpu-batch-size 2" "--gpu-batch-size 16" "--gpu-batch-size 2 --compile"; do
            timeout 150 "$PY" benchmarks/bench_throughput.py --preset "$PRESET" --device "$DEVICE" --steps "$STEPS" $run
        done
    fi
} 2>&1 | tee -a "$LOG"

left=$((BUDGET - (SECONDS - start)))
if [ "$left" -lt 30 ]; then
    echo "gpu_check: only $left s of BUDGET=$BUDGET left, no time to train; call again" | tee -a "$LOG"
    exit 1
fi
echo "gpu_check: $PRESET on $DEVICE for at most $left s (resumes from its last epoch if any)" | tee -a "$LOG"
timeout --signal=INT --kill-after=30 "$left" "$PY" benchmarks/bench_denoiser.py --preset "$PRESET" \
    --data-dir .gpu/data -- --device "$DEVICE" --resume $EXTRA 2>&1 | grep -v '^\s*$' | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ]; then
    echo "gpu_check: stopped at the budget; call again within ~30 s (warm machine) to resume" | tee -a "$LOG"
fi
exit "$rc"
