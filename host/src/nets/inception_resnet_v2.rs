//! Inception-ResNet-v2 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
//! Connections on Learning"), layer for layer as Keras Applications' `tf.keras.applications.InceptionResNetV2`
//! builds it (`keras/applications/inception_resnet_v2.py`):
//!
//! * stem: 3×3/2 32 valid, 3×3 32 valid, 3×3 64, max pool 3×3/2, 1×1 80 valid, 3×3 192 valid, max pool 3×3/2;
//! * mixed_5b (Inception-A-like, 320 channels);
//! * **10** × block35 (Inception-ResNet-A, scale 0.17), mixed_6a (Reduction-A, 1088 channels),
//!   **20** × block17 (Inception-ResNet-B, scale 0.1), mixed_7a (Reduction-B, 2080 channels),
//!   **10** × block8 (Inception-ResNet-C, scale 0.2; the last one with scale 1.0 and no ReLU);
//! * conv_7b 1×1 1536 → global average pooling → Dense(`classes`) (no dropout, as in the report's head).
//!
//! The block counts are Keras' (and TF-slim's) 10/20/10, not the 5/10/5 of the paper's Figure 15: Keras is
//! what the report trained, and its parameter count (54,336,736 headless) is only reached with 10/20/10.
//!
//! Keras' `conv2d_bn` is conv (no bias) → `BatchNormalization(scale=False)` → ReLU: the batch norm has a
//! trainable shift (beta) but **no scale** (gamma ≡ 1). The IR's [`Builder::batch_norm`] always has a
//! trainable gamma, so this file builds its batch norms itself (`affine: false`, then a trainable `bias`
//! only), which tch's forward and the ONNX writer both read as gamma = 1: the trainable-parameter count is
//! exactly Keras'. The residual "up" 1×1 conv has a bias and no BN/activation; the residual is
//! `x + scale · up`, via [`Builder::scale`]. Batch norms use the Keras defaults: epsilon 1e-3, momentum 0.99
//! (tch momentum 0.01). Every "same" padding here is stride 1 with odd kernels, and every strided layer is
//! "valid", so TensorFlow's padding is reproduced exactly.

use tch::nn;

use super::graph::{Builder, ConvSpec, Graph, Id, Op};

/// Width of the features fed to the head.
pub const FEATURES: i64 = 1536;

/// Smallest input side Keras accepts for Inception-ResNet-v2.
pub const MIN_INPUT: i64 = 75;

/// Batch-norm epsilon (the Keras default).
const BN_EPS: f64 = 1e-3;

/// Keras' `BatchNormalization(scale=False)`: running statistics and a trainable shift, no scale.
fn bn_no_scale(b: &mut Builder, root: &nn::Path, name: &str, x: Id, c: i64) -> Id {
    let path = name
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(root.clone(), |p, s| p / s);
    let cfg = nn::BatchNormConfig {
        affine: false,
        ..b.bn
    };
    let mut bn = nn::batch_norm2d(&path, c, cfg);
    bn.bs = Some(path.var("bias", &[c], nn::Init::Const(0.)));
    b.push(name, Op::BatchNorm(bn, cfg.eps), &[x])
}

/// Keras' `conv2d_bn`: conv `[kh, kw]` (no bias; "same" when `same`, else valid) → BN without scale → ReLU.
#[allow(clippy::too_many_arguments)]
fn conv2d_bn(
    b: &mut Builder,
    root: &nn::Path,
    name: &str,
    x: Id,
    cin: i64,
    cout: i64,
    [kh, kw]: [i64; 2],
    stride: i64,
    same: bool,
) -> Id {
    let padding = if same { [kh / 2, kw / 2] } else { [0, 0] };
    let c = b.conv_with(
        &format!("{name}/conv"),
        x,
        ConvSpec {
            cin,
            cout,
            kernel: [kh, kw],
            stride: [stride, stride],
            padding,
            groups: 1,
            bias: false,
        },
    );
    let c = bn_no_scale(b, root, &format!("{name}/bn"), c, cout);
    b.relu(&format!("{name}/relu"), c)
}

/// The block types of Keras' `inception_resnet_block`.
#[derive(Clone, Copy)]
enum BlockType {
    Block35,
    Block17,
    Block8,
}

/// Keras' `inception_resnet_block` on `x` with `c` channels: branches → concat → 1×1 "up" conv with bias →
/// `x + scale · up` → ReLU (unless `activation` is false).
#[allow(clippy::too_many_arguments)]
fn inception_resnet_block(
    b: &mut Builder,
    root: &nn::Path,
    name: &str,
    x: Id,
    c: i64,
    kind: BlockType,
    scale: f64,
    activation: bool,
) -> Id {
    let n = |s: &str| format!("{name}/{s}");
    let (branches, mixed) = match kind {
        BlockType::Block35 => {
            let b0 = conv2d_bn(b, root, &n("branch0"), x, c, 32, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1a"), x, c, 32, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1b"), b1, 32, 32, [3, 3], 1, true);
            let b2 = conv2d_bn(b, root, &n("branch2a"), x, c, 32, [1, 1], 1, true);
            let b2 = conv2d_bn(b, root, &n("branch2b"), b2, 32, 48, [3, 3], 1, true);
            let b2 = conv2d_bn(b, root, &n("branch2c"), b2, 48, 64, [3, 3], 1, true);
            (vec![b0, b1, b2], 32 + 32 + 64)
        }
        BlockType::Block17 => {
            let b0 = conv2d_bn(b, root, &n("branch0"), x, c, 192, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1a"), x, c, 128, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1b"), b1, 128, 160, [1, 7], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1c"), b1, 160, 192, [7, 1], 1, true);
            (vec![b0, b1], 192 + 192)
        }
        BlockType::Block8 => {
            let b0 = conv2d_bn(b, root, &n("branch0"), x, c, 192, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1a"), x, c, 192, [1, 1], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1b"), b1, 192, 224, [1, 3], 1, true);
            let b1 = conv2d_bn(b, root, &n("branch1c"), b1, 224, 256, [3, 1], 1, true);
            (vec![b0, b1], 192 + 256)
        }
    };
    let m = b.concat(&n("mixed"), &branches);
    let up = b.conv(&n("up"), m, mixed, c, 1, 1, 1, true);
    let up = b.scale(&n("scale"), up, scale);
    let y = b.add(&n("add"), x, up);
    if activation {
        b.relu(&n("relu"), y)
    } else {
        y
    }
}

/// Inception-ResNet-v2 with global average pooling and a `classes`-way linear head on logits.
///
/// `bn_momentum` is tch's (Keras' 0.99 is tch's 0.01, the default through [`super::Arch::build`]).
pub fn inception_resnet_v2(p: &nn::Path, classes: i64, bn_momentum: f64) -> Graph {
    let r = p;
    let mut builder = Builder::new(p);
    builder.bn = nn::BatchNormConfig {
        eps: BN_EPS,
        momentum: bn_momentum,
        ..Default::default()
    };
    let b = &mut builder;
    let x = b.input();
    // Stem.
    let x = conv2d_bn(b, r, "stem/conv1", x, 3, 32, [3, 3], 2, false);
    let x = conv2d_bn(b, r, "stem/conv2", x, 32, 32, [3, 3], 1, false);
    let x = conv2d_bn(b, r, "stem/conv3", x, 32, 64, [3, 3], 1, true);
    let x = b.max_pool("stem/pool1", x, 3, 2, 0);
    let x = conv2d_bn(b, r, "stem/conv4", x, 64, 80, [1, 1], 1, false);
    let x = conv2d_bn(b, r, "stem/conv5", x, 80, 192, [3, 3], 1, false);
    let x = b.max_pool("stem/pool2", x, 3, 2, 0);
    // mixed_5b.
    let b0 = conv2d_bn(b, r, "mixed_5b/branch0", x, 192, 96, [1, 1], 1, true);
    let b1 = conv2d_bn(b, r, "mixed_5b/branch1a", x, 192, 48, [1, 1], 1, true);
    let b1 = conv2d_bn(b, r, "mixed_5b/branch1b", b1, 48, 64, [5, 5], 1, true);
    let b2 = conv2d_bn(b, r, "mixed_5b/branch2a", x, 192, 64, [1, 1], 1, true);
    let b2 = conv2d_bn(b, r, "mixed_5b/branch2b", b2, 64, 96, [3, 3], 1, true);
    let b2 = conv2d_bn(b, r, "mixed_5b/branch2c", b2, 96, 96, [3, 3], 1, true);
    let bp = b.avg_pool("mixed_5b/pool", x, 3, 1, 1);
    let bp = conv2d_bn(b, r, "mixed_5b/branch_pool", bp, 192, 64, [1, 1], 1, true);
    let mut x = b.concat("mixed_5b/concat", &[b0, b1, b2, bp]);
    let mut c = 96 + 64 + 96 + 64;
    for i in 1..=10 {
        let name = format!("block35_{i}");
        x = inception_resnet_block(b, r, &name, x, c, BlockType::Block35, 0.17, true);
    }
    // mixed_6a (Reduction-A).
    let b0 = conv2d_bn(b, r, "mixed_6a/branch0", x, c, 384, [3, 3], 2, false);
    let b1 = conv2d_bn(b, r, "mixed_6a/branch1a", x, c, 256, [1, 1], 1, true);
    let b1 = conv2d_bn(b, r, "mixed_6a/branch1b", b1, 256, 256, [3, 3], 1, true);
    let b1 = conv2d_bn(b, r, "mixed_6a/branch1c", b1, 256, 384, [3, 3], 2, false);
    let bp = b.max_pool("mixed_6a/pool", x, 3, 2, 0);
    x = b.concat("mixed_6a/concat", &[b0, b1, bp]);
    c += 384 + 384;
    for i in 1..=20 {
        let name = format!("block17_{i}");
        x = inception_resnet_block(b, r, &name, x, c, BlockType::Block17, 0.1, true);
    }
    // mixed_7a (Reduction-B).
    let b0 = conv2d_bn(b, r, "mixed_7a/branch0a", x, c, 256, [1, 1], 1, true);
    let b0 = conv2d_bn(b, r, "mixed_7a/branch0b", b0, 256, 384, [3, 3], 2, false);
    let b1 = conv2d_bn(b, r, "mixed_7a/branch1a", x, c, 256, [1, 1], 1, true);
    let b1 = conv2d_bn(b, r, "mixed_7a/branch1b", b1, 256, 288, [3, 3], 2, false);
    let b2 = conv2d_bn(b, r, "mixed_7a/branch2a", x, c, 256, [1, 1], 1, true);
    let b2 = conv2d_bn(b, r, "mixed_7a/branch2b", b2, 256, 288, [3, 3], 1, true);
    let b2 = conv2d_bn(b, r, "mixed_7a/branch2c", b2, 288, 320, [3, 3], 2, false);
    let bp = b.max_pool("mixed_7a/pool", x, 3, 2, 0);
    x = b.concat("mixed_7a/concat", &[b0, b1, b2, bp]);
    c += 384 + 288 + 320;
    for i in 1..=10 {
        let name = format!("block8_{i}");
        let last = i == 10;
        let scale = if last { 1.0 } else { 0.2 };
        x = inception_resnet_block(b, r, &name, x, c, BlockType::Block8, scale, !last);
    }
    let x = conv2d_bn(b, r, "conv_7b", x, c, FEATURES, [1, 1], 1, true);
    let x = b.global_avg_pool("pool", x);
    let y = b.linear("fc", x, FEATURES, classes);
    builder.finish(y)
}
