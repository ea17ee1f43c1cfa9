//! Training throughput: the step [`crate::train::train`] runs, timed, on random inputs.
//!
//! One step is what training does per batch: gather a `u8` NHWC batch with `index_select`, normalise it with
//! [`data::normalize_batch`], forward in training mode, cross-entropy, then Adam's zero-grad, backward and
//! update ([`nn::Optimizer::backward_step`]). Inputs are random bytes, so this measures speed and nothing
//! about learning; it reads no data set and writes no file. `scripts/bench_train.py` is the same step in
//! PyTorch eager and `scripts/bench_train.sh` puts the two side by side.
//!
//! Thread counts are process-wide libtorch settings; set them ([`tch::set_num_threads`]) before calling.

use std::time::Instant;

use serde::Serialize;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::data;
use crate::nets::{self, Arch};

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Images per step.
    pub batch: i64,
    /// Square input side in pixels.
    pub size: i64,
    /// Timed steps (at least 1).
    pub steps: usize,
    /// Untimed steps first (allocator and kernel-selection warm-up).
    pub warmup: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed for weights, inputs and labels.
    pub seed: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch: 16,
            size: 128,
            steps: 3,
            warmup: 1,
            lr: 1e-4,
            seed: 0,
        }
    }
}

/// One net's training throughput.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// Architecture name ([`Arch::name`]).
    pub arch: String,
    /// Trainable parameters.
    pub params: i64,
    /// Images per step.
    pub batch: i64,
    /// Input side.
    pub size: i64,
    /// Wall seconds of each timed step.
    pub step_seconds: Vec<f64>,
    /// Median of `step_seconds`.
    pub median_step_s: f64,
    /// `batch / median_step_s`.
    pub img_per_s: f64,
    /// `batch /` the fastest step: on a machine shared with other work, the least disturbed estimate.
    pub best_img_per_s: f64,
}

/// Why a net could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Nothing to time, or an empty batch.
    #[error("bad bench settings: {0}")]
    Config(String),
    /// The input is below what the architecture accepts.
    #[error("{arch} needs inputs of at least {min} px, not {size}")]
    Size {
        /// Architecture name.
        arch: &'static str,
        /// Its smallest input side.
        min: i64,
        /// The side asked for.
        size: i64,
    },
    /// tch could not build the optimiser.
    #[error("building Adam for {arch}")]
    Tch {
        /// Architecture name.
        arch: &'static str,
        /// tch's error.
        source: tch::TchError,
    },
}

/// Median of a non-empty slice (mean of the middle two for an even length).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `cfg.steps` training steps of `arch` (4 classes, on the CPU) after `cfg.warmup` untimed ones.
pub fn train_rate(arch: Arch, cfg: &Config) -> Result<Rate, BenchError> {
    if cfg.steps == 0 || cfg.batch < 1 {
        return Err(BenchError::Config(format!(
            "{} timed steps of {} images: need at least one of each",
            cfg.steps, cfg.batch
        )));
    }
    if cfg.size < arch.min_input() {
        return Err(BenchError::Size {
            arch: arch.name(),
            min: arch.min_input(),
            size: cfg.size,
        });
    }
    let device = Device::Cpu;
    tch::manual_seed(cfg.seed);
    let classes = data::CLASSES.len() as i64;
    let vs = nn::VarStore::new(device);
    let graph = arch.build(&vs.root(), classes);
    let params = nets::trainable_params(&vs);
    let mut opt = nn::adam(0.9, 0.999, 0.0)
        .build(&vs, cfg.lr)
        .map_err(|source| BenchError::Tch {
            arch: arch.name(),
            source,
        })?;
    // A pool of decoded crops as training holds them (u8 NHWC), gathered per step like `train` does.
    let pool = 4 * cfg.batch;
    let x = Tensor::randint(256, [pool, cfg.size, cfg.size, 3], (Kind::Uint8, device));
    let y = Tensor::randint(classes, [pool], (Kind::Int64, device));
    let mut step_seconds = Vec::with_capacity(cfg.steps);
    for i in 0..cfg.warmup + cfg.steps {
        let t = Instant::now();
        let idx = Tensor::randint(pool, [cfg.batch], (Kind::Int64, device));
        let xb = data::normalize_batch(&x.index_select(0, &idx));
        let yb = y.index_select(0, &idx);
        let logits = graph.forward_t(&xb, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&yb, None, tch::Reduction::Mean, -100, 0.0);
        opt.backward_step(&loss);
        // Training reads the loss every step; so does the bench (and on the CPU it is a no-op sync).
        let _ = loss.double_value(&[]);
        if i >= cfg.warmup {
            step_seconds.push(t.elapsed().as_secs_f64());
        }
    }
    let median_step_s = median(&step_seconds);
    Ok(Rate {
        arch: arch.name().to_string(),
        params,
        batch: cfg.batch,
        size: cfg.size,
        median_step_s,
        img_per_s: cfg.batch as f64 / median_step_s,
        best_img_per_s: cfg.batch as f64
            / step_seconds.iter().copied().fold(f64::INFINITY, f64::min),
        step_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn one_edge_step_at_a_small_size_has_a_positive_rate() {
        let cfg = Config {
            batch: 2,
            size: 32,
            steps: 1,
            warmup: 0,
            ..Config::default()
        };
        let r = train_rate(Arch::Edge, &cfg).unwrap();
        assert_eq!(r.step_seconds.len(), 1);
        assert!(r.img_per_s > 0.0 && r.img_per_s.is_finite(), "{r:?}");
        assert!(r.params > 1_000_000, "{r:?}");
    }

    #[test]
    fn too_small_inputs_and_no_steps_are_refused() {
        let small = Config {
            size: 64,
            ..Config::default()
        };
        let e = train_rate(Arch::Xception, &small).unwrap_err().to_string();
        assert!(e.contains("71") && e.contains("64"), "{e}");
        let none = Config {
            steps: 0,
            ..Config::default()
        };
        assert!(train_rate(Arch::Edge, &none).is_err());
    }
}
