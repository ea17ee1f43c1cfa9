#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh: pinned libtorch, onnxruntime oracle) and runs every
# check: formatting, clippy, all tests of every crate, and the docs. README's "run all tests" command and
# .ci/run are this script.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"

step() { printf '\n== %s\n' "$*" >&2; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (all crates, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo clippy with the test oracles (testing feature: examples and benches that compare against them)"
cargo clippy -p leukoscope --features testing --all-targets -- -D warnings
step "cargo clippy for the optional V4L2 camera backend"
cargo clippy -p leukoscope --features v4l2 --all-targets -- -D warnings
step "cargo test (all crates)"
cargo test --workspace
step "fuzz targets, short run on stable (seeded mutations; scripts/fuzz.sh runs them under libFuzzer)"
cargo test -p leukoscope --features testing --test fuzz
step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
step "cross-build for the Pi (aarch64, rpi feature) + firmware unit tests under qemu-aarch64"
scripts/cross.sh
