//! `leukoscope-train ensemble`: float models trained apart joined into one model, the mean of their logits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::ModelSource;
use leukoscope_host::export;

/// Join float models of one input and classes (e.g. one recipe trained with several `--init-seed`s on one
/// split) into one ONNX model whose logits are the mean of theirs, with its card; calibrate its threshold with
/// `eval --split VAL --calibrate --update-card`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The members: float ONNX models, each with its card beside it (two or more).
    #[arg(long, num_args = 2.., required = true)]
    models: Vec<PathBuf>,
    /// Output ONNX file (replaced if it exists); the card is written beside it as .json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let card = export::write_ensemble(&a.models, &a.out)?;
    // The device's own loader checks what was written (sha256, card, contract).
    ModelSource::File(a.out.clone())
        .load()
        .with_context(|| format!("{}: the ensemble does not load", a.out.display()))?;
    eprintln!(
        "{}: {} of {} members (sha256 {})",
        a.out.display(),
        card.arch,
        a.models.len(),
        card.sha256
    );
    Ok(ExitCode::SUCCESS)
}
