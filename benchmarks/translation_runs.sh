#!/bin/bash
# The translation runs behind recipes/translation/README.md, two at a time on 1 thread each
# (2 cores). Usage: benchmarks/translation_runs.sh rnn|types   (run folders: runs/translation/)
# Every run that has its metrics.json is skipped, so an interrupted grid resumes.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
COMMON="recipe=translation threads=1 trainer.precision=32-true trainer.enable_progress_bar=false optimizer.fused=false"
run() {  # run <folder> <overrides...>
  local dir=runs/translation/$1; shift
  [ -f "$dir/metrics.json" ] && { echo "done already: $dir"; return; }
  $PY -m toolkit.train $COMMON "$@" hydra.run.dir="$dir" > "${dir}.log" 2>&1
  echo "$(date +%T) finished $dir (exit $?)"
}
pair() { run "$@" & }
case "${1:-}" in
  rnn)  # the Bahdanau GRU (experiment=translation_rnn) with additive, general (Luong's
        # unscaled score and scaled by 1/sqrt(512)), uniform and coverage attention, seeds 0-2,
        # two runs at a time; results/rnn/ keeps the small files
    R="experiment=translation_rnn"
    for seed in 0 1 2; do
      pair rnn-additive-seed$seed $R attention=additive seed=$seed
      run rnn-uniform-seed$seed $R attention=uniform seed=$seed
      wait
      pair rnn-general-seed$seed $R attention=general seed=$seed
      run rnn-general-scaled-seed$seed $R attention=general attention.options.scale=0.04419417 \
        seed=$seed
      wait
    done
    # coverage with See et al.'s loss throughout (seed 0), and the way See et al. train it:
    # coverage attention without the loss for 1,300 steps, then the loss (weight 1.0) for the
    # last 200 steps from the best checkpoint (lr 2e-4, no warm-up): 1,500 steps in all
    pair rnn-coverage-seed0 $R attention=coverage coverage_loss_weight=1.0 seed=0
    run rnn-coverage-first-seed0 $R attention=coverage seed=0 trainer.max_steps=1300
    wait
    ckpt=$(ls runs/translation/rnn-coverage-first-seed0/checkpoints/best*.ckpt | head -1)
    run rnn-coverage-final-seed0 $R attention=coverage seed=0 coverage_loss_weight=1.0 \
      init_from="$ckpt" trainer.max_steps=200 optimizer.lr=2e-4 scheduler.warmup_steps=0 \
      +trainer.val_check_interval=100
    for dir in runs/translation/rnn-*-seed?; do
      [ "$dir" = runs/translation/rnn-coverage-first-seed0 ] && continue
      out=recipes/translation/results/rnn/${dir#runs/translation/rnn-}
      mkdir -p "$out" && cp "$dir"/{metrics.json,per_example.jsonl.gz,config.yaml} "$out"/
    done ;;
  types)  # every registered type as the Transformer's attention, short equal budgets
    T="model=transformer trainer.precision=bf16-mixed trainer.max_epochs=1 trainer.max_time=00:00:03:00"
    set -- multihead scaled_dot dot general additive local linear uniform
    while [ $# -gt 0 ]; do
      pair "types-$1" $T attention=$1
      if [ $# -gt 1 ]; then run "types-$2" $T attention=$2; shift; fi
      wait; shift
    done
    # bf16 accuracy check: the multihead run again in fp32, same epochs
    run types-multihead-fp32 ${T/bf16-mixed/32-true} attention=multihead ;;
  *) echo "usage: $0 rnn|types"; exit 2 ;;
esac
