#!/usr/bin/env bash
# Issue 13's candidates, one command: train each on TRAIN (the shipped edge16 recipe, seed 1: the same
# smear-grouped validation split), export, measure zero-shot on the second lab and evaluate on TEST, then print
# one table (VAL, second lab overall and per class, TEST overall and per-class sensitivity).
#
#   scripts/lab_candidates.sh [CANDIDATE...]     # default: all four below; outputs under runs/
#
# Candidates (name = net + training-time lab shift, `leukoscope-train train --lab-shift`):
#   edge16-lab-strong  edge16-lab-light  edge16-gn-lab-strong  edge16-gn-lab-light   (and edge16-gn: no shift)
#   edge16-in  edge16-rh  edge16-wp  edge16-grey  edge16-lc: each image's colour standardised in the graph (instance
#   statistics in RGB; in Reinhard's lαβ; white point; luminance only; luminance and chroma after the white point),
#   alone or with a shift (edge16-in-lab-strong, ...)
#   efficientnet-lite0  efficientnet-lite0-grey: EfficientNet-Lite0 fine-tuned from the ImageNet weights
#   ($LEUKOSCOPE_EFFNET_LITE0, from scripts/setup.sh), on the image as it is or on its luminance, at half the
#   learning rate (1e-3, fine-tuning) and for LITE0_EPOCHS epochs (default 10; a 2-core CPU trains one epoch
#   in about 3 minutes at 128 px, 50 images/s on an AMD EPYC)
#   edge16-ctx: edge16 with a share of its training crops' surroundings replaced by their plasma
#   (`--context-drop 0.5`: another lab's tight crops show no red cells around the cell); with a shift too
#   (edge16-ctx-lab-strong); edge16: the shipped recipe itself (a baseline for INIT_SEED)
#   edge16-clip: edge16 with half its training crops over-exposed, clipped and brought back
#   (`--highlight-clip 0.5`: another lab's camera may saturate, as the second lab's does in over half its pixels)
#   INIT_SEED=N: seed initialisation, shuffles and augmentation with N (`--init-seed`; the split stays seed 1's):
#   outputs go to runs/<candidate>-s<N>, so a recipe's spread between runs can be measured
#   EDGE_EPOCHS=N: the edge candidates for N epochs instead of 10 (the first round's "longer schedule for the
#   strong shift"); their outputs then go to runs/<candidate>-<N>ep
# About 7 minutes each on 2 idle CPU cores (edge16-gn: about 10; the EfficientNet-Lite0 candidates at 10
# epochs: 40 to 45). Nothing here reads the second lab's labels except the zero-shot scoring.
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
CANDIDATES=("$@")
[ ${#CANDIDATES[@]} -gt 0 ] || CANDIDATES=(edge16-lab-strong edge16-lab-light edge16-gn-lab-strong edge16-gn-lab-light)
runs=()
for n in "${CANDIDATES[@]}"; do
    case "$n" in
        edge16 | edge16-lab-* | edge16-ctx* | edge16-clip*) arch=edge16 ;;
        edge16-gn*) arch=edge16-gn ;;
        edge16-in*) arch=edge16-in ;;
        edge16-rh*) arch=edge16-rh ;;
        edge16-wp*) arch=edge16-wp ;;
        edge16-grey*) arch=edge16-grey ;;
        edge16-lc*) arch=edge16-lc ;;
        efficientnet-lite0-grey*) arch=efficientnet-lite0-grey ;;
        efficientnet-lite0*) arch=efficientnet-lite0 ;;
        *) echo "lab_candidates: unknown candidate $n" >&2; exit 2 ;;
    esac
    lab=()
    case "$n" in *-lab-strong) lab=(--lab-shift strong) ;; *-lab-light) lab=(--lab-shift light) ;; esac
    case "$n" in *-ctx | *-ctx-*) lab+=(--context-drop 0.5) ;; esac
    case "$n" in *-clip | *-clip-*) lab+=(--highlight-clip 0.5) ;; esac
    recipe=(--epochs "${EDGE_EPOCHS:-10}" --lr 2e-3)
    out="runs/$n"
    [ "${EDGE_EPOCHS:-10}" = 10 ] || out="runs/$n-${EDGE_EPOCHS}ep"
    if [ -n "${INIT_SEED:-}" ]; then
        lab+=(--init-seed "$INIT_SEED")
        out="$out-s$INIT_SEED"
    fi
    case "$arch" in
        efficientnet-lite0*)
            : "${LEUKOSCOPE_EFFNET_LITE0:?scripts/setup.sh converts the ImageNet weights}"
            recipe=(--epochs "${LITE0_EPOCHS:-10}" --lr 1e-3 --pretrained "$LEUKOSCOPE_EFFNET_LITE0")
            out="runs/$n" ;;
    esac
    mkdir -p "$out"
    echo "lab_candidates: $n ($arch ${lab[*]})" >&2
    "$B" train --arch "$arch" "${recipe[@]}" --batch 64 --weight-decay 0.05 --label-smoothing 0.1 \
        --shift 12 --mixup 0.2 --seed 1 "${lab[@]}" --data "$DATA" --out "$out" 2>"$out/train.log"
    "$B" export --arch "$arch" --weights "$out/best.ot" --out "$out/$n.onnx" 2>"$out/export.log"
    "$T/examples/site_adapt" --model "$out/$n.onnx" --zero-shot --data "$SITE" --out "$out/site-jiangxi" \
        2>"$out/site.log"
    "$B" eval --model "$out/$n.onnx" --split TEST --data "$DATA" --out "$out/results" >"$out/eval-test.log" 2>&1
    runs+=("$out")
done
python3 scripts/lab_candidates_table.py "${runs[@]}"
