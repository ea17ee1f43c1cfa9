#!/usr/bin/env bash
# CPU training throughput, side by side: tch (`leukoscope-train bench-train`, our Rust host) against PyTorch
# eager (`scripts/bench_train.py`, the same nets ported layer for layer), on one libtorch (the pinned wheel's).
# Same threads, batch, resolution, optimiser (Adam, lr 1e-4), warm-up and steps on both sides; the nets run
# interleaved (tch A, PyTorch A, tch B, ...) so both see the same machine. Prints one Markdown table.
#
#   scripts/bench_train.sh [THREADS] [STEPS]      # defaults: 2 threads, 3 timed steps (edge: 5x as many)
#   BATCH=16 SIZE=128 WARMUP=1 ARCHS="edge xception" scripts/bench_train.sh 2 3
#
# The rate is batch / median step time (a step: gather a u8 batch, normalise, forward, cross-entropy,
# backward, Adam); the table also gives batch / the fastest step, which other work on the machine can only
# slow down, so on a shared machine its ratio is the steadier one. Read ratios, not absolute numbers.
# First run: builds the release binary (minutes) and installs what `import torch` needs beside the venv
# (setup.sh installs the torch wheel without dependencies, for its libtorch only; ~2.3 GB, once).
set -euo pipefail

THREADS="${1:-2}"
STEPS="${2:-3}"
WARMUP="${WARMUP:-1}"
BATCH="${BATCH:-16}"
SIZE="${SIZE:-128}"
ARCHS="${ARCHS:-edge resnet101v2 xception inception-resnet-v2}"

cd "$(dirname "$0")/.."
ENV_FILE=$(mktemp)
OUT=$(mktemp -d)
trap 'rm -rf "$ENV_FILE" "$OUT"' EXIT
scripts/setup.sh >"$ENV_FILE"
# shellcheck disable=SC1090
source "$ENV_FILE"

# torch's own Python dependencies and the CUDA libraries its Python extension links against (never used
# here: everything runs on the CPU, in the same libtorch_cpu.so that tch links).
CACHE="${LEUKOSCOPE_CACHE:-$HOME/.cache/leukoscope}"
PYDEPS="$CACHE/bench-pydeps"
if [ ! -f "$PYDEPS/.stamp-torch-2.11.0" ]; then
    echo "bench_train: installing torch's Python dependencies into $PYDEPS (once)" >&2
    "$LEUKOSCOPE_PYTHON" -m pip install --quiet --target "$PYDEPS" --no-deps \
        "typing_extensions>=4.10" "sympy>=1.13.3" mpmath filelock "networkx>=2.5.1" jinja2 MarkupSafe \
        "fsspec>=0.8.5" >&2
    "$LEUKOSCOPE_PYTHON" -m pip install --quiet --progress-bar off --target "$PYDEPS/cuda" \
        "cuda-toolkit[cublas,cufft,cufile,curand,cusparse]==13.0.2" nvidia-cudnn-cu13==9.19.0.56 \
        nvidia-cusparselt-cu13==0.8.0 nvidia-nccl-cu13==2.28.9 nvidia-nvshmem-cu13==3.4.5 >&2
    touch "$PYDEPS/.stamp-torch-2.11.0"
fi
PY_LD_PATH="$(find "$PYDEPS/cuda/nvidia" -mindepth 2 -maxdepth 2 -name lib -type d | paste -sd:)"
torch_py() {
    LD_LIBRARY_PATH="$PY_LD_PATH:$LD_LIBRARY_PATH" PYTHONPATH="$PYDEPS${PYTHONPATH:+:$PYTHONPATH}" \
        "$LEUKOSCOPE_PYTHON" scripts/bench_train.py "$@"
}

cargo build --release --quiet -p leukoscope-host --bin leukoscope-train
for arch in $ARCHS; do
    steps="$STEPS"
    [ "$arch" = edge ] && steps=$((5 * STEPS))
    common=(--archs "$arch" --batch "$BATCH" --size "$SIZE" --steps "$steps" --warmup "$WARMUP" --threads "$THREADS")
    echo "bench_train: $arch (tch)" >&2
    cargo run --release --quiet -p leukoscope-host --bin leukoscope-train -- bench-train "${common[@]}" \
        --json "$OUT/tch-$arch.json" >&2
    echo "bench_train: $arch (PyTorch eager)" >&2
    torch_py "${common[@]}" --json "$OUT/torch-$arch.json" >&2
done

CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
"$LEUKOSCOPE_PYTHON" - "$OUT" "$CPU" "$ARCHS" <<'PY'
import json, sys
out, cpu, archs = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows, bad = [], []
for arch in archs:
    t = json.load(open(f"{out}/tch-{arch}.json"))
    p = json.load(open(f"{out}/torch-{arch}.json"))
    a, b = t["nets"][0], p["nets"][0]
    if a["params"] != b["params"]:
        bad.append(f"{arch}: tch {a['params']} vs PyTorch {b['params']} parameters")
    rows.append((arch, a, b, t, p))
t0, p0 = rows[0][3], rows[0][4]
print(f"CPU: {cpu}; threads {t0['threads']} intra-op / {t0['interop_threads']} inter-op (both sides); "
      f"batch {t0['batch']}, {t0['size']} px NCHW float32, 4 classes, Adam lr {t0['lr']}; "
      f"{t0['warmup']} warm-up step(s), rate = batch / median step time; tch 0.24 and PyTorch {p0['torch']} "
      "eager on the same libtorch.")
print()
print("| net | params | steps | tch img/s | PyTorch img/s | ratio tch/PyTorch | best step: tch / PyTorch img/s "
      "| best-step ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for arch, a, b, t, _ in rows:
    params = f"{a['params']:,}" if a["params"] == b["params"] else f"{a['params']:,} ≠ {b['params']:,}"
    print(f"| {arch} | {params} | {t['steps']} | {a['img_per_s']:.2f} | {b['img_per_s']:.2f} | "
          f"{a['img_per_s'] / b['img_per_s']:.2f} | {a['best_img_per_s']:.2f} / {b['best_img_per_s']:.2f} | "
          f"{a['best_img_per_s'] / b['best_img_per_s']:.2f} |")
if bad:
    sys.exit("bench_train: the ports differ: " + "; ".join(bad))
PY
