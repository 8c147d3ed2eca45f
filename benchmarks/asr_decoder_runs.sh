#!/bin/bash
# The speech recipe with the recurrent attention decoder (model.decoder=rnn) and location-aware
# attention, at the recipe's default budget (13 epochs, threads=2 on the 2-core machine):
#   1. train (test decoded with CTC greedy only, so nothing is chosen on the test set);
#   2. the validation decoding sweep (benchmarks/asr_decode_sweep.py: CTC greedy, attention
#      beam, joint beam at each CTC weight) -> recipes/asr/results/<name>/decode_sweep.{csv,md};
#   3. the test set decoded once with the setting of lowest validation WER (its metrics.json
#      also has the CTC-greedy WER of the same checkpoint when that setting is a beam).
# Usage: benchmarks/asr_decoder_runs.sh [rnn-location]     (run folders: runs/asr/)
# A step whose output exists is skipped, so an interrupted run resumes.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
case "${1:-rnn-location}" in
  rnn-location) NAME=rnn-location
    OVERRIDES="model.decoder=rnn model.decoder_attention=location" ;;
  *) echo "usage: $0 [rnn-location]"; exit 2 ;;
esac
RUN=runs/asr/$NAME
KEEP=recipes/asr/results/$NAME
mkdir -p runs/asr "$KEEP"

# 1. training at the default budget
if [ ! -f "$RUN/metrics.json" ]; then
  $PY -m toolkit.train recipe=asr $OVERRIDES decode.mode=ctc_greedy threads="$THREADS" \
    trainer.enable_progress_bar=false hydra.run.dir="$RUN" > "$RUN.log" 2>&1 \
    || { echo "training failed: $RUN.log"; exit 1; }
  echo "$(date +%T) trained $RUN"
fi
CKPT=$(ls "$RUN"/checkpoints/best*.ckpt | head -1)

# 2. decoding settings compared on the clean validation split
if [ ! -f "$KEEP/decode_sweep.csv" ]; then
  $PY benchmarks/asr_decode_sweep.py "$CKPT" --ctc-weights 0 0.3 0.5 0.7 0.9 --beams 5 \
    --threads "$THREADS" --out "$KEEP/decode_sweep" || { echo "sweep failed"; exit 1; }
  echo "$(date +%T) validation sweep: $KEEP/decode_sweep.md"
fi

# 3. the test set with the setting of lowest validation WER (ties: the earlier row, i.e.
# CTC greedy before the beams)
read -r MODE BEAM WEIGHT < <($PY - "$KEEP/decode_sweep.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
best = min(rows, key=lambda r: float(r["wer"]))
print(best["mode"], best["beam"], best["ctc_weight"] or 0.0)
EOF
)
echo "lowest validation WER: decode.mode=$MODE beam $BEAM ctc_weight $WEIGHT"
if [ ! -f "$RUN-test/metrics.json" ]; then
  $PY -m toolkit.evaluate "ckpt=$CKPT" decode.mode="$MODE" decode.beam_size="$BEAM" \
    decode.ctc_weight="$WEIGHT" hydra.run.dir="$RUN-test" \
    > "$RUN-test.log" 2>&1 || { echo "test decoding failed: $RUN-test.log"; exit 1; }
fi
cp "$RUN/metrics.json" "$KEEP/train_metrics.json"
cp "$RUN-test/metrics.json" "$KEEP/"
for f in per_example.jsonl.gz wer_table.csv ctc_greedy_wer_table.csv; do
  [ -f "$RUN-test/$f" ] && cp "$RUN-test/$f" "$KEEP/"
done
echo "$(date +%T) test ($MODE): $KEEP/metrics.json"
