"""onnxruntime latency of ONNX models on one CPU thread, for scripts/model_table.py.

usage: ort_bench.py [--runs N] MODEL...

Prints one JSON object per line: {"model": path, "median_ms": m, "runs": n}. The input is a fixed pattern of
the model's input shape (batch 1); every session is single-threaded (intra- and inter-op), with all graph
optimisations on, warmed up before timing.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def bench(path: str, runs: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = (np.sin(np.arange(np.prod(shape), dtype=np.float32) * 0.05) * 2.0).reshape(shape)
    feed = {inp.name: x}
    for _ in range(max(10, runs // 10)):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def main() -> None:
    args = sys.argv[1:]
    runs = 200
    if args[:1] == ["--runs"]:
        runs, args = int(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    for path in args:
        print(json.dumps({"model": path, "median_ms": bench(path, runs), "runs": runs}), flush=True)


if __name__ == "__main__":
    main()
