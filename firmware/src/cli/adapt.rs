//! `leukoscope adapt --cells DIR --out FILE.onnx`: a model calibrated to this lab's microscope from cells a
//! technologist typed (one subfolder per class), or from cells nobody typed (`--untyped`, method `norm`),
//! written with its card for `--model`.

use std::path::PathBuf;
use std::process::ExitCode;

use leukoscope::adapt::{self, Method, SiteCells, Views};
use time::format_description::well_known::Rfc3339;

use super::ModelArg;

/// Below this many cells of a class, `adapt` warns (on the second lab, 5 per class scored 4 points under 10, with
/// more spread between draws).
const ADVISED_CELLS: usize = 10;

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    /// A new head on the model's embeddings (logistic regression pulled toward the base head).
    Head,
    /// The lab's colour statistics re-estimated first, then a new head.
    ColourHead,
    /// Every convolution output re-standardised from the lab's statistics to the training images' (AdaBN;
    /// the card must carry them), then a new head.
    NormHead,
    /// A new head on every convolution's pooled output beside the embedding (the earlier layers' features
    /// carry over to another lab better than the last one alone).
    LayersHead,
    /// Every convolution output re-standardised as in norm-head, the base model's head kept: the cells need
    /// no types (`--untyped`).
    Norm,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ViewsArg {
    /// Each cell as read.
    One,
    /// Each cell under its 8 flips and quarter turns (a cell has no up or handedness).
    Dihedral,
}

#[derive(clap::Args)]
pub struct Args {
    /// The base model (default: the embedded one).
    #[command(flatten)]
    model: ModelArg,
    /// Folder with one subfolder of cell images per class (named as the model's classes, any case; at least
    /// 3 cells each); with `--untyped`, any folder of cell images (subfolders read too, their names not).
    #[arg(long)]
    cells: PathBuf,
    /// The cells are not typed: every image under `--cells` is read (at least 20), for method `norm`.
    #[arg(long)]
    untyped: bool,
    /// Where to write the adapted model (`.onnx`; its card goes beside it as `.json`).
    #[arg(long)]
    out: PathBuf,
    /// How to adapt (see models/README.md for what each measured on a second lab) [default: layers-head, or
    /// norm with `--untyped`].
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// Which views of each cell the new head is fitted on.
    #[arg(long, value_enum, default_value_t = ViewsArg::One)]
    views: ViewsArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        anyhow::bail!("{}: --out must name an .onnx file", args.out.display());
    }
    let base = args.model.source().load()?;
    let cells = if args.untyped {
        SiteCells::read_untyped(&args.cells, &base.card.classes)?
    } else {
        SiteCells::read(&args.cells, &base.card.classes)?
    };
    let few: Vec<String> = cells
        .counts(&base.card.classes)
        .into_iter()
        .filter(|(_, n)| *n > 0 && *n < ADVISED_CELLS)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if !few.is_empty() {
        eprintln!(
            "warning: fewer than {ADVISED_CELLS} cells in {}: with so few the calibrated model can type \
             worse than the base one (measured in models/README.md, \"Site calibration\"); check it on cells \
             it was not calibrated on",
            few.join(", ")
        );
    }
    let method = match args.method {
        Some(MethodArg::Head) => Method::Head,
        Some(MethodArg::ColourHead) => Method::ColourHead,
        Some(MethodArg::NormHead) => Method::NormHead,
        Some(MethodArg::LayersHead) => Method::LayersHead,
        Some(MethodArg::Norm) => Method::Norm,
        None if args.untyped => Method::Norm,
        None => Method::LayersHead,
    };
    let views = match args.views {
        ViewsArg::One => Views::One,
        ViewsArg::Dihedral => Views::Dihedral,
    };
    let date = time::OffsetDateTime::now_utc().format(&Rfc3339)?;
    let mut model = adapt::adapt(&base, &cells, method, views, &date)?;
    if let Some(stem) = args.out.file_stem() {
        // The card names the file it describes.
        model.card.name = stem.to_string_lossy().into_owned();
    }
    adapt::write(&model, &args.out)?;
    let mut counts: Vec<String> = cells
        .counts(&base.card.classes)
        .iter()
        .filter(|(_, n)| !args.untyped || **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if !cells.untyped.is_empty() {
        counts.push(format!("untyped {}", cells.untyped.len()));
    }
    println!(
        "{}: {} adapted by {method}{} from {} cells ({})",
        args.out.display(),
        base.card.id(),
        if method.fits_head() {
            format!(" (views: {views})")
        } else {
            String::new()
        },
        cells.len(),
        counts.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
