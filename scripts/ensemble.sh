#!/usr/bin/env bash
# Issue 13, sixth round: ensembles of the edge net, one command. Each member is trained on TRAIN with the
# shipped edge16 recipe on the same seed-1 smear-grouped split (so VAL stays held out from every member), the
# members are joined into one model (`leukoscope-train ensemble`: one head over their embeddings, the mean of
# their logits), and the ensemble is measured like every candidate: VAL, TEST, the second lab zero-shot and
# after `adapt`, then its int8-weights form on TEST and the second lab.
#
#   scripts/ensemble.sh [CANDIDATE...]     # default: both below; outputs under runs/ensemble/
#
# Candidates (the first member of both is the shipped float models/edge16.onnx, trained with --seed 1):
#   edge16x3      edge16 trained twice more, --init-seed 2 and 3 (initialisation, shuffles, augmentation)
#   edge16-mixed  edge16 --lab-shift strong and edge16-grey --lab-shift strong (the first-round and third-round
#                 candidates, trained again)
#   edge16-mixed-20ep  the same with both shifted members trained for 20 epochs (the tenth round's longer
#                 schedule; named there before any figure of this ensemble existed)
# About 7 minutes a member and 15 an ensemble's measurements on 2 CPU cores. Nothing here reads the second
# lab's labels except the scoring.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/leukoscope/target}"
cargo build --release --quiet -p leukoscope-host --bin leukoscope-train
cargo build --release --quiet -p leukoscope --example site_adapt
T="$CARGO_TARGET_DIR/release"
B="$T/leukoscope-train"
DATA=../shared/data/blood-cells
SITE=../shared/data/wbc-jiangxi/images
R=runs/ensemble
CANDIDATES=("$@")
[ ${#CANDIDATES[@]} -gt 0 ] || CANDIDATES=(edge16x3 edge16-mixed)

# member NAME ARCH INIT_SEED [LAB_SHIFT [EPOCHS]]: trains and exports runs/ensemble/NAME/NAME.onnx (once).
member() {
    local name=$1 arch=$2 init=$3 epochs=${5:-10} out="$R/$1"
    local lab=()
    [ -z "${4:-}" ] || lab=(--lab-shift "$4")
    [ -f "$out/$name.onnx" ] && return
    mkdir -p "$out"
    echo "ensemble: training $name ($arch, init seed $init ${lab[*]})" >&2
    "$B" train --arch "$arch" --epochs "$epochs" --lr 2e-3 --batch 64 --weight-decay 0.05 --label-smoothing 0.1 \
        --shift 12 --mixup 0.2 --seed 1 --init-seed "$init" "${lab[@]}" --data "$DATA" --out "$out" \
        2>"$out/train.log"
    "$B" export --arch "$arch" --weights "$out/best.ot" --out "$out/$name.onnx" 2>"$out/export.log"
    "$B" eval --model "$out/$name.onnx" --split VAL --data "$DATA" --out "$out/results" >"$out/eval-val.log" 2>&1
}

for c in "${CANDIDATES[@]}"; do
    case "$c" in
        edge16x3)
            member edge16-init2 edge16 2
            member edge16-init3 edge16 3
            members=(models/edge16.onnx "$R/edge16-init2/edge16-init2.onnx" "$R/edge16-init3/edge16-init3.onnx") ;;
        edge16-mixed)
            member edge16-lab-strong edge16 1 strong
            member edge16-grey-lab-strong edge16-grey 1 strong
            members=(models/edge16.onnx "$R/edge16-lab-strong/edge16-lab-strong.onnx"
                "$R/edge16-grey-lab-strong/edge16-grey-lab-strong.onnx") ;;
        edge16-mixed-20ep)
            member edge16-lab-strong-20ep edge16 1 strong 20
            member edge16-grey-lab-strong-20ep edge16-grey 1 strong 20
            members=(models/edge16.onnx "$R/edge16-lab-strong-20ep/edge16-lab-strong-20ep.onnx"
                "$R/edge16-grey-lab-strong-20ep/edge16-grey-lab-strong-20ep.onnx") ;;
        *) echo "ensemble: unknown candidate $c" >&2; exit 2 ;;
    esac
    out="$R/$c"
    mkdir -p "$out"
    m="$out/$c.onnx"
    echo "ensemble: $c = ${members[*]}" >&2
    "$B" ensemble --models "${members[@]}" --out "$m"
    "$B" eval --model "$m" --split VAL --calibrate --update-card --data "$DATA" --out "$out/results" >"$out/eval-val.log" 2>&1
    "$B" eval --model "$m" --split TEST --update-card --data "$DATA" --out "$out/results" >"$out/eval-test.log" 2>&1
    "$B" feature-stats --model "$m" --split TRAIN --data "$DATA" 2>"$out/feature-stats.log"
    "$T/examples/site_adapt" --model "$m" --data "$SITE" --out "$out/site-jiangxi-adapt" 2>"$out/site.log"
    q="$out/$c-int8-weights.onnx"
    "$B" export --onnx "$m" --int8 --format weights --out "$q" --data "$DATA" 2>"$out/int8.log"
    "$B" eval --model "$q" --split TEST --update-card --data "$DATA" --out "$out/results" >"$out/eval-int8-test.log" 2>&1
    "$T/examples/site_adapt" --model "$q" --zero-shot --data "$SITE" --out "$out/site-jiangxi-int8" 2>"$out/site-int8.log"
    grep -h "accuracy" "$out/eval-val.log" "$out/eval-test.log" "$out/eval-int8-test.log" >&2 || true
done
