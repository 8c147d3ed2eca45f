#!/bin/bash
# The captioning and speech runs behind recipes/captioning/README.md and recipes/asr/README.md
# (one after another, threads=2 on the 2-core machine); the small result files a README table
# is generated from are copied under recipes/<recipe>/results/. Per-type grids go through
# `toolkit.compare`, which reuses finished runs and writes results.csv/results.md per grid.
# Usage: benchmarks/recipe_runs.sh asr-noise|asr-types|asr-default|asr-sentences|
#                                  captioning-types|captioning-default|captioning-ablation|
#                                  sentiment-grid|sentiment-transformer
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TYPES="[additive,dot,general,scaled_dot,multihead,local,linear,uniform]"
THREADS=${THREADS:-2}
train() {  # train <folder> <overrides...>: one run unless it has finished already
  local dir=$1; shift
  [ -f "$dir/metrics.json" ] && { echo "done already: $dir"; return; }
  mkdir -p "$(dirname "$dir")"
  $PY -m toolkit.train "$@" threads="$THREADS" trainer.enable_progress_bar=false \
    hydra.run.dir="$dir" > "$dir.log" 2>&1
  echo "$(date +%T) finished $dir (exit $?)"
}
lane() {  # lane "<name> <overrides...>" ...: sentiment runs one after another, files kept
  for spec in "$@"; do
    set -- $spec; local name=$1; shift
    train "runs/sentiment/$name" recipe=sentiment "$@"
    keep "runs/sentiment/$name" "recipes/sentiment/results/default/$name"
  done
}
keep() {  # keep <run folder> <results folder>: the small files a README table is made from
  mkdir -p "$2"
  cp "$1/metrics.json" "$2/"
  [ -f "$1/per_example.jsonl.gz" ] && cp "$1/per_example.jsonl.gz" "$2/"
  return 0
}
grid() {  # grid <recipe> <runs_dir> <overrides list>: every registered type, one seed
  $PY -m toolkit.compare profile=full "seeds=[1]" "recipes=[$1]" "attentions=$TYPES" \
    "overrides=$3" runs_dir="$2" out="$2/report"
}
case "${1:-}" in
  asr-noise)  # the default recipe trained without noise or reverberation (the ablation)
    train runs/asr/ablation-clean-train recipe=asr data.noise.prob=0 data.noise.reverb_prob=0 ;;
  asr-types)  # every type as the encoder self-attention; 3 min (<= 2 epochs), CTC greedy
    grid asr runs/types-asr '["threads=2","trainer.max_epochs=2","trainer.max_time=00:00:03:00","scheduler.warmup_steps=100","decode.mode=ctc_greedy","data.test_noise.snrs=[10,0]","data.test_noise.rt60s=[]"]' ;;
  captioning-types)  # every type in the LSTM decoder (1 epoch), plus the Transformer decoder
    grid captioning runs/types-captioning '["threads=2","trainer.max_epochs=1"]'
    train runs/types-captioning/transformer-multihead recipe=captioning model=transformer \
      attention=multihead trainer.max_epochs=1 ;;
  captioning-default)  # the default config (additive, 15 epochs): README results, files kept
    train runs/captioning/default-additive-15ep recipe=captioning attention=additive
    keep runs/captioning/default-additive-15ep recipes/captioning/results/default
    # the same checkpoint decoded greedily
    d=runs/captioning/default-additive-15ep
    [ -f "$d-greedy/metrics.json" ] || $PY -m toolkit.evaluate "ckpt=$(ls $d/checkpoints/best*.ckpt | head -1)" \
      decode.beam_size=1 hydra.run.dir="$d-greedy" > "$d-greedy.log" 2>&1
    keep "$d-greedy" recipes/captioning/results/default-greedy ;;
  captioning-ablation)  # the default config with a mean over the regions instead of attention
    train runs/captioning/ablation-mean-15ep recipe=captioning attention=uniform model.attend=mean
    keep runs/captioning/ablation-mean-15ep recipes/captioning/results/ablation-mean ;;
  sentiment-grid)  # the default config (5 epochs) per pooling type with the BiGRU encoder,
    # seeds 2 and 3 for two types; two lanes of one thread each on the 2-core machine
    THREADS=1
    lane "bigru-additive model=bigru attention=additive" "bigru-dot model=bigru attention=dot" \
      "bigru-scaled_dot model=bigru attention=scaled_dot" "bigru-linear model=bigru attention=linear" \
      "bigru-additive-seed2 model=bigru attention=additive seed=2" \
      "bigru-additive-seed3 model=bigru attention=additive seed=3" &
    lane "bigru-general model=bigru attention=general" "bigru-multihead model=bigru attention=multihead" \
      "bigru-uniform model=bigru attention=uniform" \
      "bigru-multihead-seed2 model=bigru attention=multihead seed=2" \
      "bigru-multihead-seed3 model=bigru attention=multihead seed=3" &
    wait ;;
  sentiment-transformer)  # the 2-layer Transformer encoder with two self-attention types
    THREADS=1
    lane "transformer-multihead model=transformer attention=multihead" &
    lane "transformer-local model=transformer attention=local" &
    wait ;;
  asr-default)  # the default config (multihead, 13 epochs), its decoding sweep on the
    # validation set, and the README tables from the copied result files
    # (tested with the joint beam at weight 0.9 as well as CTC greedy: both tables in the README)
    train runs/asr/default recipe=asr decode.mode=joint decode.ctc_weight=0.9
    ck=$(ls runs/asr/default/checkpoints/best*.ckpt | head -1)
    $PY benchmarks/asr_decode_sweep.py "$ck" --out recipes/asr/results/decode_sweep
    mkdir -p recipes/asr/results/default
    cp runs/asr/default/{metrics.json,wer_table.csv,ctc_greedy_wer_table.csv} recipes/asr/results/default/
    $PY benchmarks/readme_tables.py --write ;;
  asr-sentences)  # the open-vocabulary variant, sentencepiece units: 2,200 steps (4.4 epochs
    # of the 16,000 utterances), the step count that fills 60 minutes on 2 AVX2 cores
    # (1.55 s per step measured over 40 steps)
    train runs/asr/sentences-sp256 recipe=asr data.text=sentences data.tokens=sentencepiece \
      trainer.max_epochs=null trainer.max_steps=2200
    keep runs/asr/sentences-sp256 recipes/asr/results/sentences
    cp runs/asr/sentences-sp256/{wer_table.csv,ctc_greedy_wer_table.csv} recipes/asr/results/sentences/ 2>/dev/null
    true ;;
  *) echo "usage: $0 asr-noise|asr-types|asr-default|asr-sentences|captioning-types|captioning-default|captioning-ablation|sentiment-grid|sentiment-transformer"
     exit 2 ;;
esac
