#!/usr/bin/env bash
# Trains more seeds of the width-0.125 comparison: for each seed given, the
# paper's att3-concat-pc and its plain-VGG twin with the presets' recipe
# (10 epochs, budget recipe, float32), their report (compare_presets.py on the
# two run directories), and the seed filed into docs/results/seeds.json, the
# seeds table and the README's seeds block (compare_seeds.py).
#
#   bash training/train_seeds.sh 3 4          # resumes where it stopped
#
# Environment: DATA (default ../shared/data/cifar10), RUNS (runs/seeds),
# FLAGS (more fit.py flags). Every seed of a comparison must share the recipe
# and precision: float32 is forced because seed 0 (the shipped presets)
# trained in float32. About 1 hour per seed on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  echo "usage: bash training/train_seeds.sh SEED [SEED ...]" >&2
  exit 2
fi
for seed in "$@"; do
  case $seed in
    '' | *[!0-9]*) echo "train_seeds.sh: a seed is a non-negative integer, got '$seed'" >&2; exit 2 ;;
  esac
done
DATA=${DATA:-../shared/data/cifar10}
RUNS=${RUNS:-runs/seeds}
FLAGS=${FLAGS:-}

for seed in "$@"; do
  for model in att3:att3-concat-pc vgg:noatt; do
    python training/fit.py --data-dir "$DATA" --variant "${model#*:}" --width 0.125 \
      --epochs 10 --recipe budget --seed "$seed" --precision float32 --no-export \
      --verbose 0 --output-dir "$RUNS/$seed/${model%%:*}" $FLAGS
  done
  python training/compare_presets.py "$RUNS/$seed/att3" "$RUNS/$seed/vgg" \
    --data-root "$(dirname "$DATA")" --output-dir "$RUNS/$seed/report" --no-readme
  # The report travels with the repository: seeds.json names it.
  mkdir -p "docs/results/seeds/$seed"
  cp "$RUNS/$seed/report/report.json" "docs/results/seeds/$seed/report.json"
  python training/compare_seeds.py --add-report "docs/results/seeds/$seed/report.json" \
    --seed "$seed" --model-name cifar10-att3-w0125 --baseline-name cifar10-vgg-w0125
done
