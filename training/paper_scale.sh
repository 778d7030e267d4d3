#!/usr/bin/env bash
# The paper's comparison at full scale, for a GPU machine: the full-width
# att3-concat-pc VGG and the plain VGG on CIFAR-10, with the paper's recipe
# (300 epochs, SGD 0.1 halved every 25) and with the budget recipe
# (BUDGET_EPOCHS, cosine + label smoothing), then the same report as the
# CPU presets (accuracy, Jaccard on the Weizmann horses, FGSM, Caltech-101
# transfer) for each recipe.
#
#   bash training/paper_scale.sh                 # every run resumes if interrupted
#   RECIPES=budget BUDGET_EPOCHS=30 bash training/paper_scale.sh
#
# Environment: DATA_ROOT (../shared/data: cifar10/, weizmann_horse/,
# caltech101/), RUNS (runs/paper_scale), RECIPES ("paper budget"),
# BUDGET_EPOCHS (30), PRECISION (auto: mixed_bfloat16 on recent GPUs),
# KERAS_BACKEND (any of the three; tensorflow-datasets/tf.data reads the data).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-../shared/data}
RUNS=${RUNS:-runs/paper_scale}
RECIPES=${RECIPES:-paper budget}
BUDGET_EPOCHS=${BUDGET_EPOCHS:-30}
PRECISION=${PRECISION:-auto}

for recipe in $RECIPES; do
  epochs=300
  [ "$recipe" = budget ] && epochs=$BUDGET_EPOCHS
  for variant in att3-concat-pc noatt; do
    python training/fit.py --data-dir "$DATA_ROOT/cifar10" --variant "$variant" \
      --recipe "$recipe" --epochs "$epochs" --precision "$PRECISION" --seed 0 \
      --output-dir "$RUNS/$recipe/$variant"
  done
  python training/compare_presets.py "$RUNS/$recipe/att3-concat-pc" "$RUNS/$recipe/noatt" \
    --data-root "$DATA_ROOT" --output-dir "$RUNS/$recipe/report" --no-readme
done
