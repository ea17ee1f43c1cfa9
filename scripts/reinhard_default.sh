#!/usr/bin/env bash
# Issue 13, twelfth round: the device default made from the shipped edge16 recipe's run with `--init-seed 3`
# (the best VAL of three seeds) with Reinhard stain normalisation at inference, in its int8-weights form.
#
#   scripts/reinhard_default.sh [RUN]     # RUN: the training run's folder (default runs/edge16-s3)
#
# RUN comes from `INIT_SEED=3 scripts/lab_candidates.sh edge16` (about 6 minutes on 2 CPU cores):
#   leukoscope-train train --arch edge16 --epochs 10 --lr 2e-3 --batch 64 --weight-decay 0.05 \
#       --label-smoothing 0.1 --shift 12 --mixup 0.2 --seed 1 --init-seed 3 --out runs/edge16-s3
# Writes RUN/default/: the float and int8-weights models with the Reinhard reference measured on TRAIN, their
# thresholds (VAL) and metrics (VAL, TEST, TEST_SIMPLE) in the cards, the training statistics `adapt`'s
# norm-head needs, the float/int8 comparison, the second lab (zero-shot and calibrated) and BCCD end to end.
# Copy RUN/default/edge16-s3-reinhard-int8-weights.{onnx,json} to models/ to ship it. About 6 minutes on 2
# AMD EPYC cores.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/leukoscope/target}"
cargo build --release --quiet -p leukoscope-host --bin leukoscope-train
cargo build --release --quiet -p leukoscope --example site_adapt
cargo build --release --quiet -p leukoscope --features testing --example bccd_quality
T="$CARGO_TARGET_DIR/release"
B="$T/leukoscope-train"
DATA=../shared/data/blood-cells
SITE=../shared/data/wbc-jiangxi/images
RUN="${1:-runs/edge16-s3}"
[ -f "$RUN/edge16.onnx" ] || { echo "reinhard_default: no $RUN/edge16.onnx (train it first, see above)" >&2; exit 2; }
OUT="$RUN/default"
mkdir -p "$OUT/results"
F="$OUT/edge16-s3-reinhard.onnx"
M="$OUT/edge16-s3-reinhard-int8-weights.onnx"
"$B" export --int8 --format weights --onnx "$RUN/edge16.onnx" --out "$OUT/edge16-s3-int8-weights.onnx" 2>"$OUT/export.log"
"$B" stain-norm --model "$RUN/edge16.onnx" --method reinhard --split TRAIN --data "$DATA" --out "$F" 2>"$OUT/stain-norm-float.log"
"$B" stain-norm --model "$OUT/edge16-s3-int8-weights.onnx" --method reinhard --split TRAIN --data "$DATA" --out "$M" \
    2>"$OUT/stain-norm.log"
"$B" feature-stats --model "$M" --split TRAIN --data "$DATA" 2>"$OUT/feature-stats.log"
for model in "$F" "$M"; do
    "$B" eval --model "$model" --split VAL --calibrate --update-card --data "$DATA" --out "$OUT/results" \
        >"$OUT/eval-$(basename "$model" .onnx)-VAL.log" 2>&1
    for split in TEST TEST_SIMPLE; do
        "$B" eval --model "$model" --split "$split" --update-card --data "$DATA" --out "$OUT/results" \
            >"$OUT/eval-$(basename "$model" .onnx)-$split.log" 2>&1
    done
done
for split in VAL TEST; do
    "$B" compare --split "$split" --data "$DATA" --json "$OUT/compare-$split.json" "$F" "$M" >"$OUT/compare-$split.log" 2>&1
done
"$T/examples/site_adapt" --model "$M" --methods head,norm-head --data "$SITE" --out "$OUT/site-jiangxi" 2>"$OUT/site.log"
"$T/examples/bccd_quality" --model "$M" --write "$OUT/bccd.md" >"$OUT/bccd.log" 2>&1
grep -h "zero-shot" "$OUT/site-jiangxi.md"
tail -n 3 "$OUT/compare-VAL.log" "$OUT/compare-TEST.log"
