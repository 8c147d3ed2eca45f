#!/usr/bin/env bash
# The CUDA check in one script: the attention benchmark in bf16 (its Markdown names the SDPA
# kernel that ran: flash / memory-efficient / cuDNN / math) and one training epoch of each
# recipe with `trainer=gpu` (precision auto: bf16-mixed where the card runs bf16 natively).
#
#   bash benchmarks/gpu.sh [OUT]          # default OUT = runs/gpu
#
# Writes OUT/attention/attention.{csv,md,png}, OUT/runs/<recipe>/ (run folders) and, from them,
# OUT/recipes.csv and OUT/gpu.md (benchmarks/gpu_tables.py). Environment knobs:
#   SENTIMENT_ARGS, TRANSLATION_ARGS, CAPTIONING_ARGS, ASR_ARGS  extra Hydra overrides per
#       recipe (e.g. a smaller embedded corpus: CAPTIONING_ARGS="data.scenes.train=2000")
#   BENCH_ARGS      benchmark options (default: --lengths 1024 4096 16384)
#   BENCH_TIMEOUT, RECIPE_TIMEOUT  seconds before a step is stopped (600, 900)
#   PYTHON          interpreter (python3)
# The project never needs a GPU: nothing else calls this script.
set -uo pipefail
OUT=${1:-runs/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "benchmarks/gpu.sh: no CUDA device visible to $PY" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>/dev/null ||
    $PY -c 'import torch; print(torch.cuda.get_device_name(0))' >"$OUT/gpu.txt"
echo "[gpu.sh] $(cat "$OUT/gpu.txt")"

# shellcheck disable=SC2086  # BENCH_ARGS / *_ARGS are word lists on purpose
timeout "${BENCH_TIMEOUT:-600}" $PY benchmarks/attention.py --device cuda --dtype bfloat16 \
    ${BENCH_ARGS:---lengths 1024 4096 16384} --out "$OUT/attention" ||
    echo "[gpu.sh] attention benchmark stopped (exit $?); its finished rows are kept" >&2

for recipe in sentiment translation captioning asr; do
    var="${recipe^^}_ARGS"
    echo "[gpu.sh] $recipe: one epoch, trainer=gpu ${!var:-}"
    # shellcheck disable=SC2086
    timeout "${RECIPE_TIMEOUT:-900}" $PY -m toolkit.train recipe="$recipe" trainer=gpu \
        trainer.max_epochs=1 trainer.enable_progress_bar=false ${!var:-} \
        hydra.run.dir="$OUT/runs/$recipe" ||
        echo "[gpu.sh] $recipe stopped (exit $?)" >&2
done
$PY benchmarks/gpu_tables.py "$OUT"
