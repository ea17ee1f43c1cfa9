//! `leukoscope`: the device's command line. Parses the arguments and hands them to one small module per
//! command (`cli/`), each a thin layer over the library; `main` prints an error's chain once.
use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
