//! `leukoscope-train eval`: one model on one split, through the device's preprocessing and tract.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::{Classifier, ModelCard, ModelSource};
use leukoscope_host::data::{Sample, Subset};
use leukoscope_host::eval::{self, Report, Scores};
use leukoscope_host::predict::{self, CALIBRATION_KEPT_ACCURACY, CALIBRATION_MAX_REJECTED};
use leukoscope_host::{export, plot};

use super::SplitArgs;

/// Evaluate an ONNX model through the device's own preprocessing and tract inference.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model with its card beside it.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    split: SplitArgs,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write `NAME-SPLIT.md`, `.json` and ROC / confusion PNGs into this folder (created if needed; files
    /// of the same name are replaced).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Store the metrics in the model card under `metrics.SPLIT`.
    #[arg(long)]
    update_card: bool,
    /// With --split VAL: choose the unidentified threshold (kept accuracy >= 95 %, at most 10 % rejected; see
    /// `predict::CALIBRATION_*`) and store it in the card.
    #[arg(long)]
    calibrate: bool,
}

/// A model's outputs on a split and its report, titled with the model file.
pub struct Evaluation {
    /// The model's card.
    pub card: ModelCard,
    /// Probabilities and labels of the images that decoded.
    pub scores: Scores,
    /// Images that failed, with why.
    pub failed: Vec<(PathBuf, String)>,
    /// The report, naming the model file.
    pub report: Report,
}

/// The model file's name as titles show it (`edge16-int8-weights.onnx`).
pub fn file_name(model: &Path) -> String {
    model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Runs `model` on `samples` with tract and evaluates it as split `split`.
pub fn evaluate(model: &Path, samples: &[Sample], split: Subset) -> anyhow::Result<Evaluation> {
    let classifier = Classifier::load(&ModelSource::File(model.to_owned()))?;
    let t = std::time::Instant::now();
    let (scores, failed) = predict::predict(&classifier, samples, super::threads());
    eprintln!(
        "{}: evaluated {} images in {:.1} s with tract",
        model.display(),
        scores.len(),
        t.elapsed().as_secs_f64()
    );
    let card = classifier.card().clone();
    let mut report = eval::evaluate(&scores, &card.arch, split.name(), &card.training_command)
        .with_context(|| format!("evaluating {} on {split}", model.display()))?;
    report.model = Some(file_name(model));
    Ok(Evaluation {
        card,
        scores,
        failed,
        report,
    })
}

pub fn run(a: Args, argv: &[String]) -> anyhow::Result<ExitCode> {
    let split = a.split.split;
    if a.calibrate && split != Subset::Val {
        anyhow::bail!("--calibrate chooses the threshold on validation data only: use --split VAL");
    }
    let samples = a.split.samples()?;
    let Evaluation {
        card,
        scores,
        failed,
        report,
    } = evaluate(&a.model, &samples, split)?;
    for (p, e) in &failed {
        eprintln!("warning: skipped {}: {e}", p.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_markdown());
    }
    if let Some(dir) = &a.out {
        write_outputs(dir, &a.model, &card, &scores, &report)?;
    }
    if a.update_card || a.calibrate {
        let card_path = leukoscope::model::card_path(&a.model);
        let mut card = export::read_card(&card_path)?;
        if a.update_card {
            export::store_metrics(&mut card, split.name(), &report, &argv.join(" "));
        }
        if a.calibrate {
            let t = predict::choose_threshold(
                &scores,
                CALIBRATION_KEPT_ACCURACY,
                CALIBRATION_MAX_REJECTED,
            );
            eprintln!(
                "unidentified threshold {:.4}: kept accuracy {:.4}, {:.2} % set aside on VAL",
                t.threshold,
                t.kept_accuracy,
                t.rejected * 100.0
            );
            export::store_threshold(&mut card, &t);
        }
        export::write_card(&card, &card_path)?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `NAME-split.md`, `.json`, `-roc.png` and `-confusion.png` in `dir`, NAME being the card's name.
fn write_outputs(
    dir: &Path,
    model: &Path,
    card: &ModelCard,
    scores: &Scores,
    report: &Report,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("{}-{}", card.name, report.split.to_lowercase());
    let path = |suffix: &str| dir.join(format!("{stem}{suffix}"));
    let write = |p: PathBuf, text: String| {
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write(path(".md"), report.to_markdown())?;
    write(path(".json"), serde_json::to_string_pretty(report)? + "\n")?;
    let on = format!("{} on {}", file_name(model), report.split);
    plot::write_roc_png(
        scores,
        card.classes.names(),
        &format!("{on}: ROC, one class vs the rest"),
        &path("-roc.png"),
    )?;
    plot::write_confusion_png(
        report,
        card.classes.names(),
        &format!("{on}: confusion matrix"),
        &path("-confusion.png"),
    )?;
    Ok(())
}
