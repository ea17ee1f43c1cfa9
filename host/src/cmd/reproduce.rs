//! `leukoscope-train reproduce`: the report's three CNNs with its recipe (and ours), and Tables 1-5.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope_host::nets::Arch;
use leukoscope_host::reproduce;

use super::{at_least_one, DataArgs, DeviceArgs};

/// Train the report's three CNNs with its recipe (and ours) and write Tables 1-5 (by default to
/// runs/reproduce/results; the shipped figures are in models/results).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architectures to train, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "resnet101v2,xception,inception-resnet-v2"
    )]
    archs: Vec<Arch>,
    /// Epochs (the report: 30).
    #[arg(long, default_value_t = 30, value_parser = at_least_one)]
    epochs: usize,
    /// Also train each with our improved recipe (`<arch>-improved.json`).
    #[arg(long)]
    improved: bool,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Where checkpoints go (one folder per model, replaced by a new run).
    #[arg(long, default_value = "runs/reproduce")]
    runs: PathBuf,
    /// Where the tables go (`<arch>.json` / `.md` and `reproduce.md`, replaced by a new run).
    #[arg(long, default_value = "runs/reproduce/results")]
    out: PathBuf,
    /// Use at most N images per class of TRAIN (a class-balanced subset) and, without --budget-minutes, of
    /// TEST too (smoke tests: those numbers mean nothing). With --budget-minutes TEST is always evaluated whole.
    #[arg(long, value_parser = at_least_one)]
    limit_per_class: Option<usize>,
    /// Stop each model's training after this many minutes (a CPU budget; the tables then say epochs, images
    /// seen and time beside every number).
    #[arg(long)]
    budget_minutes: Option<f64>,
    /// Appended to each model's file names (`resnet101v2-cpu.json` with `--suffix -cpu`).
    #[arg(long, default_value = "")]
    suffix: String,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(a: Args, argv: &[String]) -> anyhow::Result<ExitCode> {
    let root = a.data.root()?;
    let dev = a.device.device;
    let command = argv.join(" ");
    let mut rows = Vec::new();
    for &arch in &a.archs {
        let mut recipes = vec![(
            format!("{}{}", arch.name(), a.suffix),
            reproduce::report_recipe(arch, a.epochs, a.seed),
        )];
        if a.improved {
            recipes.push((
                format!("{}-improved{}", arch.name(), a.suffix),
                reproduce::improved_recipe(arch, a.epochs, a.seed),
            ));
        }
        for (tag, mut recipe) in recipes {
            recipe.limit_per_class = a.limit_per_class;
            recipe.max_seconds = a.budget_minutes.map(|m| m * 60.0);
            eprintln!("reproduce: {tag} on {dev:?}");
            let (report, log) =
                reproduce::run_one(arch, &recipe, &tag, &root, &a.runs, &a.out, dev, &command)
                    .with_context(|| format!("reproducing {tag}"))?;
            println!("{}", report.to_markdown());
            rows.push((tag, arch, report, log));
        }
    }
    let table = reproduce::comparison_table(&rows);
    let path = a.out.join("reproduce.md");
    let budget = match a.budget_minutes {
        Some(m) => format!(
            "**CPU budget**: {m} min of training per model, then the whole TEST split ({}); the report trained \
             30 epochs of every TRAIN image on a GPU, so these are not its conditions: the columns on the right say \
             what each of ours saw.\n\n",
            reproduce::budget_note(&reproduce::report_recipe(Arch::Edge, 1, a.seed))
                .split_once(", ")
                .map_or(String::new(), |(_, cpu)| cpu.to_string())
        ),
        None => String::new(),
    };
    let text =
        format!("# The report's models, reproduced\n\nCommand: `{command}`\n\n{budget}{table}");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
