//! The edge net: a slim ResNet for the device's CPU.
//!
//! Plain 3×3 convolutions rather than depthwise ones: tract and libtorch's CPU kernels both run dense 3×3
//! convolutions far closer to peak than depthwise ones (tract: MobileNetV2 at 128 px is 4.7× slower than
//! onnxruntime, ResNet18 1.5×), and the training machine is a 2-core CPU. ~1.23 M parameters, ~72 M MACs at
//! 128×128.

use tch::nn;

use super::graph::{Builder, ColourNorm, Graph, Id};

/// Stage widths after the stem.
const WIDTHS: [i64; 4] = [32, 64, 128, 256];

fn basic_block(b: &mut Builder, name: &str, x: Id, cin: i64, cout: i64, stride: i64) -> Id {
    let y = b.conv_bn_relu(&format!("{name}/conv1"), x, cin, cout, 3, stride, 1);
    let y = b.conv_bn(&format!("{name}/conv2"), y, cout, cout, 3, 1, 1);
    let shortcut = if stride != 1 || cin != cout {
        b.conv_bn(&format!("{name}/down"), x, cin, cout, 1, stride, 1)
    } else {
        x
    };
    let s = b.add(&format!("{name}/add"), y, shortcut);
    b.relu(&format!("{name}/relu"), s)
}

/// The edge net with a `classes`-way linear head on logits.
pub fn edge(p: &nn::Path, classes: i64) -> Graph {
    edge_with_stem(p, classes, 24)
}

/// The edge net with `stem` channels out of its first convolution (24 in [`edge`]).
pub fn edge_with_stem(p: &nn::Path, classes: i64, stem: i64) -> Graph {
    edge_with(p, classes, stem, None, None)
}

/// The edge net with `stem` channels out of its first convolution and, with `groups`, group norms of that
/// many groups in place of every batch norm and, with `colour`, that colour standardisation of each image
/// before the first convolution.
pub fn edge_with(
    p: &nn::Path,
    classes: i64,
    stem: i64,
    groups: Option<i64>,
    colour: Option<ColourNorm>,
) -> Graph {
    let mut b = Builder::new(p);
    b.groups = groups;
    let mut x = b.input();
    if let Some(c) = colour {
        x = b.colour_norm("colour", x, c);
    }
    let cin = colour.map_or(3, ColourNorm::channels);
    let x = b.conv_bn_relu("stem1", x, cin, stem, 3, 2, 1);
    let mut x = b.conv_bn_relu("stem2", x, stem, WIDTHS[0], 3, 2, 1);
    let mut cin = WIDTHS[0];
    for (i, &w) in WIDTHS.iter().enumerate() {
        let stride = if i == 0 { 1 } else { 2 };
        x = basic_block(&mut b, &format!("stage{}", i + 1), x, cin, w, stride);
        cin = w;
    }
    let x = b.global_avg_pool("pool", x);
    let x = b.dropout("dropout", x, 0.2);
    let y = b.linear("fc", x, cin, classes);
    b.finish(y)
}
