//! The nets, each written once against [`graph::Builder`] so that training (tch) and export (ONNX) read the
//! same definition.

pub mod edge;
pub mod efficientnet_lite0;
pub mod graph;
pub mod inception_resnet_v2;
pub mod resnet_v2;
pub mod xception;

use tch::nn;

pub use graph::Graph;

/// The architectures `leukoscope-train` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The device's slim ResNet.
    Edge,
    /// The edge net with a 16-channel stem (24 in `edge`): tract runs a 3 → 16 first convolution in about a
    /// third of the time of 3 → 24 (`benches/stem.rs`).
    #[value(name = "edge16")]
    Edge16,
    /// `edge16` with group norms (8 groups) in place of batch norms: per-image statistics, which Tsutsui et
    /// al. (2023) found to survive a change of lab far better than batch statistics.
    #[value(name = "edge16-gn")]
    Edge16Gn,
    /// `edge16` after each image's channels are standardised to zero mean and unit variance (Reinhard's
    /// colour statistics matching, in the graph: [`graph::ColourNorm::Instance`]).
    #[value(name = "edge16-in")]
    Edge16In,
    /// `edge16` after each image's `lαβ` channels are standardised (Reinhard's colour transfer, in the
    /// graph: [`graph::ColourNorm::Reinhard`]).
    #[value(name = "edge16-rh")]
    Edge16Rh,
    /// `edge16` after each image is divided by its white point, the brightest 8-pixel square
    /// ([`graph::ColourNorm::WhitePoint`]).
    #[value(name = "edge16-wp")]
    Edge16Wp,
    /// `edge16` on each image's standardised luminance alone ([`graph::ColourNorm::Grey`]): blind to the
    /// stain's hue.
    #[value(name = "edge16-grey")]
    Edge16Grey,
    /// `edge16` on each image's luminance and chroma after its white point is divided out
    /// ([`graph::ColourNorm::LumaChroma`]): blind to lamp and hue, not to how strongly a cell is stained.
    #[value(name = "edge16-lc")]
    Edge16Lc,
    /// Keras' ResNet101V2 (pre-activation ResNet-101), ~42.5 M parameters headless.
    #[value(name = "resnet101v2")]
    Resnet101v2,
    /// Keras' Xception, ~20.8 M parameters headless; inputs of at least 71 px.
    #[value(name = "xception")]
    Xception,
    /// Keras' Inception-ResNet-v2, ~54.3 M parameters headless; inputs of at least 75 px.
    #[value(name = "inception-resnet-v2")]
    InceptionResnetV2,
    /// EfficientNet-Lite0 (TensorFlow's), ~3.37 M parameters headless; ImageNet weights with `--pretrained`
    /// (`scripts/setup.sh` converts them).
    #[value(name = "efficientnet-lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite0 on each image's standardised luminance, copied to its three input channels
    /// ([`efficientnet_lite0::efficientnet_lite0_with`]): the ImageNet weights, blind to the stain's hue.
    #[value(name = "efficientnet-lite0-grey")]
    EfficientnetLite0Grey,
}

impl Arch {
    /// Name used in files and cards.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Edge => "edge",
            Arch::Edge16 => "edge16",
            Arch::Edge16Gn => "edge16-gn",
            Arch::Edge16In => "edge16-in",
            Arch::Edge16Rh => "edge16-rh",
            Arch::Edge16Wp => "edge16-wp",
            Arch::Edge16Grey => "edge16-grey",
            Arch::Edge16Lc => "edge16-lc",
            Arch::Resnet101v2 => "resnet101v2",
            Arch::Xception => "xception",
            Arch::InceptionResnetV2 => "inception-resnet-v2",
            Arch::EfficientnetLite0 => "efficientnet-lite0",
            Arch::EfficientnetLite0Grey => "efficientnet-lite0-grey",
        }
    }

    /// The input side the architecture was designed for (Keras' default): 128 for the edge net, 224 for
    /// ResNet101V2, 299 for Xception and Inception-ResNet-v2; 128 (the pipeline's crops) for
    /// EfficientNet-Lite0, whose ImageNet weights were trained at 224. Every net also runs on the pipeline's
    /// 128 px crops.
    pub fn default_input(self) -> i64 {
        match self {
            Arch::Edge
            | Arch::Edge16
            | Arch::Edge16Gn
            | Arch::Edge16In
            | Arch::Edge16Rh
            | Arch::Edge16Wp
            | Arch::Edge16Grey
            | Arch::Edge16Lc
            | Arch::EfficientnetLite0
            | Arch::EfficientnetLite0Grey => 128,
            Arch::Resnet101v2 => 224,
            Arch::Xception | Arch::InceptionResnetV2 => 299,
        }
    }

    /// The smallest input side the architecture accepts (Keras' `min_size`: 32, 71, 75; 32 for the edge net).
    pub fn min_input(self) -> i64 {
        match self {
            Arch::Edge
            | Arch::Edge16
            | Arch::Edge16Gn
            | Arch::Edge16In
            | Arch::Edge16Rh
            | Arch::Edge16Wp
            | Arch::Edge16Grey
            | Arch::Edge16Lc
            | Arch::Resnet101v2 => 32,
            Arch::Xception => xception::MIN_INPUT,
            Arch::InceptionResnetV2 => inception_resnet_v2::MIN_INPUT,
            Arch::EfficientnetLite0 | Arch::EfficientnetLite0Grey => efficientnet_lite0::MIN_INPUT,
        }
    }

    /// Builds the net under `p`, with its own batch-norm momentum.
    pub fn build(self, p: &nn::Path, classes: i64) -> Graph {
        self.build_with(p, classes, None)
    }

    /// Builds the net under `p`; `bn_momentum` (tch's convention: the weight of the new batch) overrides the
    /// report nets' and EfficientNet-Lite0's Keras/TensorFlow momentum (0.01 in tch terms). That momentum suits long runs from pretrained
    /// statistics; in a short run from scratch the running variances are still mostly their initial 1.0 when
    /// training ends (measured: Xception after 210 steps kept 0.12 = 0.99^210 in every separable block, so
    /// evaluation-mode features vanished and every image got the same logits). The edge net always uses tch's
    /// default (0.1).
    pub fn build_with(self, p: &nn::Path, classes: i64, bn_momentum: Option<f64>) -> Graph {
        let keras = bn_momentum.unwrap_or(0.01);
        match self {
            Arch::Edge => edge::edge(p, classes),
            Arch::Edge16 => edge::edge_with_stem(p, classes, 16),
            Arch::Edge16Gn => edge::edge_with(p, classes, 16, Some(8), None),
            Arch::Edge16In => edge::edge_with(
                p,
                classes,
                16,
                None,
                Some(graph::ColourNorm::Instance { eps: 1e-5 }),
            ),
            Arch::Edge16Rh => edge::edge_with(
                p,
                classes,
                16,
                None,
                Some(graph::ColourNorm::Reinhard { eps: 1e-5 }),
            ),
            Arch::Edge16Wp => edge::edge_with(
                p,
                classes,
                16,
                None,
                Some(graph::ColourNorm::WhitePoint { block: 8 }),
            ),
            Arch::Edge16Grey => edge::edge_with(
                p,
                classes,
                16,
                None,
                Some(graph::ColourNorm::Grey { eps: 1e-5 }),
            ),
            Arch::Edge16Lc => edge::edge_with(
                p,
                classes,
                16,
                None,
                Some(graph::ColourNorm::LumaChroma {
                    block: 8,
                    eps: 1e-5,
                }),
            ),
            Arch::Resnet101v2 => resnet_v2::resnet101v2(p, classes, keras),
            Arch::Xception => xception::xception(p, classes, keras),
            Arch::InceptionResnetV2 => inception_resnet_v2::inception_resnet_v2(p, classes, keras),
            Arch::EfficientnetLite0 => efficientnet_lite0::efficientnet_lite0(p, classes, keras),
            Arch::EfficientnetLite0Grey => {
                efficientnet_lite0::efficientnet_lite0_with(p, classes, keras, true)
            }
        }
    }
}

/// Number of trainable parameters in a var store.
pub fn trainable_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn edge_is_small_and_shapes_are_right() {
        let mut params = Vec::new();
        for arch in [Arch::Edge, Arch::Edge16] {
            let vs = nn::VarStore::new(Device::Cpu);
            let g = arch.build(&vs.root(), 4);
            let n = trainable_params(&vs);
            assert!(n <= 1_500_000, "{} has {n} parameters", arch.name());
            let x = Tensor::zeros([2, 3, 128, 128], (Kind::Float, Device::Cpu));
            let y = g.forward_t(&x, false);
            assert_eq!(y.size(), vec![2, 4]);
            params.push(n);
        }
        // Only the stem differs: 3→24→32 vs 3→16→32 (3×3 kernels, BN scale and shift).
        let stem = |c: i64| (27 * c + 2 * c) + (9 * c * 32 + 2 * 32);
        assert_eq!(params[0] - params[1], stem(24) - stem(16));
    }
}
