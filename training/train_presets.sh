#!/usr/bin/env bash
# Trains the two shipped CIFAR-10 presets (the paper's att3-concat-pc and the
# plain VGG, same width, epochs, recipe and seed) on ../shared/data/cifar10,
# turns them into presets and regenerates the comparison report.
#
#   bash training/train_presets.sh            # resumes where it stopped
#
# Environment: DATA (default ../shared/data/cifar10), RUNS (runs/presets),
# WIDTH (0.125), EPOCHS (10), FLAGS (more fit.py flags, e.g. --cache). About
# 1.5 hours on 2 CPU cores at the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10}
RUNS=${RUNS:-runs/presets}
WIDTH=${WIDTH:-0.125}
EPOCHS=${EPOCHS:-10}
FLAGS=${FLAGS:-}
TAG=w$(python -c "print(str($WIDTH).replace('0.', '0').replace('.', ''))")
mkdir -p "$RUNS"

train() {  # train NAME VARIANT
  local name=$1 variant=$2 started ended
  local command="python training/fit.py --data-dir $DATA --variant $variant --width $WIDTH --epochs $EPOCHS --recipe budget --seed 0 --no-export --verbose 0 --output-dir $RUNS/$name${FLAGS:+ $FLAGS}"
  started=$(date +%s)
  $command
  ended=$(date +%s)
  # Wall time of every (resumed) part, summed when the preset is made.
  echo $((ended - started)) >> "$RUNS/$name.seconds"
  python training/make_preset.py "$RUNS/$name" --name "$name" \
    --subset-data-dir "$DATA" --command "$command" \
    --wall-time-s "$(python -c "import sys; print(sum(int(l) for l in open(sys.argv[1])))" "$RUNS/$name.seconds")" \
    --description "$3"
}

train "cifar10-att3-$TAG" att3-concat-pc \
  "The paper's att3-concat-pc VGG at width $WIDTH, CIFAR-10, $EPOCHS epochs (budget recipe)"
train "cifar10-vgg-$TAG" noatt \
  "The plain VGG baseline (no attention) at width $WIDTH, CIFAR-10, $EPOCHS epochs (budget recipe)"
# The width-0.125 pair owns docs/results and the README's comparison block;
# another width gets docs/results/$TAG/ and the page docs/results/$TAG.md,
# with the flip-TTA accuracy beside the plain one.
if [ "$TAG" = w0125 ]; then
  python training/compare_presets.py "cifar10-att3-$TAG" "cifar10-vgg-$TAG"
else
  page=docs/results/$TAG.md
  [ -f "$page" ] || printf '# The width-%s preset pair\n\n<!-- comparison-%s:start -->\n<!-- comparison-%s:end -->\n' \
    "$WIDTH" "$TAG" "$TAG" > "$page"
  python training/compare_presets.py "cifar10-att3-$TAG" "cifar10-vgg-$TAG" \
    --output-dir "docs/results/$TAG" --readme "$page" --readme-block "comparison-$TAG" --tta flip
fi
