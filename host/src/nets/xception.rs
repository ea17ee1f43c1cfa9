//! Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions"), layer for layer
//! as Keras Applications' `tf.keras.applications.Xception` builds it (`keras/applications/xception.py`):
//!
//! * entry flow: conv 3×3/2 32 valid → BN → ReLU → conv 3×3 64 valid → BN → ReLU, then three blocks
//!   (128, 256, 728) of `[ReLU →] SepConv → BN → ReLU → SepConv → BN → max pool 3×3/2 "same"` plus a
//!   1×1/2 conv + BN shortcut (block 2 has no leading ReLU: its input is already rectified);
//! * middle flow: 8 × (3 × `ReLU → SepConv 728 → BN`) with an identity shortcut;
//! * exit flow: `ReLU → SepConv 728 → BN → ReLU → SepConv 1024 → BN → max pool 3×3/2` plus a 1×1/2 conv + BN
//!   shortcut, then `SepConv 1536 → BN → ReLU → SepConv 2048 → BN → ReLU`;
//! * global average pooling → Dense(`classes`) (no dropout, as in the report's head).
//!
//! A separable conv is Keras' `SeparableConv2D`: depthwise 3×3 (groups = cin, no bias) then pointwise 1×1 (no
//! bias); there is no BN or activation between the two. Every conv has `use_bias=False`. Batch norms use the
//! Keras defaults: epsilon 1e-3, momentum 0.99 (tch momentum 0.01).
//!
//! **Deviation from Keras:** TensorFlow's "same" padding for the stride-2 3×3 max pools is asymmetric on even
//! sizes (0 before, 1 after) and symmetric (1, 1) on odd ones; the IR's max pool pads symmetrically (−∞), so
//! on even sizes the pooling windows sit one pixel up/left of TensorFlow's. Output sizes are the same
//! (`ceil(n / 2)`) at every input size, so the net stays size-agnostic; it is exact where the pooled size is
//! odd (at 299 px: blocks 2, 4 and 13; at 128 px: blocks 2 and 3). Emulating the asymmetric case would need
//! the input size at build time and −∞ padding, which the IR's `pad` (zeros) cannot give for these
//! un-rectified BN outputs. This only matters for importing Keras weights, not for training from scratch.
//! The 1×1/2 "same" shortcut convs need no padding at any size, so they are exact.

use tch::nn;

use super::graph::{Builder, ConvSpec, Graph, Id};

/// Width of the features fed to the head.
pub const FEATURES: i64 = 2048;

/// Smallest input side Keras accepts for Xception.
pub const MIN_INPUT: i64 = 71;

/// Keras' `SeparableConv2D(cout, 3, padding="same", use_bias=False)` then BN.
fn sep_conv_bn(b: &mut Builder, name: &str, x: Id, cin: i64, cout: i64) -> Id {
    let d = b.conv(&format!("{name}/depthwise"), x, cin, cin, 3, 1, cin, false);
    let p = b.conv(&format!("{name}/pointwise"), d, cin, cout, 1, 1, 1, false);
    b.batch_norm(&format!("{name}/bn"), p, cout)
}

/// A valid (unpadded) conv without bias, then BN and ReLU.
fn conv_valid_bn_relu(b: &mut Builder, name: &str, x: Id, cin: i64, cout: i64, stride: i64) -> Id {
    let c = b.conv_with(
        &format!("{name}/conv"),
        x,
        ConvSpec {
            cin,
            cout,
            kernel: [3, 3],
            stride: [stride, stride],
            padding: [0, 0],
            groups: 1,
            bias: false,
        },
    );
    let c = b.batch_norm(&format!("{name}/bn"), c, cout);
    b.relu(&format!("{name}/relu"), c)
}

/// An entry/exit-flow block with a strided 1×1 conv shortcut: `[ReLU →] SepConv(c1) → BN → ReLU → SepConv(c2)
/// → BN → max pool 3×3/2`, plus `conv 1×1/2 → BN` of the input.
fn down_block(
    b: &mut Builder,
    name: &str,
    x: Id,
    cin: i64,
    [c1, c2]: [i64; 2],
    leading_relu: bool,
) -> Id {
    let shortcut = b.conv_bn(&format!("{name}/shortcut"), x, cin, c2, 1, 2, 1);
    let mut y = x;
    if leading_relu {
        y = b.relu(&format!("{name}/sepconv1_act"), y);
    }
    let y = sep_conv_bn(b, &format!("{name}/sepconv1"), y, cin, c1);
    let y = b.relu(&format!("{name}/sepconv2_act"), y);
    let y = sep_conv_bn(b, &format!("{name}/sepconv2"), y, c1, c2);
    let y = b.max_pool(&format!("{name}/pool"), y, 3, 2, 1);
    b.add(&format!("{name}/add"), y, shortcut)
}

/// Xception with global average pooling and a `classes`-way linear head on logits.
///
/// `bn_momentum` is tch's (Keras' 0.99 is tch's 0.01, the default through [`super::Arch::build`]).
pub fn xception(p: &nn::Path, classes: i64, bn_momentum: f64) -> Graph {
    let mut b = Builder::new(p);
    b.bn = nn::BatchNormConfig {
        eps: 1e-3,
        momentum: bn_momentum,
        ..Default::default()
    };
    let x = b.input();
    // Entry flow.
    let x = conv_valid_bn_relu(&mut b, "block1/conv1", x, 3, 32, 2);
    let x = conv_valid_bn_relu(&mut b, "block1/conv2", x, 32, 64, 1);
    let x = down_block(&mut b, "block2", x, 64, [128, 128], false);
    let x = down_block(&mut b, "block3", x, 128, [256, 256], true);
    let mut x = down_block(&mut b, "block4", x, 256, [728, 728], true);
    // Middle flow.
    for i in 5..13 {
        let residual = x;
        let mut y = x;
        for j in 1..=3 {
            y = b.relu(&format!("block{i}/sepconv{j}_act"), y);
            y = sep_conv_bn(&mut b, &format!("block{i}/sepconv{j}"), y, 728, 728);
        }
        x = b.add(&format!("block{i}/add"), y, residual);
    }
    // Exit flow.
    let x = down_block(&mut b, "block13", x, 728, [728, 1024], true);
    let x = sep_conv_bn(&mut b, "block14/sepconv1", x, 1024, 1536);
    let x = b.relu("block14/sepconv1_act", x);
    let x = sep_conv_bn(&mut b, "block14/sepconv2", x, 1536, FEATURES);
    let x = b.relu("block14/sepconv2_act", x);
    let x = b.global_avg_pool("pool", x);
    let y = b.linear("fc", x, FEATURES, classes);
    b.finish(y)
}
