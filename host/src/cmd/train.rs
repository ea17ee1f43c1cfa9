//! `leukoscope-train train`: one training run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope_host::data::TrainSource;
use leukoscope_host::nets::Arch;
use leukoscope_host::train::{self, Recipe};

use super::{at_least_one, DataArgs, DeviceArgs, HoldoutArgs};

/// Train a net on TRAIN with a smear-grouped validation split; keeps the best-validation weights.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture.
    #[arg(long, value_enum, default_value = "edge")]
    arch: Arch,
    #[command(flatten)]
    data: DataArgs,
    /// Train from a pack written by `leukoscope-train pack` instead of the image folders.
    #[arg(long, conflicts_with = "data")]
    pack: Option<PathBuf>,
    /// Output folder for best.ot and train.json (an earlier run's are replaced).
    #[arg(long, default_value = "runs/edge")]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Epochs (at least 1).
    #[arg(long, default_value_t = 12, value_parser = at_least_one)]
    epochs: usize,
    /// Batch size (at least 1).
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    batch: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Decoupled weight decay (0 = Adam).
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Constant learning rate instead of warm-up + cosine decay.
    #[arg(long)]
    constant_lr: bool,
    /// Disable flips/rotations and colour jitter.
    #[arg(long)]
    no_augment: bool,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    #[command(flatten)]
    holdout: HoldoutArgs,
    /// Grouped k-fold validation: hold out fold `--fold` of this many (replaces --val-fraction).
    #[arg(long, requires = "fold", value_parser = clap::value_parser!(u64).range(2..))]
    folds: Option<u64>,
    /// The held-out fold, 0-based (with --folds).
    #[arg(long, requires = "folds")]
    fold: Option<u64>,
    /// Use at most N TRAIN images per class (smoke tests).
    #[arg(long, value_parser = at_least_one)]
    limit_per_class: Option<usize>,
    /// Random translation of the cell crop by up to N pixels.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    shift: i64,
    /// Mixup with Beta(alpha, alpha) weights (0 = off).
    #[arg(long, default_value_t = 0.0)]
    mixup: f64,
    /// Keep the best validation macro AUC checkpoint (the report's rule) instead of accuracy.
    #[arg(long)]
    select_auc: bool,
    /// Batch-norm momentum of the report nets in tch's convention (Keras' 0.99 = 0.01, their default); 0.1
    /// suits short runs from scratch, whose running statistics 0.01 cannot settle.
    #[arg(long)]
    bn_momentum: Option<f64>,
    /// Stop training after this many minutes (a CPU budget); the run keeps its best checkpoint as always.
    #[arg(long)]
    budget_minutes: Option<f64>,
    /// Simulate other labs in training (stain, colour, white balance, focus, noise, magnification ±15/30 %)
    /// in place of the mild colour jitter; see `augment.rs` for the two strengths.
    #[arg(long, value_enum)]
    lab_shift: Option<leukoscope_host::augment::LabShift>,
    /// Start every variable but the head from this weights file (e.g. $LEUKOSCOPE_EFFNET_LITE0, the ImageNet
    /// EfficientNet-Lite0 that scripts/setup.sh converts, for --arch efficientnet-lite0).
    #[arg(long, value_name = "FILE")]
    pretrained: Option<PathBuf>,
    /// Seed initialisation, shuffles and augmentation with N instead of `--seed`, which then seeds only the
    /// validation split: members of one ensemble (`leukoscope-train ensemble`) share a split.
    #[arg(long, value_name = "N")]
    init_seed: Option<u64>,
    /// Replace the surroundings of this share of the training images, beyond a random disc about the cell,
    /// by their own plasma (another lab's tight crops show no red cells around the cell); 0 is off.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    context_drop: f64,
    /// Give this share of the training images another camera's over-exposure: each channel multiplied by
    /// a gain up to 1.6, clipped at 255 and divided back (another lab's camera may saturate); 0 is off.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    highlight_clip: f64,
}

impl Args {
    fn recipe(&self) -> Recipe {
        Recipe {
            arch: self.arch.name().to_string(),
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            weight_decay: self.weight_decay,
            cosine: !self.constant_lr,
            augment: !self.no_augment,
            label_smoothing: self.label_smoothing,
            val_fraction: self.holdout.val_fraction,
            seed: self.holdout.seed,
            init_seed: self.init_seed,
            limit_per_class: self.limit_per_class,
            shift: self.shift,
            mixup: self.mixup,
            select_auc: self.select_auc,
            bn_momentum: self.bn_momentum,
            fold: self
                .fold
                .zip(self.folds)
                .map(|(k, n)| (k as usize, n as usize)),
            max_seconds: self.budget_minutes.map(|m| m * 60.0),
            lab_shift: self.lab_shift,
            pretrained: self.pretrained.clone(),
            context_drop: self.context_drop,
            highlight_clip: self.highlight_clip,
        }
    }
}

pub fn run(a: Args, argv: &[String]) -> anyhow::Result<ExitCode> {
    let recipe = a.recipe();
    // Checked before the data are looked for, so a bad flag is reported first.
    recipe.validate()?;
    let source = match &a.pack {
        Some(p) => TrainSource::Pack(p.clone()),
        None => TrainSource::Folder(a.data.root()?),
    };
    let dev = a.device.device;
    eprintln!("training {} on {dev:?} from {source}", a.arch.name());
    let log = train::train(a.arch, &recipe, &source, &a.out, dev, &argv.join(" "))
        .with_context(|| format!("training {}", a.arch.name()))?;
    let weights = a.out.join("best.ot");
    match log.epochs.get(log.best_epoch.wrapping_sub(1)) {
        _ if log.n_val == 0 => println!(
            "nothing held out: kept the last epoch, {}; weights in {}",
            log.best_epoch,
            weights.display()
        ),
        Some(best) => println!(
            "best epoch {} (validation accuracy {:.4}, loss {:.4}); weights in {}",
            log.best_epoch,
            best.val_acc,
            best.val_loss,
            weights.display()
        ),
        None => anyhow::bail!(
            "no epoch improved on validation (NaN losses?): no weights written to {}",
            weights.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
