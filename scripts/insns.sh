#!/usr/bin/env bash
# aarch64 instruction counts of one inference (the Pi cost proxy) for the given models, cards beside them.
# Cross-builds examples/infer (release) and the qemu insncount plugin; installs the cross tools like
# scripts/cross.sh. The first model is the baseline the others are compared with.
#   scripts/insns.sh models/edge16-int8-weights.onnx models/edge16-mixed-int8-weights.onnx
#   INSNS_OUT=models/results/insns-mixed scripts/insns.sh MODEL...   # also writes INSNS_OUT.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# == 0)); then
    echo "usage: scripts/insns.sh MODEL.onnx..." >&2
    exit 2
fi
for m in "$@"; do
    [ -f "$m" ] || { echo "insns.sh: $m: no such model file" >&2; exit 2; }
    [ -f "${m%.onnx}.json" ] || { echo "insns.sh: $m: its card ${m%.onnx}.json is missing" >&2; exit 2; }
done
eval "$(scripts/setup.sh)"
T="${CARGO_TARGET_DIR:-target}"
CROSS_SKIP_TESTS=1 CROSS_PROFILE=release scripts/cross.sh
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo build --release -p leukoscope --target aarch64-unknown-linux-gnu --example infer
plugin="$T/libinsncount.so"
gcc -O2 -shared -fPIC -fvisibility=hidden -o "$plugin" ../shared/tools/qemu-insncount/insncount.c
exec "$LEUKOSCOPE_PYTHON" scripts/insns.py \
    --infer-aarch64 "$T/aarch64-unknown-linux-gnu/release/examples/infer" \
    --plugin "$plugin" ${INSNS_OUT:+--out "$INSNS_OUT"} "$@"
