//! `leukoscope-train feature-stats`: a model's per-channel convolution statistics on the images it was
//! trained on, stored in its card (what `leukoscope adapt --method norm-head` brings a lab's back to).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::adapt::FeatureMeter;
use leukoscope::{Frame, ModelSource};
use leukoscope_host::export;

use super::SplitArgs;

/// Measure every convolution output of a model on a split (its training images: TRAIN) through the device's
/// preprocessing and tract, and store the statistics in the model's card as `feature_stats`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model with its card beside it (the card is rewritten).
    #[arg(long)]
    model: PathBuf,
    /// The images (`--split TRAIN`: what the shipped models were trained on).
    #[command(flatten)]
    split: SplitArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let samples = a.split.samples()?;
    let model = ModelSource::File(a.model.clone()).load()?;
    let mut meter = FeatureMeter::new(&model)?;
    let t = std::time::Instant::now();
    for s in &samples {
        let frame = Frame::open(&s.path)?;
        meter.add(&s.path, &frame)?;
    }
    let source = format!(
        "{} of {}",
        a.split.split.name(),
        a.split.data.root()?.display()
    );
    let stats = meter.finish(&source)?;
    eprintln!(
        "{}: {} convolutions measured on {} images in {:.1} s",
        a.model.display(),
        stats.layers.len(),
        stats.images,
        t.elapsed().as_secs_f64()
    );
    let card_path = leukoscope::model::card_path(&a.model);
    let mut card = export::read_card(&card_path)?;
    card.feature_stats = Some(stats);
    export::write_card(&card, &card_path)
        .with_context(|| format!("storing the statistics in {}", card_path.display()))?;
    Ok(ExitCode::SUCCESS)
}
