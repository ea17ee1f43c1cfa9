//! The nets, each written once against [`graph::Builder`] so that training (tch) and export (ONNX) read the
//! same definition.

pub mod edge;
pub mod graph;

use tch::nn;

pub use graph::Graph;

/// The architectures `leukoscope-train` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The device's slim ResNet.
    Edge,
}

impl Arch {
    /// Name used in files and cards.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Edge => "edge",
        }
    }

    /// Builds the net under `p`.
    pub fn build(self, p: &nn::Path, classes: i64) -> Graph {
        match self {
            Arch::Edge => edge::edge(p, classes),
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
        let vs = nn::VarStore::new(Device::Cpu);
        let g = Arch::Edge.build(&vs.root(), 4);
        let n = trainable_params(&vs);
        assert!(n <= 1_500_000, "edge has {n} parameters");
        let x = Tensor::zeros([2, 3, 128, 128], (Kind::Float, Device::Cpu));
        let y = g.forward_t(&x, false);
        assert_eq!(y.size(), vec![2, 4]);
    }
}
