#!/usr/bin/env bash
# Train a plan of edge-net runs on a CUDA GPU from a pack of TRAIN, several runs at once on the one GPU.
#
#   scripts/gpu-train.sh prepare
#       Here (any machine with the repo's toolchain): builds leukoscope-train, strips and xz-compresses it into
#       gpu/, and packs TRAIN's preprocessed inputs into gpu/train.pack (JPEG quality 85: 38 MB, mean error
#       1.2 levels, printed by `leukoscope-train pack`). Cached: a step whose output exists is skipped, except
#       the build, which cargo itself caches. Prints the total that would travel to a lent GPU (limit 64 MiB).
#
#   scripts/gpu-train.sh run PLAN [PARALLEL] [DEADLINE_S]
#       On the GPU machine: runs each line `NAME ARGS...` of PLAN as
#       `leukoscope-train train --pack gpu/train.pack --device cuda --out gpu-runs/NAME ARGS...`,
#       PARALLEL (default 12) at a time; a run still going DEADLINE_S (default 420) seconds after the start is
#       stopped (its train.json holds every finished epoch). TORCH_PYTHON (default python3) finds libtorch;
#       TRAIN_DEVICE=cpu rehearses a plan here. If a run fails in the first 90 s the whole plan
#       stops (an environment problem, not a recipe). Logs, train.json files and the best.ot of every run whose
#       name ends in -s1 go to $OUT (or gpu-out/) as at most 8 files.
#
# With your own CUDA machine and the data beside the repo you need no pack: run `leukoscope-train train
# --device cuda ...` directly (README, "Training on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    eval "$(scripts/setup.sh)"
    cargo build --release -p leukoscope-host
    mkdir -p gpu
    local bin=${CARGO_TARGET_DIR:-target}/release/leukoscope-train
    if [[ ! -f gpu/leukoscope-train.xz || $bin -nt gpu/leukoscope-train.xz ]]; then
        strip -o gpu/leukoscope-train "$bin"
        xz -T2 -6 -f gpu/leukoscope-train
    fi
    if [[ ! -f gpu/train.pack ]]; then
        "$bin" pack --out gpu/train.pack --quality 85
    fi
    local tracked
    tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    local carried
    carried=$(du -cb gpu/leukoscope-train.xz gpu/train.pack | tail -1 | cut -f1)
    echo "would travel: $(( (tracked + carried) / 1048576 )) MiB (tracked $((tracked / 1048576)), gpu/ $((carried / 1048576)); limit 64)"
}

run_plan() {
    local plan=$1 parallel=${2:-12} deadline=${3:-420}
    local out=${OUT:-gpu-out} runs=gpu-runs
    mkdir -p "$out" "$runs"
    local torch
    torch=$("${TORCH_PYTHON:-python3}" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torch").origin))')
    local libs="$torch/lib"
    for d in "$torch"/../nvidia/*/lib "$torch"/../nvidia/*/*/lib; do
        [[ -d $d ]] && libs="$libs:$d"
    done
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local bin=${CARGO_TARGET_DIR:-target}/release/leukoscope-train
    if [[ -f gpu/leukoscope-train.xz ]]; then
        bin=/tmp/leukoscope-train
        xz -dc gpu/leukoscope-train.xz >"$bin"
        chmod +x "$bin"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    local start=$SECONDS
    local -A pid_of=()
    local names=()
    while read -r name args; do
        [[ -z $name || $name == \#* ]] && continue
        while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
        local left=$((deadline - (SECONDS - start)))
        if ((left <= 10)); then
            echo "deadline: $name not started"
            continue
        fi
        # shellcheck disable=SC2086 # ARGS are words by design
        timeout "$left" "$bin" train --pack gpu/train.pack --device "${TRAIN_DEVICE:-cuda}" --out "$runs/$name" $args \
            >"$runs/$name.log" 2>&1 &
        pid_of[$name]=$!
        names+=("$name")
        echo "$((SECONDS - start)) s: started $name ($args)"
        # Fail fast on an environment problem: the first run must reach its first epoch.
        if ((${#names[@]} == 1)); then
            local t=0
            until grep -q '^epoch 1/' "$runs/$name.log" 2>/dev/null; do
                if ! kill -0 "${pid_of[$name]}" 2>/dev/null || ((t >= 90)); then
                    echo "first run failed or stalled:"
                    tail -20 "$runs/$name.log"
                    exit 1
                fi
                sleep 1
                t=$((t + 1))
            done
            grep -m2 -E '^(training|data|epoch 1/)' "$runs/$name.log"
        fi
    done <"$plan"
    wait || true
    echo "all runs ended after $((SECONDS - start)) s"
    for name in "${names[@]}"; do
        printf '%-12s %s\n' "$name" "$(grep -E '^epoch ' "$runs/$name.log" | tail -1)"
    done
    tar czf "$out/logs.tar.gz" "$runs"/*.log $(ls "$runs"/*/train.json)
    local k=0
    for name in "${names[@]}"; do
        if [[ $name == *-s1 && -f $runs/$name/best.ot ]]; then
            cp "$runs/$name/best.ot" "$out/$name.ot"
            k=$((k + 1))
            ((k >= 7)) && break
        fi
    done
    ls -la "$out"
}

case ${1:-} in
prepare) prepare ;;
run)
    shift
    run_plan "$@"
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
