#!/usr/bin/env python3
"""Training throughput of Leukoscope's nets in PyTorch eager: the other half of `scripts/bench_train.sh`.

The four nets are ported from `host/src/nets/` layer for layer (plain `torch.nn`, no torchvision): the same
kernels, strides, paddings, channels, bias flags, batch-norm eps/momentum, separable convs, pre-activation
blocks and Inception-ResNet scales, so the trainable-parameter counts equal the Rust nets' exactly (the
script prints them; `bench_train.sh` refuses a mismatch). One step is the one `leukoscope-train bench-train`
times, which is the one `host/src/train.rs` runs: gather a u8 NHWC batch with `index_select`, normalise it
like `data::normalize_batch` (permute to NCHW, /255, -mean, /std: the result keeps channels-last strides, as
in Rust), forward in training mode, cross-entropy, Adam zero-grad + backward + step. Inputs are random.

    python scripts/bench_train.py --archs edge,xception --batch 16 --size 128 --steps 3 --warmup 1 \
        --threads 2 [--json out.json]
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# `leukoscope::preprocess::{MEAN, STD}` (firmware/src/preprocess.rs).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASSES = 4


def conv(cin, cout, kernel, stride=1, padding=None, groups=1, bias=False):
    """A conv as `Builder::conv_with` makes it: symmetric padding (default "same" for odd kernels) and
    Kaiming-normal fan-out weights."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if padding is None:
        padding = (kh // 2, kw // 2)
    c = nn.Conv2d(cin, cout, (kh, kw), stride, padding, groups=groups, bias=bias)
    nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")
    if bias:
        nn.init.zeros_(c.bias)
    return c


class Pad(nn.Module):
    """The IR's `Pad`: zeros, `[top, left, bottom, right]`."""

    def __init__(self, t, l, b, r):
        super().__init__()
        self.pads = (l, r, t, b)

    def forward(self, x):
        return F.pad(x, self.pads)


class BnNoScale(nn.Module):
    """Keras' `BatchNormalization(scale=False)`: running statistics and a trainable shift, gamma = 1."""

    def __init__(self, c, eps, momentum):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps, self.momentum = eps, momentum

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias,
                            self.training, self.momentum, self.eps)


def conv_bn(cin, cout, k, stride, eps=1e-5, momentum=0.1, relu=False):
    layers = [conv(cin, cout, k, stride), nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# --- edge (host/src/nets/edge.rs) ------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, relu=True)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.down = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        s = self.down(x) if self.down is not None else x
        return F.relu(y + s)


class Edge(nn.Module):
    def __init__(self, classes=CLASSES, stem=24):
        super().__init__()
        widths = [32, 64, 128, 256]
        self.stem = nn.Sequential(conv_bn(3, stem, 3, 2, relu=True), conv_bn(stem, widths[0], 3, 2, relu=True))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(self.dropout(x.mean((2, 3))))


# --- resnet101v2 (host/src/nets/resnet_v2.rs) -------------------------------------------------------------

RESNET_EPS = 1.001e-5
KERAS_MOMENTUM = 0.01  # Keras' 0.99 in PyTorch's (and tch's) convention


class Block2(nn.Module):
    """Keras' `block2`: a pre-activation bottleneck block."""

    def __init__(self, cin, filters, stride, conv_shortcut):
        super().__init__()
        bn = dict(eps=RESNET_EPS, momentum=KERAS_MOMENTUM)
        self.preact = nn.Sequential(nn.BatchNorm2d(cin, **bn), nn.ReLU())
        self.stride = stride
        self.shortcut = conv(cin, 4 * filters, 1, stride, padding=0, bias=True) if conv_shortcut else None
        self.conv1 = conv_bn(cin, filters, 1, 1, relu=True, **bn)
        self.conv2 = nn.Sequential(Pad(1, 1, 1, 1), conv(filters, filters, 3, stride, padding=0),
                                   nn.BatchNorm2d(filters, **bn), nn.ReLU())
        self.conv3 = conv(filters, 4 * filters, 1, 1, bias=True)

    def forward(self, x):
        p = self.preact(x)
        if self.shortcut is not None:
            s = self.shortcut(p)
        elif self.stride > 1:
            s = F.max_pool2d(x, 1, self.stride, 0)
        else:
            s = x
        return s + self.conv3(self.conv2(self.conv1(p)))


class ResNet101V2(nn.Module):
    def __init__(self, classes=CLASSES):
        super().__init__()
        self.stem = nn.Sequential(Pad(3, 3, 3, 3), conv(3, 64, 7, 2, padding=0, bias=True), Pad(1, 1, 1, 1),
                                  nn.MaxPool2d(3, 2, 0))
        blocks, cin = [], 64
        counts, filters = [3, 4, 23, 3], [64, 128, 256, 512]
        for s, (n, f) in enumerate(zip(counts, filters)):
            last_stack = s + 1 == len(counts)
            for i in range(n):
                stride = 2 if i + 1 == n and not last_stack else 1
                blocks.append(Block2(cin, f, stride, i == 0))
                cin = 4 * f
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(nn.BatchNorm2d(cin, eps=RESNET_EPS, momentum=KERAS_MOMENTUM), nn.ReLU())
        self.fc = nn.Linear(2048, classes)

    def forward(self, x):
        x = self.post(self.blocks(self.stem(x)))
        return self.fc(x.mean((2, 3)))


# --- xception (host/src/nets/xception.rs) ----------------------------------------------------------------

XCEPTION_BN = dict(eps=1e-3, momentum=KERAS_MOMENTUM)


def sep_conv_bn(cin, cout):
    """Keras' `SeparableConv2D(cout, 3, padding="same", use_bias=False)` then BN."""
    return nn.Sequential(conv(cin, cin, 3, 1, groups=cin), conv(cin, cout, 1, 1),
                         nn.BatchNorm2d(cout, **XCEPTION_BN))


class DownBlock(nn.Module):
    def __init__(self, cin, c1, c2, leading_relu):
        super().__init__()
        self.shortcut = nn.Sequential(conv(cin, c2, 1, 2), nn.BatchNorm2d(c2, **XCEPTION_BN))
        layers = [nn.ReLU()] if leading_relu else []
        layers += [sep_conv_bn(cin, c1), nn.ReLU(), sep_conv_bn(c1, c2), nn.MaxPool2d(3, 2, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class MiddleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(3) for m in (nn.ReLU(), sep_conv_bn(728, 728))])

    def forward(self, x):
        return self.body(x) + x


class Xception(nn.Module):
    def __init__(self, classes=CLASSES):
        super().__init__()

        def conv_valid_bn_relu(cin, cout, stride):
            return nn.Sequential(conv(cin, cout, 3, stride, padding=0), nn.BatchNorm2d(cout, **XCEPTION_BN),
                                 nn.ReLU())

        self.features = nn.Sequential(
            conv_valid_bn_relu(3, 32, 2), conv_valid_bn_relu(32, 64, 1),
            DownBlock(64, 128, 128, False), DownBlock(128, 256, 256, True), DownBlock(256, 728, 728, True),
            *[MiddleBlock() for _ in range(5, 13)],
            DownBlock(728, 728, 1024, True),
            sep_conv_bn(1024, 1536), nn.ReLU(), sep_conv_bn(1536, 2048), nn.ReLU())
        self.fc = nn.Linear(2048, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


# --- inception-resnet-v2 (host/src/nets/inception_resnet_v2.rs) ------------------------------------------

def conv2d_bn(cin, cout, kernel, stride=1, same=True):
    """Keras' `conv2d_bn`: conv (no bias; "same" or valid) → BN without scale → ReLU."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (kh // 2, kw // 2) if same else (0, 0)
    return nn.Sequential(conv(cin, cout, (kh, kw), stride, padding), BnNoScale(cout, 1e-3, KERAS_MOMENTUM),
                         nn.ReLU())


class Branches(nn.Module):
    """Parallel branches concatenated along channels."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class InceptionResNetBlock(nn.Module):
    def __init__(self, c, kind, scale, activation):
        super().__init__()
        if kind == "block35":
            branches = [conv2d_bn(c, 32, 1),
                        nn.Sequential(conv2d_bn(c, 32, 1), conv2d_bn(32, 32, 3)),
                        nn.Sequential(conv2d_bn(c, 32, 1), conv2d_bn(32, 48, 3), conv2d_bn(48, 64, 3))]
            mixed = 32 + 32 + 64
        elif kind == "block17":
            branches = [conv2d_bn(c, 192, 1),
                        nn.Sequential(conv2d_bn(c, 128, 1), conv2d_bn(128, 160, (1, 7)),
                                      conv2d_bn(160, 192, (7, 1)))]
            mixed = 192 + 192
        else:
            branches = [conv2d_bn(c, 192, 1),
                        nn.Sequential(conv2d_bn(c, 192, 1), conv2d_bn(192, 224, (1, 3)),
                                      conv2d_bn(224, 256, (3, 1)))]
            mixed = 192 + 256
        self.mixed = Branches(*branches)
        self.up = conv(mixed, c, 1, 1, bias=True)
        self.scale, self.activation = scale, activation

    def forward(self, x):
        y = x + self.up(self.mixed(x)) * self.scale
        return F.relu(y) if self.activation else y


class InceptionResNetV2(nn.Module):
    def __init__(self, classes=CLASSES):
        super().__init__()
        stem = [conv2d_bn(3, 32, 3, 2, False), conv2d_bn(32, 32, 3, 1, False), conv2d_bn(32, 64, 3),
                nn.MaxPool2d(3, 2, 0), conv2d_bn(64, 80, 1, 1, False), conv2d_bn(80, 192, 3, 1, False),
                nn.MaxPool2d(3, 2, 0)]
        mixed_5b = Branches(
            conv2d_bn(192, 96, 1),
            nn.Sequential(conv2d_bn(192, 48, 1), conv2d_bn(48, 64, 5)),
            nn.Sequential(conv2d_bn(192, 64, 1), conv2d_bn(64, 96, 3), conv2d_bn(96, 96, 3)),
            nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv2d_bn(192, 64, 1)))
        c = 96 + 64 + 96 + 64
        layers = stem + [mixed_5b] + [InceptionResNetBlock(c, "block35", 0.17, True) for _ in range(10)]
        layers.append(Branches(
            conv2d_bn(c, 384, 3, 2, False),
            nn.Sequential(conv2d_bn(c, 256, 1), conv2d_bn(256, 256, 3), conv2d_bn(256, 384, 3, 2, False)),
            nn.MaxPool2d(3, 2, 0)))
        c += 384 + 384
        layers += [InceptionResNetBlock(c, "block17", 0.1, True) for _ in range(20)]
        layers.append(Branches(
            nn.Sequential(conv2d_bn(c, 256, 1), conv2d_bn(256, 384, 3, 2, False)),
            nn.Sequential(conv2d_bn(c, 256, 1), conv2d_bn(256, 288, 3, 2, False)),
            nn.Sequential(conv2d_bn(c, 256, 1), conv2d_bn(256, 288, 3), conv2d_bn(288, 320, 3, 2, False)),
            nn.MaxPool2d(3, 2, 0)))
        c += 384 + 288 + 320
        layers += [InceptionResNetBlock(c, "block8", 1.0 if i == 10 else 0.2, i != 10) for i in range(1, 11)]
        layers.append(conv2d_bn(c, 1536, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1536, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


NETS = {
    "edge": Edge,
    "resnet101v2": ResNet101V2,
    "xception": Xception,
    "inception-resnet-v2": InceptionResNetV2,
}


def params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def normalize_batch(x):
    """`data::normalize_batch`: u8 NHWC → normalised f32 NCHW (a permuted view: channels-last strides)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def train_rate(arch, batch, size, steps, warmup, lr=1e-4, seed=0):
    torch.manual_seed(seed)
    model = NETS[arch]()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    pool = 4 * batch
    x = torch.randint(0, 256, (pool, size, size, 3), dtype=torch.uint8)
    y = torch.randint(0, CLASSES, (pool,), dtype=torch.int64)
    step_seconds = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        idx = torch.randint(0, pool, (batch,), dtype=torch.int64)
        xb = normalize_batch(x.index_select(0, idx))
        yb = y.index_select(0, idx)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= warmup:
            step_seconds.append(time.perf_counter() - t)
    median = statistics.median(step_seconds)
    return {"arch": arch, "params": params(model), "batch": batch, "size": size,
            "step_seconds": step_seconds, "median_step_s": median, "img_per_s": batch / median,
            "best_img_per_s": batch / min(step_seconds)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(NETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params-only", action="store_true", help="print parameter counts and exit")
    ap.add_argument("--json")
    a = ap.parse_args()
    archs = a.archs.split(",")
    for arch in archs:
        if arch not in NETS:
            sys.exit(f"error: unknown net {arch!r} (known: {', '.join(NETS)})")
    if a.params_only:
        for arch in archs:
            print(f"{arch}: {params(NETS[arch]())} params")
        return
    if a.steps < 1 or a.batch < 1:
        sys.exit("error: --steps and --batch must be at least 1")
    torch.set_num_interop_threads(1)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}: {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} "
          f"inter-op threads, batch {a.batch}, {a.size} px, {a.warmup} warm-up + {a.steps} timed steps",
          file=sys.stderr)
    nets = []
    for arch in archs:
        r = train_rate(arch, a.batch, a.size, a.steps, a.warmup, a.lr, a.seed)
        print(f"{r['arch']}: {r['params']} params, {r['img_per_s']:.2f} img/s "
              f"(median {r['median_step_s']:.3f} s/step of {[round(s, 3) for s in r['step_seconds']]}; "
              f"best step {r['best_img_per_s']:.2f} img/s)")
        nets.append(r)
    if a.json:
        doc = {"backend": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "interop_threads": torch.get_num_interop_threads(), "batch": a.batch, "size": a.size,
               "steps": a.steps, "warmup": a.warmup, "lr": a.lr, "timing": "median per-step wall time",
               "nets": nets}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
