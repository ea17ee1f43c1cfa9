//! `leukoscope-train`: train, evaluate and export the Leukoscope classifiers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leukoscope_host::{data, device, nets::Arch, train};

#[derive(Parser)]
#[command(name = "leukoscope-train", version, about = "Train, evaluate and export Leukoscope's white-cell classifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a net on TRAIN with a smear-grouped validation split; keeps the best-validation weights.
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Architecture.
    #[arg(long, value_enum, default_value = "edge")]
    arch: Arch,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder for best.ot and train.json.
    #[arg(long, default_value = "runs/edge")]
    out: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Epochs.
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
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
    /// Share of each class's source smears held out for validation.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Seed for everything random.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use at most N TRAIN images per class (smoke tests).
    #[arg(long)]
    limit_per_class: Option<usize>,
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let argv: Vec<String> = std::env::args().collect();
    match cli.command {
        Command::Train(a) => {
            let root = data::resolve_root(a.data.as_deref())?;
            let dev = device::parse(&a.device).map_err(anyhow::Error::msg)?;
            let recipe = train::Recipe {
                arch: a.arch.name().to_string(),
                epochs: a.epochs,
                batch: a.batch,
                lr: a.lr,
                weight_decay: a.weight_decay,
                cosine: !a.constant_lr,
                augment: !a.no_augment,
                label_smoothing: a.label_smoothing,
                val_fraction: a.val_fraction,
                seed: a.seed,
                limit_per_class: a.limit_per_class,
            };
            eprintln!("training {} on {dev:?} from {}", a.arch.name(), root.display());
            let log = train::train(a.arch, &recipe, &root, &a.out, dev, &argv.join(" "))
                .with_context(|| format!("training {}", a.arch.name()))?;
            let best = &log.epochs[log.best_epoch.max(1) - 1];
            println!(
                "best epoch {} (validation accuracy {:.4}, loss {:.4}); weights in {}",
                log.best_epoch,
                best.val_acc,
                best.val_loss,
                a.out.join("best.ot").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
