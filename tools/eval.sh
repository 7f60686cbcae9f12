#!/bin/sh
# `make eval`: held-out accuracy of the bundled scenes model through the C library. Draws COUNT
# new scenes of SEED with the training branch's generator (tools/train/scenes.py; python3 with
# numpy and PIL only) into a temporary folder, one question of every type per scene, and runs
# examples/mm-eval on them with the CLIP file too (right caption among 10).
#   tools/eval.sh [MODELS_DIR [SEED [COUNT]]]      (defaults: models 2002 500)
# Seeds in use: 1 training, 1001 the held-out set training reports on, 3003 models/images.
cd "$(dirname "$0")/.." || exit 1
m=${1:-models}
seed=${2:-2002}
count=${3:-500}
for f in scenes-llava.gguf scenes-mmproj.gguf scenes-clip.gguf; do
    [ -f "$m/$f" ] || { echo "eval: $m/$f is missing; the model is shipped by tools/train/ship.sh (models/README.md)" >&2; exit 1; }
done
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
echo "eval: $count held-out scenes of seed $seed ($((count * 6)) questions)" >&2
"${PYTHON:-/usr/bin/python3}" tools/train/scenes.py --seed "$seed" --count "$count" --out "$tmp" || exit 1
examples/mm-eval -m "$m/scenes-llava.gguf" --mmproj "$m/scenes-mmproj.gguf" \
    --clip "$m/scenes-clip.gguf" "$tmp/questions.tsv" $EVAL_FLAGS
