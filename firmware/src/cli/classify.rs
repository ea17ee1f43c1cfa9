//! `leukoscope classify`: one typed cell per image, with the card's unidentified rule and the top class.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::report::round4;
use leukoscope::{Classes, Frame, Prediction};

use super::{InputArgs, ModelArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// One JSON object per image per line: path, class (UNIDENTIFIED below the card's threshold), the
    /// model's top class (predicted), its confidence and every class's probability.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    inputs: InputArgs,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: &'a str,
    class: &'a str,
    predicted: &'a str,
    confidence: f32,
    probs: std::collections::BTreeMap<&'a str, f32>,
}

fn line(path: &Path, p: &Prediction, classes: &Classes, json: bool) -> String {
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
            let p = classifier
                .classify_frame(&frame)
                .with_context(|| path.display().to_string())?;
            Ok((path, p))
        });
        match result {
            Ok((path, p)) => {
                if writeln!(out, "{}", line(&path, &p, classes, args.json)).is_err() {
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
