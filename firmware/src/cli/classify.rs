//! `leukoscope classify`: one typed cell per image, with the card's unidentified rule and the top class.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::exposure::Clipping;
use leukoscope::preprocess::Scaling;
use leukoscope::report::round4;
use leukoscope::{Classes, Classifier, Frame, Prediction};

use leukoscope::scale::RbcPx;

use super::{InputArgs, ModelArg, RbcPxArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// One JSON object per image per line: path, class (UNIDENTIFIED below the card's threshold), the
    /// model's top class (predicted), its confidence and every class's probability.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rbc: RbcPxArg,
    #[command(flatten)]
    inputs: InputArgs,
}

/// Step 1 for one image as `--rbc-px` says, and the diameter it used.
fn scaling(
    c: &Classifier,
    rbc_px: Option<RbcPx>,
    frame: &Frame,
    path: &Path,
) -> (Scaling, Option<f32>) {
    let Some(rbc_px) = rbc_px else {
        return (Scaling::FrameSize, None);
    };
    match rbc_px.diameter(frame) {
        Ok(d) => (c.rbc_scaling(d), Some(d)),
        Err(e) => {
            eprintln!(
                "warning: {}: {e}; the image is scaled by its size instead",
                path.display()
            );
            (Scaling::FrameSize, None)
        }
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
    /// The share of the image's pixels at the camera's white level, red, green, blue: only when it is
    /// over-exposed ([`leukoscope::exposure`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    clipped: Option<Clipping>,
}

/// What one image gave.
struct Classified {
    path: std::path::PathBuf,
    prediction: Prediction,
    rbc_px: Option<f32>,
    clipping: Option<Clipping>,
}

fn line(c: &Classified, classes: &Classes, json: bool) -> String {
    let (path, p) = (&c.path, &c.prediction);
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
            rbc_px: c.rbc_px.map(|d| (d * 10.0).round() / 10.0),
            clipped: c.clipping.map(|c| c.rounded()),
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
            let clipping = Clipping::over_exposed(&frame);
            if let Some(c) = clipping {
                eprintln!("warning: {}: {c}", path.display());
            }
            let (scaling, rbc_px) = scaling(&classifier, args.rbc.rbc_px, &frame, &path);
            let prediction = classifier
                .classify_frame_with(&frame, scaling)
                .with_context(|| path.display().to_string())?;
            Ok(Classified {
                path,
                prediction,
                rbc_px,
                clipping,
            })
        });
        match result {
            Ok(c) => {
                if writeln!(out, "{}", line(&c, classes, args.json)).is_err() {
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
