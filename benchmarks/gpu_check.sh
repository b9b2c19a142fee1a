#!/usr/bin/env bash
# The GPU figures (docs/gpu.md) in one run of about 10 minutes on a machine with one GPU and no network,
# prepared so that its time goes to measuring, not setting up. Here, once: bash benchmarks/gpu_kit.sh
# Then copy the project with its .gpu/ folder to the GPU machine and run there: bash benchmarks/gpu_check.sh
#
#   1. torch, albumentations and the GPU;
#   2. unless a run is resumed: training throughput of the preset's step (bench_throughput): batch 2
#      with the CUDA graph first (fit's default, profiled: what the CPU still does per step; if it
#      fails, GRAPH=auto stops there, saying that GRAPH=no trains without it), batch 2 eager with
#      a CPU profile and the patch sampling rate, the graphs in fp32 and in fp16 with the grad scaler
#      (T4/P100's path), fp16 eager, and batch 4 with the graphs. (Eager fp32, batch 16 and
#      torch.compile's reduce-overhead are not timed here: docs/gpu.md has their figures);
#   3. the preset (default `full`) on the GPU through bench_denoiser (held-out RMSE, training time),
#      with --cuda-graph if step 2 measured it at least 1.3x faster than batch 2 eager (GRAPH=auto|yes|no),
#      then in fp32 (--no-amp) if that measured 10 % faster than bf16 with the graphs (AMP=auto|yes|no),
#      compiled if COMPILE=yes (it gains little: docs/gpu.md), stopped by SIGINT when
#      BUDGET seconds minus RESERVE have passed. Its checkpoints stay in .cache/ (git-ignored): running
#      the script again resumes it (--resume), skipping 2;
#   4. with the graphs, if step 3 finished and RESERVE + 120 s are left (B4=auto|no): the preset at
#      batch 4 (--name denoiser_b4), a lead for a GPU recipe (docs/recipe.md), stopped like step 3;
#   5. with the RESERVE left: make_submission on the 72 test pages with step 3's model, timed.
# (torchrun's NCCL path needs two GPUs: with one, torchrun --nproc_per_node=1 starts no process group.)
#
# Compare with `full` on 2 CPU cores: docs/results.md, row 2.
# Dry run on a CPU (after gpu_kit.sh; rm -r .cache/bench_smoke for a fresh run, it resumes any there):
#   PY=.venv/bin/python DEVICE=cpu PRESET=smoke bash benchmarks/gpu_check.sh
# (EXTRA="--flag value" adds train_denoiser flags, e.g. EXTRA="--epochs 200" BUDGET=60 to see it stop).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
BUDGET=${BUDGET:-560}; RESERVE=${RESERVE:-75}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-full}
EXTRA=${EXTRA:-}; STEPS=${STEPS:-300}; COMPILE=${COMPILE:-no}; GRAPH=${GRAPH:-auto}; AMP=${AMP:-auto}
B4=${B4:-auto}
LOG=${OUT:-.cache}/gpu_check.log
mkdir -p "$(dirname "$LOG")" .cache
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
if ! "$PY" -c "import albumentations" 2>/dev/null; then
    [ -d .gpu/whl ] || { echo "gpu_check: no albumentations and no .gpu/whl: run benchmarks/gpu_kit.sh first and copy .gpu/ along" >&2; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
[ -f .gpu/data/train.zip ] || { echo "gpu_check: no .gpu/data/train.zip: run benchmarks/gpu_kit.sh first and copy .gpu/ along" >&2; exit 1; }
left() { echo $((BUDGET - (SECONDS - start))); }
rate() { sed -n 's/.*: \([0-9.]*\) patches\/s.*/\1/p' ".cache/throughput_$1.txt" 2>/dev/null | tail -1; }

{
    date -u
    nvidia-smi -L 2>/dev/null
    "$PY" -c "import torch, albumentations as A; print('torch', torch.__version__, '| albumentations', A.__version__,
'| cuda', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
    if [ ! -e ".cache/bench_$PRESET/denoiser_last.pt" ]; then
        for run in "b2g:--gpu-batch-size 2 --cuda-graph --profile" \
                   "b2:--gpu-batch-size 2 --sampling --workers 4 --profile" \
                   "b2gf32:--gpu-batch-size 2 --cuda-graph --no-amp" "b2g16:--gpu-batch-size 2 --cuda-graph --fp16" \
                   "b2f16:--gpu-batch-size 2 --fp16" "b4g:--gpu-batch-size 4 --cuda-graph"; do
            [ "$DEVICE" = cuda ] || case $run in *--cuda-graph*|*--fp16*) continue;; esac   # a CPU dry run
            timeout 120 "$PY" benchmarks/bench_throughput.py --preset "$PRESET" --device "$DEVICE" --steps "$STEPS" \
                ${run#*:} 2>&1 | tee ".cache/throughput_${run%%:*}.txt"
            if [ "${run%%:*}" = b2g ] && [ "$GRAPH" = auto ] && [ -z "$(rate b2g)" ]; then
                echo "gpu_check: --cuda-graph FAILED in bench_throughput (above): stopping, GRAPH=no trains without it"
                exit 3
            fi
        done
    fi
} 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 3 ] && exit 3

if [ "$GRAPH" = auto ]; then
    eager=$(rate b2); graphed=$(rate b2g)
    GRAPH=$(awk -v e="${eager:-0}" -v g="${graphed:-0}" 'BEGIN { print (e > 0 && g > 1.3 * e) ? "yes" : "no" }')
    echo "gpu_check: batch 2 eager ${eager:-?}, CUDA graph ${graphed:-?} patches/s: cuda-graph=$GRAPH" | tee -a "$LOG"
fi
# GRAPH_FLAGS: what the graphs decided (train_denoiser's default is on), replaced by the retry below;
# an explicit AMP=no stays in EXTRA.
GRAPH_FLAGS="--no-cuda-graph"
if [ "$GRAPH" = yes ]; then
    GRAPH_FLAGS="--cuda-graph"
    if [ "$AMP" = auto ]; then
        # With the launches gone the GPU's own time counts: keep bf16 unless fp32 measured 10 % faster.
        bf16=$(rate b2g); fp32=$(rate b2gf32)
        amp=$(awk -v b="${bf16:-0}" -v f="${fp32:-0}" 'BEGIN { print (b > 0 && f > 1.1 * b) ? "no" : "yes" }')
        echo "gpu_check: CUDA graph bf16 ${bf16:-?}, fp32 ${fp32:-?} patches/s: amp=$amp" | tee -a "$LOG"
        [ "$amp" = no ] && GRAPH_FLAGS="$GRAPH_FLAGS --no-amp"
    fi
fi
[ "$AMP" = no ] && EXTRA="$EXTRA --no-amp"
[ "$COMPILE" = yes ] && EXTRA="$EXTRA --compile"

train_s=$(( $(left) - RESERVE ))
if [ "$train_s" -lt 30 ]; then
    echo "gpu_check: only $(left) s of BUDGET=$BUDGET left, no time to train; run it again" | tee -a "$LOG"
    exit 1
fi
# train SECONDS [FLAGS...]: the preset through bench_denoiser, resumed, stopped by SIGINT after SECONDS.
train() {
    local seconds=$1; shift
    echo "gpu_check: $PRESET on $DEVICE for at most $seconds s (resumes from its last epoch if any): $*" | tee -a "$LOG"
    timeout --signal=INT --kill-after=20 "$seconds" "$PY" benchmarks/bench_denoiser.py --preset "$PRESET" \
        --data-dir .gpu/data -- --device "$DEVICE" --resume "$@" 2>&1 | grep -v '^\s*$' | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}
train "$train_s" $EXTRA $GRAPH_FLAGS
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$GRAPH" = yes ] && [ "$(left)" -gt $((RESERVE + 60)) ]; then
    # a GPU or driver that cannot capture: report the failure, measure without.
    echo "gpu_check: FAILED with --cuda-graph (rc $rc); training again without it" | tee -a "$LOG"
    train $(( $(left) - RESERVE )) $EXTRA --no-cuda-graph
    rc=$?
fi
[ "$rc" -eq 124 ] && echo "gpu_check: stopped at the budget; run it again to resume" | tee -a "$LOG"
if [ "$rc" -eq 0 ] && [ "$GRAPH" = yes ] && [ "$B4" = auto ] && [ "$(left)" -gt $((RESERVE + 120)) ]; then
    train $(( $(left) - RESERVE )) $EXTRA $GRAPH_FLAGS --batch-size 4 --name denoiser_b4
    rc4=$?
    [ "$rc4" -eq 124 ] && echo "gpu_check: batch 4 stopped at the budget; run it again to resume it" | tee -a "$LOG"
    [ "$rc4" -ne 0 ] && [ "$rc4" -ne 124 ] && rc=$rc4
fi

best=.cache/bench_$PRESET/denoiser_best.pt
if [ -f "$best" ] && [ "$(left)" -gt 15 ]; then
    echo "gpu_check: make_submission on $DEVICE with $best" | tee -a "$LOG"
    t0=$SECONDS
    timeout $(( $(left) - 5 )) "$PY" -m src.make_submission --checkpoint "$best" --data-dir .gpu/data \
        --device "$DEVICE" --out .cache/gpu_submission.csv 2>&1 | tail -3 | tee -a "$LOG"
    echo "gpu_check: make_submission took $((SECONDS - t0)) s (wall, process start included)" | tee -a "$LOG"
fi
echo "gpu_check: done in $((SECONDS - start)) s" | tee -a "$LOG"
exit "$rc"
