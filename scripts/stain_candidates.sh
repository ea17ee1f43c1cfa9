#!/usr/bin/env bash
# Issue 13, item 2, one command: stain normalisation at inference (`leukoscope::stain`), measured.
#
#   scripts/stain_candidates.sh [BASE.onnx ...]
#
# For each base model (default: the device default and the shipped calibration base) and each method of
# METHODS (default "none reinhard macenko"; none is the model as it is), `leukoscope-train stain-norm` writes
# the model again with the training lab's reference (measured on TRAIN) in its card, `feature-stats` measures
# what `adapt --method norm-head` needs, and the model is evaluated: smear-grouped VAL, Kaggle TEST, the second
# lab zero-shot and, with ADAPT=1 (default), calibrated by `head` and `norm-head` on 5 / 10 / 20 cells a class
# (10 draws), and BCCD end to end (71 test smears). Outputs under runs/stain/<model>/, one table printed and
# written to models/results/stain/table.md (with every earlier run there) and each run's reports beside it. Nothing here reads the second
# lab's labels except its scoring. About 4 minutes a model on 2 AMD EPYC cores with ADAPT=0, 10 to 20 with it.
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
BASES=("$@")
[ ${#BASES[@]} -gt 0 ] || BASES=(models/edge16-int8-weights.onnx models/edge16-mixed-int8-weights.onnx)
read -r -a METHODS <<<"${METHODS:-none reinhard macenko}"
for base in "${BASES[@]}"; do
    [ -f "$base" ] || { echo "stain_candidates: no model $base" >&2; exit 2; }
done
RESULTS=models/results/stain
mkdir -p "$RESULTS"
for base in "${BASES[@]}"; do
    stem=$(basename "$base" .onnx)
    for m in "${METHODS[@]}"; do
        case "$m" in none|reinhard|macenko) ;; *) echo "stain_candidates: unknown method $m" >&2; exit 2 ;; esac
        name="$stem-$m"
        out="runs/stain/$name"
        mkdir -p "$out"
        model="$out/$name.onnx"
        echo "stain_candidates: $name" >&2
        if [ "$m" = none ]; then
            cp "$base" "$model"
            cp "${base%.onnx}.json" "${model%.onnx}.json"
        else
            "$B" stain-norm --model "$base" --method "$m" --split TRAIN --data "$DATA" --out "$model" \
                2>"$out/stain-norm.log"
            "$B" feature-stats --model "$model" --split TRAIN --data "$DATA" 2>"$out/feature-stats.log"
        fi
        for split in VAL TEST; do
            "$B" eval --model "$model" --split "$split" --data "$DATA" --out "$out" >"$out/eval-$split.log" 2>&1
        done
        methods=(--zero-shot)
        [ "${ADAPT:-1}" = 0 ] || methods=(--methods head,norm-head)
        "$T/examples/site_adapt" --model "$model" "${methods[@]}" --data "$SITE" --out "$out/site-jiangxi" \
            2>"$out/site.log"
        "$T/examples/bccd_quality" --model "$model" --write "$out/bccd.md" >"$out/bccd.log" 2>&1
        mkdir -p "$RESULTS/$name"
        cp "$out"/*.md "$out"/*.json "$RESULTS/$name/"
        rm -f "$RESULTS/$name/$name.json"
    done
done
# Every run measured so far (this call's and earlier ones'), base by base.
python3 scripts/stain_candidates_table.py "$RESULTS"/*/ | tee "$RESULTS/table.md"
