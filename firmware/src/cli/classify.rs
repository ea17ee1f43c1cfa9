//! `leukoscope classify`: one typed cell per image, with the card's unidentified rule and the top class.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::preprocess::Scaling;
use leukoscope::report::round4;
use leukoscope::{Classes, Classifier, Frame, Prediction};

use super::{InputArgs, ModelArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// One JSON object per image per line: path, class (UNIDENTIFIED below the card's threshold), the
    /// model's top class (predicted), its confidence and every class's probability.
    #[arg(long)]
    json: bool,
    /// Bring each image to the model's training scale by its red cells first: N, the red-cell diameter in
    /// pixels of this microscope's images (a calibrated microscope; as `auto` measures it, the inscribed
    /// diameter, about 0.8× a hand-drawn box), or `auto`, measured in each image (where it cannot be, the
    /// image is scaled by its size and a warning says so). Default: scale by image size.
    #[arg(long, value_name = "N|auto", value_parser = parse_rbc_px, allow_hyphen_values = true)]
    rbc_px: Option<RbcPx>,
    #[command(flatten)]
    inputs: InputArgs,
}

/// Smallest and largest red-cell diameter `--rbc-px` accepts, in pixels.
const RBC_PX_RANGE: std::ops::RangeInclusive<f32> = 4.0..=2000.0;

/// `--rbc-px`: a given diameter, or measured per image.
#[derive(Clone, Copy, Debug)]
enum RbcPx {
    Fixed(f32),
    Auto,
}

fn parse_rbc_px(s: &str) -> Result<RbcPx, String> {
    if s == "auto" {
        return Ok(RbcPx::Auto);
    }
    let range = format!(
        "a red-cell diameter in pixels from {} to {}, or `auto`",
        RBC_PX_RANGE.start(),
        RBC_PX_RANGE.end()
    );
    match s.parse::<f32>() {
        Ok(v) if RBC_PX_RANGE.contains(&v) => Ok(RbcPx::Fixed(v)),
        _ => Err(format!("expected {range}")),
    }
}

/// Step 1 for one image as `--rbc-px` says, and the diameter it used.
fn scaling(
    c: &Classifier,
    rbc_px: Option<RbcPx>,
    frame: &Frame,
    path: &Path,
) -> (Scaling, Option<f32>) {
    match rbc_px {
        None => (Scaling::FrameSize, None),
        Some(RbcPx::Fixed(d)) => (c.rbc_scaling(d), Some(d)),
        Some(RbcPx::Auto) => match leukoscope::scale::estimate_rbc_diameter(frame) {
            Ok(s) => (c.rbc_scaling(s.diameter_px), Some(s.diameter_px)),
            Err(e) => {
                eprintln!(
                    "warning: {}: {e}; the image is scaled by its size instead",
                    path.display()
                );
                (Scaling::FrameSize, None)
            }
        },
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: &'a str,
    class: &'a str,
    predicted: &'a str,
    confidence: f32,
    probs: std::collections::BTreeMap<&'a str, f32>,
    /// The red-cell diameter the image was brought to the training scale by (`--rbc-px` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    rbc_px: Option<f32>,
}

fn line(path: &Path, p: &Prediction, classes: &Classes, json: bool, rbc_px: Option<f32>) -> String {
    let name = classes.label(Some(p.predicted));
    if json {
        let probs = classes
            .iter()
            .zip(&p.probs)
            .map(|(c, &v)| (c, round4(v)))
            .collect();
        let line = Line {
            path: &path.to_string_lossy(),
            class: classes.label(p.class),
            predicted: name,
            confidence: round4(p.confidence),
            probs,
            rbc_px: rbc_px.map(|d| (d * 10.0).round() / 10.0),
        };
        serde_json::to_string(&line).expect("plain struct serialises")
    } else {
        let rest: Vec<String> = classes
            .iter()
            .zip(&p.probs)
            .map(|(c, v)| format!("{c}={v:.3}"))
            .collect();
        format!(
            "{}\t{}\t{name}\t{:.3}\t{}",
            path.display(),
            classes.label(p.class),
            p.confidence,
            rest.join(" ")
        )
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let classifier = args.model.classifier()?;
    let classes = classifier.classes();
    let mut out = std::io::stdout().lock();
    let mut failures = 0usize;
    for item in args.inputs.expand().items {
        let result = item.map_err(anyhow::Error::from).and_then(|path| {
            let frame = Frame::open(&path)?;
            let (scaling, rbc_px) = scaling(&classifier, args.rbc_px, &frame, &path);
            let p = classifier
                .classify_frame_with(&frame, scaling)
                .with_context(|| path.display().to_string())?;
            Ok((path, p, rbc_px))
        });
        match result {
            Ok((path, p, rbc_px)) => {
                if writeln!(out, "{}", line(&path, &p, classes, args.json, rbc_px)).is_err() {
                    return Ok(ExitCode::SUCCESS); // a closed pipe (`| head`)
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failures > 0 {
        eprintln!("error: {failures} input(s) could not be classified");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
