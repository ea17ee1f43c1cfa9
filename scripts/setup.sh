#!/usr/bin/env bash
# One idempotent setup for everything the tests need: the pinned libtorch (from the PyPI torch wheel, in a
# venv outside the repo so clones share it), Python test oracles (onnxruntime), and the Rust toolchain bits.
# Re-running it is cheap: each step checks a stamp first. Prints the environment to source at the end.
#
#   scripts/setup.sh            # set up, then print `export ...` lines
#   eval "$(scripts/setup.sh)"  # set up and load the environment into this shell
set -euo pipefail

TORCH_VERSION=2.11.0
CACHE="${LEUKOSCOPE_CACHE:-$HOME/.cache/leukoscope}"
VENV="$CACHE/venv-torch-$TORCH_VERSION"
PY="${PYTHON:-python3}"

log() { echo "setup: $*" >&2; }

mkdir -p "$CACHE"
if [ ! -f "$VENV/.stamp-torch" ]; then
    log "creating $VENV (pinned torch==$TORCH_VERSION, CPU+CUDA runtime libs only; ~1.3 GB, once)"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --no-deps "torch==$TORCH_VERSION" \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
    touch "$VENV/.stamp-torch"
fi
# The onnxruntime oracle is pinned to a version that computes int8 convolutions right on every CPU here:
# 1.23 gets QLinearConv wrong on Intel CPUs with AMX (onnxruntime issue 26324), 1.32.0 agrees with tract exactly.
# No fallback to an unpinned version: a wrong oracle fails tests for the wrong reason, so setup stops instead.
ORT_VERSION=1.32.0
if [ ! -f "$VENV/.stamp-oracles-ort-$ORT_VERSION" ]; then
    log "installing test oracles (onnxruntime==$ORT_VERSION, numpy) into $VENV"
    if ! "$VENV/bin/pip" install --quiet "onnxruntime==$ORT_VERSION" "numpy<2.4" >&2; then
        log "error: could not install onnxruntime==$ORT_VERSION (the pinned test oracle); not falling back"
        exit 1
    fi
    touch "$VENV/.stamp-oracles-ort-$ORT_VERSION"
fi

TORCH_DIR=$("$VENV/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("torch")
print(os.path.dirname(spec.origin))
PY
)

# libclang for the optional V4L2 camera backend (`--features v4l2`, bindgen); checked in the test script.
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libclang-dev >/dev/null 2>&1; then
    log "installing libclang-dev (apt) for the V4L2 camera backend"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev; } >&2
fi

# Headless Chromium and its WebDriver for the web page's browser test (firmware/tests/browser.rs).
if command -v dpkg >/dev/null 2>&1 && ! { dpkg -s chromium >/dev/null 2>&1 && dpkg -s chromium-driver >/dev/null 2>&1; }; then
    log "installing chromium and chromium-driver (apt) for the browser test"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } >&2
fi

if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >&2
fi

cat <<ENV
export LIBTORCH="$TORCH_DIR"
export LEUKOSCOPE_PYTHON="$VENV/bin/python"
export LD_LIBRARY_PATH="$TORCH_DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
