#!/usr/bin/env bash
# profile=standard on one recipe: sentiment with additive, multihead and the uniform
# baseline, five seeds each (15 runs, two at a time with one thread each), then the small
# files of every run and two reports (tests against multihead and against uniform) under
# results/compare/standard/.
#
#   bash benchmarks/standard_demo.sh           # run the grid (resumes), keep its files, report
#   bash benchmarks/standard_demo.sh report    # only re-make the reports from the kept files
#   bash benchmarks/standard_demo.sh run ARGS  # ARGS: more toolkit.compare arguments
# (RUNS and KEEP in the environment move the run folders and the kept files elsewhere.)
#
# Kept per run, in results/compare/standard/grid/<recipe>/<attention>/seed<N> (never
# checkpoints): metrics.json, per_example.jsonl.gz, config.yaml, compare.json,
# logs/metrics.csv. Kept for
# the grid: time.txt (/usr/bin/time -v of the compare command) and loadavg.log (the load
# average every 15 s while it ran).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs/compare/standard}
KEEP=${KEEP:-results/compare/standard}
MODE=${1:-run}
shift || true
GRID=(profile=standard "recipes=[sentiment]" "attentions=[additive,multihead,uniform]" "$@")

if [ "$MODE" = run ]; then
  mkdir -p "$RUNS"
  (while true; do
    echo "$(date -u +%FT%TZ) $(cut -d' ' -f1-3 /proc/loadavg)"
    sleep 15
  done) >"$RUNS/loadavg.log" &
  sampler=$!
  trap 'kill $sampler 2>/dev/null || true' EXIT
  /usr/bin/time -v -o "$RUNS/time.txt" \
    "$PY" -m toolkit.compare "${GRID[@]}" "runs_dir=$RUNS" "out=$RUNS/report"
  kill "$sampler" 2>/dev/null || true
  mkdir -p "$KEEP"
  cp "$RUNS/time.txt" "$RUNS/loadavg.log" "$KEEP/"
  for run in "$RUNS"/sentiment/*/seed*; do
    dest="$KEEP/grid/${run#"$RUNS"/}"
    mkdir -p "$dest/logs"
    cp "$run"/{metrics.json,per_example.jsonl.gz,config.yaml,compare.json} "$dest/"
    cp "$run/logs/metrics.csv" "$dest/logs/"
  done
fi

# the reports, from the kept files only (so anyone can re-make them from the repository)
"$PY" -m toolkit.compare "${GRID[@]}" run=false "runs_dir=$KEEP/grid" "out=$KEEP/report"
"$PY" -m toolkit.compare "${GRID[@]}" run=false "runs_dir=$KEEP/grid" \
  "out=$KEEP/report-vs-uniform" significance.reference=uniform
