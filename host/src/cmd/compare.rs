//! `leukoscope-train compare`: several models on one split, and their top-1 agreement with the first.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope_host::eval;

use super::SplitArgs;

/// Accuracy of several models on one split, and each one's top-1 agreement with the first (float vs int8).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX models with their cards; the first is the reference for top-1 agreement.
    #[arg(required = true, num_args = 1..)]
    models: Vec<PathBuf>,
    #[command(flatten)]
    split: SplitArgs,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let split = a.split.split;
    let samples = a.split.samples()?;
    let mut reference: Option<Vec<usize>> = None;
    let mut rows = Vec::new();
    println!(
        "| model | format | {split} accuracy | macro AUC | top-1 agreement with {} |",
        a.models[0].display()
    );
    println!("|---|---|---:|---:|---:|");
    for path in &a.models {
        let e = super::eval::evaluate(path, &samples, split)?;
        if let Some((first, why)) = e.failed.first() {
            anyhow::bail!(
                "{} images failed with {}: first {}: {why}",
                e.failed.len(),
                path.display(),
                first.display()
            );
        }
        let preds = e.scores.predictions();
        let agree = eval::agreement(&preds, reference.get_or_insert_with(|| preds.clone()));
        println!(
            "| {} | {} | {:.2} % | {:.2} % | {:.2} % |",
            path.display(),
            e.card.format,
            e.report.average.accuracy * 100.0,
            e.report.average.auc * 100.0,
            agree * 100.0
        );
        rows.push(serde_json::json!({
            "model": path.display().to_string(),
            "format": e.card.format,
            "sha256": e.card.sha256,
            "split": split.name(),
            "images": e.scores.len(),
            "accuracy": e.report.average.accuracy,
            "auc": e.report.average.auc,
            "loss": e.report.average.loss,
            "top1_agreement": agree,
        }));
    }
    if let Some(out) = &a.json {
        std::fs::write(out, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
