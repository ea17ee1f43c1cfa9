#!/usr/bin/env bash
# Long fuzz run: every target of leukoscope::testing::fuzz under libFuzzer (cargo-fuzz, nightly), each for
# SECONDS seconds (default 300), seeded with the same corpus the stable harness uses (firmware/tests/fuzz.rs):
# the bundled images, the embedded model and card, a real journal of a simulated session, the shipped board
# file. Prints, per target, the inputs tried and what was found; a crash is left in
# firmware/fuzz/artifacts/<target>/ -- copy it to firmware/fuzz/regressions/<target>/ once fixed, where the
# CI harness replays it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Installs what it needs when missing: the nightly toolchain (rustup) and cargo-fuzz 0.13.2 (the version the
# run in docs/reliability.md used).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
seconds="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(image model card journal board)
corpus=firmware/fuzz/corpus
mkdir -p "$corpus"/{image,model,card,journal,board}
find samples -type f \( -name '*.jpg' -o -name '*.jpeg' -o -name '*.png' \) -exec cp -n {} "$corpus/image/" \;
cp -n models/edge16-int8-weights.onnx "$corpus/model/"
cp -n models/edge16-int8-weights.json "$corpus/card/"
cp -n models/edge16-s3-reinhard-int8-weights.json "$corpus/card/"
cp -n deploy/board.toml "$corpus/board/"
if [ ! -s "$corpus/journal/sim.journal" ]; then
    rm -f "$corpus/journal/sim.journal"
    cargo run --release -q -p leukoscope -- run --sim --target 3 --journal "$corpus/journal/sim.journal" >/dev/null 2>&1 || true
fi
for d in firmware/fuzz/regressions/*/; do
    [ -d "$d" ] && cp -n "$d"* "$corpus/$(basename "$d")/" 2>/dev/null || true
done
cd firmware
for t in "${targets[@]}"; do
    log="fuzz/$t.log"
    echo "== $t: $seconds s" >&2
    # -rss_limit_mb: a target may not use more than 2 GiB (a Pi 4's memory); -timeout: 10 s per input.
    # No sanitizer: the code is pure Rust (no C), so what is sought is a panic, an abort, a hang or memory
    # growth, which libFuzzer sees itself; AddressSanitizer would halve the inputs tried.
    # -max_len: 1 MiB, and 2 MiB for models: the seed model (1.25 MB) must not be cut short, or every input is a
    # truncated protobuf and nothing past the decoder is reached.
    max_len=1048576
    [ "$t" != model ] || max_len=2097152
    if cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FOUND (see $log and fuzz/artifacts/$t/)"
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "$t: $runs inputs in $seconds s, $cov: $result"
done
