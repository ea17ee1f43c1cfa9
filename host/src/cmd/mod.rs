//! One module per `leukoscope-train` subcommand: its flags (`Args`) and a `run` that calls the library.
//!
//! This is binary-only glue: what is worth testing lives in `leukoscope_host`. Flags that several commands
//! share are declared once here and flattened into each command's `Args`.

use std::path::PathBuf;

use leukoscope_host::data::{self, DataError, Subset};

pub mod bench_train;
pub mod compare;
pub mod cv;
pub mod ensemble;
pub mod eval;
pub mod export;
pub mod feature_stats;
pub mod pack;
pub mod reproduce;
pub mod stain_norm;
pub mod train;

/// `--data`: where the Kaggle layout is.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl DataArgs {
    /// The data root: `--data`, else the default beside the repository.
    pub fn root(&self) -> Result<PathBuf, DataError> {
        data::resolve_root(self.data.as_deref())
    }
}

/// `--seed` and `--val-fraction`: the smear-grouped validation split of TRAIN.
#[derive(clap::Args, Debug)]
pub struct HoldoutArgs {
    /// Seed of the smear-grouped validation split (`train` also seeds everything random with it); other
    /// commands must use the training run's.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of each class's source smears held out for validation, in [0, 1) (other commands: the training
    /// run's). `train --val-fraction 0` trains on every smear and keeps the last epoch (only for a recipe and
    /// epoch count already chosen by `--folds` validation).
    #[arg(long, default_value_t = 0.2, value_parser = fraction)]
    pub val_fraction: f64,
}

/// `--split` with the data and the hold-out it needs: the images a model is evaluated on.
#[derive(clap::Args, Debug)]
pub struct SplitArgs {
    /// TEST, TEST_SIMPLE, TRAIN, or VAL (the smear-grouped validation part of TRAIN, with the training run's
    /// --seed and --val-fraction).
    #[arg(long, value_enum, default_value = "TEST", ignore_case = true)]
    pub split: Subset,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub holdout: HoldoutArgs,
}

impl SplitArgs {
    /// The labelled images of `--split`.
    pub fn samples(&self) -> Result<Vec<data::Sample>, DataError> {
        self.split.samples(
            &self.data.root()?,
            self.holdout.val_fraction,
            self.holdout.seed,
        )
    }
}

/// `--device`: where tch trains.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// auto, cpu, cuda or cuda:N (auto picks CUDA when present).
    #[arg(long, default_value = "auto", value_parser = leukoscope_host::device::parse)]
    pub device: tch::Device,
}

/// A fraction in [0, 1).
fn fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not in [0, 1)"))
    }
}

/// A count of at least one.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Worker threads for decoding and tract inference: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
