//! The binary's commands, one module each; the flag groups they share are declared once here.
//!
//! This is the binary's own code, not part of the library: it parses, calls into `leukoscope`, and prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leukoscope::inputs::{self, Inputs};
use leukoscope::report::{self, Report};
use leukoscope::{Classifier, ModelSource};

mod adapt;
mod classify;
mod count;
mod report_cmd;
mod run;
mod segment;
mod serve;
mod user;

/// The command line.
#[derive(Parser)]
#[command(
    name = "leukoscope",
    version,
    about = "Leukoscope: white-blood-cell typing and counting on the device"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Type the white cell in each image (one cell per image, as in the Kaggle data set).
    Classify(classify::Args),
    /// Write each frame's nucleus mask and an overlay of boxes and mask outline (PNG) to a folder.
    Segment(segment::Args),
    /// Find, type and count the white cells of smear frames; print or write the differential.
    Count(count::Args),
    /// Run a count session on the microscope (or the simulator): focus, capture, count, move, journal.
    Run(run::Args),
    /// Rebuild a session's report from its journal (after a crash, or to print it again).
    Report(report_cmd::Args),
    /// Calibrate a model to this lab's microscope from cells a technologist typed (one folder per class).
    Adapt(adapt::Args),
    /// Serve the device's web page: live view, count, review, sign-off, reports, calibration.
    Serve(serve::Args),
    /// Add, change or remove the operators who may sign in to the web page.
    User(user::Args),
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Classify(a) => classify::run(&a),
            Command::Segment(a) => segment::run(&a),
            Command::Count(a) => count::run(&a),
            Command::Run(a) => run::run(&a),
            Command::Report(a) => report_cmd::run(&a),
            Command::Adapt(a) => adapt::run(&a),
            Command::Serve(a) => serve::run(&a),
            Command::User(a) => user::run(&a),
        }
    }
}

/// `--model`.
#[derive(clap::Args)]
struct ModelArg {
    /// ONNX model with its card (<model>.json) beside it; default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
}

impl ModelArg {
    fn source(&self) -> ModelSource {
        self.model
            .clone()
            .map_or(ModelSource::Embedded, ModelSource::File)
    }

    fn classifier(&self) -> anyhow::Result<Classifier> {
        Ok(Classifier::load(&self.source())?)
    }
}

/// `--rbc-px`, one meaning for `classify`, `count`, `run` and `segment`.
#[derive(clap::Args)]
struct RbcPxArg {
    /// Bring each image to the model's training scale by its red cells first: N, the red-cell diameter in
    /// pixels of this microscope's images (a calibrated microscope; as `auto` measures it, the inscribed
    /// diameter, about 0.8× a hand-drawn box), or `auto`, measured in each image (where it cannot be, the
    /// image is scaled by its size and a warning names it). Default: scale by image size.
    #[arg(long, value_name = "N|auto", allow_hyphen_values = true)]
    rbc_px: Option<leukoscope::scale::RbcPx>,
}

/// `--target`, one meaning for `count` and `run`.
#[derive(clap::Args)]
struct TargetArg {
    /// Stop at this many cells, unidentified ones included (0: no limit; a resumed session keeps its
    /// journal's target).
    #[arg(long, default_value_t = 100)]
    target: u32,
}

/// `--json`, `--csv`, `--html`: where a report goes.
#[derive(clap::Args)]
struct Outputs {
    /// Print the JSON report on stdout instead of the text summary.
    #[arg(long)]
    json: bool,
    /// Also write a CSV report (what made it in `#` lines, then one row per cell) here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also write a self-contained HTML report with crop galleries here.
    #[arg(long)]
    html: Option<PathBuf>,
}

impl Outputs {
    /// Writes the CSV and HTML files asked for, then prints the JSON report or the text summary.
    fn emit(&self, r: &Report) -> anyhow::Result<()> {
        let write = |p: &Path, text: String| {
            std::fs::write(p, text).with_context(|| format!("{}: cannot write report", p.display()))
        };
        if let Some(p) = &self.csv {
            write(p, report::csv::to_string(r))?;
        }
        if let Some(p) = &self.html {
            write(p, report::html::to_string(r)?)?;
        }
        let text = if self.json {
            report::json::to_string(r) + "\n"
        } else {
            r.summary()
        };
        // A closed pipe (`| head`) is not worth a panic; the report files are already written.
        let _ = std::io::stdout().write_all(text.as_bytes());
        Ok(())
    }
}

/// Image files or folders.
#[derive(clap::Args)]
struct InputArgs {
    /// Images (JPEG, PNG, BMP, TIFF) or folders of them (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

impl InputArgs {
    /// The image files, with a warning for each file named twice.
    fn expand(&self) -> Inputs {
        let got = inputs::expand(&self.inputs);
        for d in &got.duplicates {
            eprintln!(
                "warning: {}: named more than once; counted once",
                d.display()
            );
        }
        got
    }

    /// The inputs as given, for the report.
    fn names(&self) -> Vec<String> {
        self.inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }
}

/// A `\r`-updated progress line on stderr, only when stderr is a terminal.
struct Progress {
    on: bool,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            on: total > 1 && std::io::stderr().is_terminal(),
            total,
        }
    }

    fn show(&self, done: usize, what: &str) {
        if self.on {
            eprint!("\r\x1b[K{done}/{} frames, {what}", self.total);
        }
    }

    /// Clears the line (before an error message, and at the end).
    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}
