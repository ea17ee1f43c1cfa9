"""Per-node onnxruntime time of one model on one thread: the counterpart of
`cargo run --release -p leukoscope --example profile_model -- MODEL` (tract), for finding where the two differ.

usage: taskset -c 0 python scripts/ort_profile.py MODEL [RUNS]
"""

import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = (np.sin(np.arange(np.prod(shape), dtype=np.float32) * 0.05) * 2.0).reshape(shape)
    warm = 20
    for _ in range(warm + runs):
        sess.run(None, {inp.name: x})
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_node = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[f"{e['name'][: -len('_kernel_time')]} ({e['args'].get('op_name', '')})"] += e["dur"]
    n = warm + runs
    total = sum(per_node.values()) / n / 1000
    print(f"{path}: {total:.3f} ms of node time per inference ({len(per_node)} nodes)")
    for name, us in per_node.most_common(25):
        ms = us / n / 1000
        print(f"{ms:8.3f} ms {ms / total * 100:5.1f} %  {name}")


if __name__ == "__main__":
    main()
