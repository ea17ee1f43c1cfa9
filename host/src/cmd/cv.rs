//! `leukoscope-train cv`: pools grouped k-fold runs per recipe.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Compare recipes by grouped k-fold cross-validation from their runs' train.json (`train --folds`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folders (each `*/train.json` inside is read) or train.json files.
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let table = leukoscope_host::cv::report(&a.runs)?;
    print!("{table}");
    if let Some(out) = &a.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
