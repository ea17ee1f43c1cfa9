#!/usr/bin/env bash
# The float vs int8 table of models/README.md, in one run: sizes, TEST accuracy and agreement with float,
# tract (criterion) and onnxruntime latency on one pinned x86 core, and aarch64 instruction counts under
# qemu (Cortex-A72 / A76). Needs ../shared/data (accuracy) and installs the cross tools like scripts/cross.sh.
#   scripts/model_table.sh                       # the edge nets' models in models/ (edge, edge16)
#   REPORT_WEIGHTS=runs/xception/best.ot [REPORT_ARCH=xception] scripts/model_table.sh
#       # also one of the report's nets: exported, quantized into runs/table/ (too big to commit) and measured
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
T="${CARGO_TARGET_DIR:-target}"
EDGE_MODELS="${EDGE_MODELS:-models/edge.onnx models/edge-int8-qdq.onnx models/edge-int8-qop.onnx models/edge-int8-weights.onnx}"
EDGE16_MODELS="${EDGE16_MODELS:-models/edge16.onnx models/edge16-int8-qdq.onnx models/edge16-int8-qop.onnx models/edge16-int8-weights.onnx}"

cargo build --release -p leukoscope-host --bin leukoscope-train
CROSS_SKIP_TESTS=1 CROSS_PROFILE=release scripts/cross.sh
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo build --release -p leukoscope --target aarch64-unknown-linux-gnu --example infer
B="$T/release/leukoscope-train"
if [ -n "${REPORT_WEIGHTS:-}" ]; then
    arch="${REPORT_ARCH:-xception}"
    d=runs/table
    mkdir -p "$d"
    "$B" export --arch "$arch" --weights "$REPORT_WEIGHTS" --out "$d/$arch.onnx"
    REPORT_MODELS="$d/$arch.onnx"
    for f in qdq qop weights; do
        "$B" export --onnx "$d/$arch.onnx" --int8 --format "$f" --out "$d/$arch-int8-$f.onnx"
        REPORT_MODELS="$REPORT_MODELS $d/$arch-int8-$f.onnx"
    done
fi
plugin="$T/libinsncount.so"
gcc -O2 -shared -fPIC -fvisibility=hidden -o "$plugin" ../shared/tools/qemu-insncount/insncount.c

# shellcheck disable=SC2086
exec "$LEUKOSCOPE_PYTHON" scripts/model_table.py \
    --train-bin "$B" \
    --infer-aarch64 "$T/aarch64-unknown-linux-gnu/release/examples/infer" \
    --plugin "$plugin" --target-dir "$T" --python "$LEUKOSCOPE_PYTHON" \
    --edge $EDGE_MODELS --edge $EDGE16_MODELS ${REPORT_MODELS:+--report $REPORT_MODELS}
