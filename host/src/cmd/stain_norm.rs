//! `leukoscope-train stain-norm`: a copy of a model whose card brings every input to the training images'
//! colours first ([`leukoscope::stain`]: Reinhard or Macenko), the reference measured on a split.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::stain::{Method, StainNorm};
use leukoscope::{preprocess, Frame, ModelSource};
use leukoscope_host::export;

use super::SplitArgs;

/// Measure the stain reference of a split (the model's training images: TRAIN) on the inputs the device
/// makes of them, and write the model again with that reference in its card as `stain_norm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model with its card beside it (left as it is).
    #[arg(long)]
    model: PathBuf,
    /// reinhard or macenko.
    #[arg(long, value_enum)]
    method: Method,
    /// The model written with the reference (its card beside it).
    #[arg(long)]
    out: PathBuf,
    /// The images (`--split TRAIN`: what the shipped models were trained on).
    #[command(flatten)]
    split: SplitArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let model = ModelSource::File(a.model.clone()).load()?;
    if let Some(s) = &model.card.stain_norm {
        anyhow::bail!(
            "{}: its card already brings inputs to a {} reference; measure from the model without it",
            a.model.display(),
            s.method()
        );
    }
    let samples = a.split.samples()?;
    let t = std::time::Instant::now();
    let mut inputs = Vec::with_capacity(samples.len());
    for s in &samples {
        let frame = Frame::open(&s.path)?;
        inputs.push(preprocess::frame_input(&frame).0);
    }
    let reference = StainNorm::reference(a.method, &inputs).with_context(|| {
        format!(
            "no image of {} could be fitted by {}",
            a.split.split.name(),
            a.method
        )
    })?;
    eprintln!(
        "{} reference of {} images of {} in {:.1} s: {}",
        a.method,
        inputs.len(),
        a.split.split.name(),
        t.elapsed().as_secs_f64(),
        serde_json::to_string(&reference)?
    );
    let mut card = model.card.clone();
    card.name = export::model_name(&a.out);
    card.stain_norm = Some(reference);
    card.metrics = serde_json::json!({});
    // Measured on inputs without the reference: stale now.
    let had_stats = card.feature_stats.take().is_some();
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, &model.onnx).with_context(|| format!("writing {}", a.out.display()))?;
    let card_path = leukoscope::model::card_path(&a.out);
    export::write_card(&card, &card_path)
        .with_context(|| format!("writing {}", card_path.display()))?;
    let out = a.out.display();
    if had_stats {
        eprintln!(
            "note: the feature_stats of {} were left out (measured without the reference); measure them again: \
             leukoscope-train feature-stats --model {out} --split TRAIN",
            a.model.display()
        );
    }
    eprintln!(
        "note: the unidentified threshold is {}'s, chosen without the reference; choose it again: \
         leukoscope-train eval --model {out} --split VAL --calibrate",
        a.model.display()
    );
    Ok(ExitCode::SUCCESS)
}
