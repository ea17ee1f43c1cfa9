//! ResNet101V2 (He et al. 2016, "Identity Mappings in Deep Residual Networks"), layer for layer as Keras
//! Applications' `tf.keras.applications.ResNet101V2` builds it (`keras/applications/resnet_v2.py` on top of
//! `resnet.py`'s `ResNet`, `stack2` and `block2`):
//!
//! * stem: ZeroPadding(3) → conv 7×7/2, 64, **with bias**, no BN/ReLU (pre-activation net) → ZeroPadding(1) →
//!   max pool 3×3/2 valid (the zero padding is an explicit `pad` node: the pool reads raw conv outputs, which
//!   can be negative, so zero padding is not −∞ padding);
//! * four stacks of 3, 4, 23, 3 pre-activation bottleneck blocks (filters 64, 128, 256, 512, expansion 4).
//!   Each block: BN → ReLU (the "preact"), then 1×1 conv (no bias) → BN → ReLU → ZeroPadding(1) → 3×3 conv
//!   (no bias, stride `s`, valid) → BN → ReLU → 1×1 conv ×4 **with bias**, plus the shortcut. The first block
//!   of a stack has a 1×1 conv shortcut **with bias** on the pre-activated input; the others have the
//!   identity, or a 1×1/2 max pool of the (not pre-activated) input where the block strides. Keras v2 puts
//!   stride 2 in the **last** block of each stack except the last one;
//! * post BN → ReLU → global average pooling → Dense(`classes`) (no dropout, as in the report's head).
//!
//! Keras' batch norms here use `epsilon=1.001e-5` (not the Keras default 1e-3) and momentum 0.99, i.e. tch
//! momentum 0.01.

use tch::nn;

use super::graph::{Builder, ConvSpec, Graph, Id};

/// Keras' `epsilon` for every batch norm in `resnet.py`.
pub const BN_EPS: f64 = 1.001e-5;

/// Blocks per stack of ResNet101V2.
pub const BLOCKS: [usize; 4] = [3, 4, 23, 3];

/// Bottleneck widths per stack (outputs are 4× these).
pub const FILTERS: [i64; 4] = [64, 128, 256, 512];

/// Width of the features fed to the head.
pub const FEATURES: i64 = 2048;

/// Keras' `block2`: one pre-activation bottleneck block on `x` (`cin` channels).
fn block2(
    b: &mut Builder,
    name: &str,
    x: Id,
    cin: i64,
    filters: i64,
    stride: i64,
    conv_shortcut: bool,
) -> Id {
    let preact = b.batch_norm(&format!("{name}/preact_bn"), x, cin);
    let preact = b.relu(&format!("{name}/preact_relu"), preact);
    let shortcut = if conv_shortcut {
        b.conv_with(
            &format!("{name}/shortcut"),
            preact,
            ConvSpec {
                cin,
                cout: 4 * filters,
                kernel: [1, 1],
                stride: [stride, stride],
                padding: [0, 0],
                groups: 1,
                bias: true,
            },
        )
    } else if stride > 1 {
        b.max_pool(&format!("{name}/shortcut_pool"), x, 1, stride, 0)
    } else {
        x
    };
    let y = b.conv_bn_relu(&format!("{name}/conv1"), preact, cin, filters, 1, 1, 1);
    let y = b.pad(&format!("{name}/conv2_pad"), y, [1, 1, 1, 1]);
    let y = b.conv_with(
        &format!("{name}/conv2/conv"),
        y,
        ConvSpec {
            cin: filters,
            cout: filters,
            kernel: [3, 3],
            stride: [stride, stride],
            padding: [0, 0],
            groups: 1,
            bias: false,
        },
    );
    let y = b.batch_norm(&format!("{name}/conv2/bn"), y, filters);
    let y = b.relu(&format!("{name}/conv2/relu"), y);
    let y = b.conv(
        &format!("{name}/conv3"),
        y,
        filters,
        4 * filters,
        1,
        1,
        1,
        true,
    );
    b.add(&format!("{name}/add"), shortcut, y)
}

/// ResNet101V2 with global average pooling and a `classes`-way linear head on logits.
///
/// `bn_momentum` is tch's (Keras' 0.99 is tch's 0.01, the default through [`super::Arch::build`]).
pub fn resnet101v2(p: &nn::Path, classes: i64, bn_momentum: f64) -> Graph {
    let mut b = Builder::new(p);
    b.bn = nn::BatchNormConfig {
        eps: BN_EPS,
        momentum: bn_momentum,
        ..Default::default()
    };
    let x = b.input();
    let x = b.pad("stem/pad", x, [3, 3, 3, 3]);
    let x = b.conv_with(
        "stem/conv",
        x,
        ConvSpec {
            cin: 3,
            cout: 64,
            kernel: [7, 7],
            stride: [2, 2],
            padding: [0, 0],
            groups: 1,
            bias: true,
        },
    );
    let x = b.pad("stem/pool_pad", x, [1, 1, 1, 1]);
    let mut x = b.max_pool("stem/pool", x, 3, 2, 0);
    let mut cin = 64;
    for (s, (&blocks, &filters)) in BLOCKS.iter().zip(&FILTERS).enumerate() {
        let last_stack = s + 1 == BLOCKS.len();
        for i in 0..blocks {
            let stride = if i + 1 == blocks && !last_stack { 2 } else { 1 };
            let name = format!("stack{}/block{}", s + 1, i + 1);
            x = block2(&mut b, &name, x, cin, filters, stride, i == 0);
            cin = 4 * filters;
        }
    }
    let x = b.batch_norm("post_bn", x, cin);
    let x = b.relu("post_relu", x);
    let x = b.global_avg_pool("pool", x);
    let y = b.linear("fc", x, FEATURES, classes);
    b.finish(y)
}
