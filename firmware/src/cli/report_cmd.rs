//! `leukoscope report --journal J`: a session's report rebuilt from its journal, identical to the one the
//! session printed.

use std::path::PathBuf;
use std::process::ExitCode;

use leukoscope::journal;
use leukoscope::report::Report;

use super::Outputs;

#[derive(clap::Args)]
pub struct Args {
    /// The session's journal (`run --journal`).
    #[arg(long)]
    journal: PathBuf,
    #[command(flatten)]
    outputs: Outputs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let state = journal::read(&args.journal)?;
    if state.torn_bytes > 0 || state.orphan_cells > 0 {
        eprintln!(
            "note: {}: ignored a torn last line of {} bytes and {} cells of a frame that never \
             committed (a crash mid-write; `run --resume` counts that field again)",
            args.journal.display(),
            state.torn_bytes,
            state.orphan_cells
        );
    }
    args.outputs.emit(&Report::from_journal(&state))?;
    Ok(ExitCode::SUCCESS)
}
