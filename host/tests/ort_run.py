"""Test oracle for host/tests/onnx_parity.rs: runs an ONNX model with onnxruntime (CPU).

usage: ort_run.py MODEL INPUT OUTPUT DIM...

INPUT is raw little-endian f32 of shape DIM..., fed to the graph input "input"; the graph output "logits" is
written to OUTPUT as raw little-endian f32, and its shape is printed on stdout as space-separated integers.
"""

import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inp, out, *dims = sys.argv[1:]
    x = np.fromfile(inp, dtype="<f4").reshape([int(d) for d in dims])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    (y,) = sess.run(["logits"], {"input": x})
    np.ascontiguousarray(y, dtype="<f4").tofile(out)
    print(" ".join(str(d) for d in y.shape))


if __name__ == "__main__":
    main()
