//! `leukoscope-train pack`: TRAIN's model inputs in one file for a remote GPU.

use std::path::PathBuf;
use std::process::ExitCode;

use super::DataArgs;

/// Pack TRAIN's preprocessed model inputs into one compact file for a remote GPU (`train --pack`).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// The pack to write (replaced if it exists).
    #[arg(long)]
    out: PathBuf,
    /// JPEG quality of each 128×128 input (the error it costs is measured and printed).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = a.data.root()?;
    let stats = leukoscope_host::pack::write(&root, &a.out, a.quality, super::threads())?;
    for (path, why) in &stats.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    println!(
        "wrote {}: {} TRAIN inputs, {:.1} MB ({:.0} bytes each), JPEG quality {}; error against the exact \
         inputs: mean {:.2} levels, worst image {:.2}",
        a.out.display(),
        stats.images,
        stats.bytes as f64 / 1e6,
        stats.bytes as f64 / stats.images.max(1) as f64,
        a.quality,
        stats.mean_abs_error,
        stats.worst_image_error
    );
    Ok(ExitCode::SUCCESS)
}
