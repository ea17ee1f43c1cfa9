//! Segmentation measured on a second lab (issue 13, item 6): the device's [`Segmenter`] on each of the
//! second lab's 120×120 crops, against its expert masks (nucleus 255, cytoplasm 128, rest 0).
//!
//! ```text
//! cargo run --release -p leukoscope --example site_segment -- \
//!     --data ../shared/data/wbc-jiangxi --out models/results/site-segment
//! ```
//!
//! For each rescale (how the crop is brought to the training scale) it reports in how many crops a cell is
//! found, and the Dice of the nucleus: the segmenter's nucleus mask (all of it, as `leukoscope segment`
//! writes it) against the expert nucleus, in the crop's pixels. A crop where nothing is found scores the
//! Dice of whatever mask there is (usually 0). Writes `<out>.json` and `<out>.md`. Nothing here is fitted
//! to these cells: the rescales are the few named candidates below.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use leukoscope::preprocess::{Scaling, REFERENCE_RBC_PX};
use leukoscope::scale::estimate_rbc_diameter;
use leukoscope::segment::{SegmentConfig, Segmenter};
use leukoscope::Frame;

mod common;
use common::quantile;

/// The measurement's inputs.
#[derive(clap::Parser)]
struct Args {
    /// The second lab's folder (`images/<class>/` and `masks/`).
    #[arg(long, default_value = "../shared/data/wbc-jiangxi")]
    data: PathBuf,
    /// Output path without extension: `<out>.md` and `<out>.json`.
    #[arg(long, default_value = "models/results/site-segment")]
    out: PathBuf,
    /// The white-cell ruler's diameter for the fixed rescale (`models/results/rbc-scale.md` (c)).
    #[arg(long, default_value_t = 32.2)]
    ruler_px: f32,
}

/// How a crop is brought to the training scale.
#[derive(Clone, Copy)]
enum RbcPx {
    /// By its size.
    Size,
    /// By its red cells, measured; by its size where they cannot be.
    Auto,
    /// As if its red cells measured this many pixels.
    Fixed(f32),
}

impl RbcPx {
    fn of(self, f: &Frame) -> Scaling {
        let rbc = |rbc_px| Scaling::Rbc {
            rbc_px,
            reference_px: REFERENCE_RBC_PX,
        };
        match self {
            RbcPx::Size => Scaling::FrameSize,
            RbcPx::Auto => {
                estimate_rbc_diameter(f).map_or(Scaling::FrameSize, |s| rbc(s.diameter_px))
            }
            RbcPx::Fixed(d) => rbc(d),
        }
    }
}

/// One crop's outcome under one rescale.
struct Outcome {
    cells: usize,
    dice: f64,
}

/// Dice of the segmenter's last mask (training scale, `scale` crop pixels per mask pixel) against the
/// expert nucleus of a `w × h` crop.
fn dice(seg: &Segmenter, scale: f32, expert: &[bool], w: u32, h: u32) -> f64 {
    let (mask, mw, mh) = seg.mask();
    let (mut both, mut ours, mut theirs) = (0usize, 0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            // The mask pixel whose footprint holds this crop pixel's centre.
            let mx = (((x as f32 + 0.5) / scale) as u32).min(mw - 1);
            let my = (((y as f32 + 0.5) / scale) as u32).min(mh - 1);
            let a = mask[(my * mw + mx) as usize] != 0;
            let b = expert[(y * w + x) as usize];
            both += usize::from(a && b);
            ours += usize::from(a);
            theirs += usize::from(b);
        }
    }
    if ours + theirs == 0 {
        1.0
    } else {
        2.0 * both as f64 / (ours + theirs) as f64
    }
}

fn main() -> anyhow::Result<()> {
    let Args {
        data,
        out,
        ruler_px,
    } = clap::Parser::parse();
    let images = data.join("images");
    let masks = data.join("masks");

    // Every crop with its expert mask.
    let mut crops: Vec<(PathBuf, Frame, Vec<bool>)> = Vec::new();
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&images)
        .map_err(|e| anyhow::anyhow!("{}: {e}", images.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    for dir in &classes {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for p in files {
            let frame = Frame::open(&p)?;
            let stem = p.file_stem().unwrap_or_default();
            let m = masks.join(Path::new(stem).with_extension("png"));
            let mask = Frame::open(&m)?;
            anyhow::ensure!(
                (mask.width(), mask.height()) == (frame.width(), frame.height()),
                "{}: {}×{}, its crop is {}×{}",
                m.display(),
                mask.width(),
                mask.height(),
                frame.width(),
                frame.height()
            );
            let expert = mask.data().chunks_exact(3).map(|px| px[0] > 192).collect();
            crops.push((p, frame, expert));
        }
    }
    anyhow::ensure!(!crops.is_empty(), "{}: no crops", images.display());

    // The rescales compared, named before measuring: by the crop's size (what `segment` does), by the red
    // cells measured in each crop (`--rbc-px auto`, the crop's size where they cannot be measured), and
    // fixed at the diameter the second lab's white cells imply (models/results/rbc-scale.md (c), a
    // diagnostic of what a correct scale would buy, taken from this lab's masks).
    let modes = [
        (
            "by the crop's size (`segment` as it is called)",
            RbcPx::Size,
        ),
        ("--rbc-px auto (size where unmeasurable)", RbcPx::Auto),
        (
            "fixed at the white-cell ruler (diagnostic)",
            RbcPx::Fixed(ruler_px),
        ),
    ];

    // The detection settings compared: the colours as they are with the strict contrast test (the
    // default before issue 13); nuclei found on the frame white-balanced on its plasma (8-px squares, as
    // the nets' white point); and that with a nucleus also accepted for being darker than the next violet
    // cluster (the default now).
    let settings = [
        (
            "as they are (before issue 13)",
            SegmentConfig {
                white_balance: None,
                accept_darker_nucleus: false,
                ..SegmentConfig::default()
            },
        ),
        (
            "white-balanced (8-px squares)",
            SegmentConfig {
                accept_darker_nucleus: false,
                ..SegmentConfig::default()
            },
        ),
        (
            "white-balanced, a darker violet nucleus accepted (default)",
            SegmentConfig::default(),
        ),
    ];
    let mut md = String::new();
    writeln!(
        md,
        "# Segmentation on the second lab\n\nCommand: `cargo run --release -p leukoscope --example \
         site_segment -- --data {} --out {}`. The device's `Segmenter` under each setting on {} crops \
         (120×120), against the expert masks' nucleus. Dice in the crop's pixels; a crop with nothing found scores whatever \
         mask is left (usually 0).\n\n| colours | rescale | cell found | no cell | more than one | nucleus Dice \
         median | mean | 10th pct |\n|---|---|---:|---:|---:|---:|---:|---:|",
        data.display(),
        out.display(),
        crops.len()
    )?;
    let mut json = Vec::new();
    for (colours, config) in &settings {
        let mut seg = Segmenter::new(*config);
        for (name, scaling) in &modes {
            let outcomes: Vec<Outcome> = crops
                .iter()
                .map(|(_, f, expert)| {
                    let s = seg.segment_with(f, scaling.of(f));
                    Outcome {
                        cells: s.cells.len(),
                        dice: dice(&seg, s.scale, expert, f.width(), f.height()),
                    }
                })
                .collect();
            let missed: Vec<String> = crops
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.cells == 0)
                .map(|((p, _, _), _)| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            let several = outcomes.iter().filter(|o| o.cells > 1).count();
            let mut d: Vec<f64> = outcomes.iter().map(|o| o.dice).collect();
            d.sort_by(f64::total_cmp);
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            writeln!(
                md,
                "| {colours} | {name} | {} | {} | {several} | {:.3} | {mean:.3} | {:.3} |",
                crops.len() - missed.len(),
                missed.len(),
                quantile(&d, 0.5),
                quantile(&d, 0.1)
            )?;
            eprintln!(
                "{colours}, {name}: no cell in {} crops: {}",
                missed.len(),
                missed.join(" ")
            );
            json.push(serde_json::json!({
            "colours": colours, "rescale": name, "crops": crops.len(), "no_cell": missed, "more_than_one": several,
            "dice_median": quantile(&d, 0.5), "dice_mean": mean, "dice_p10": quantile(&d, 0.1),
        }));
        }
    }
    writeln!(
        md,
        "\nThe white-cell ruler is {ruler_px} px (`--ruler-px`), the reference {REFERENCE_RBC_PX} px."
    )?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out.with_extension("md"), &md)?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&serde_json::json!({ "modes": json }))?,
    )?;
    print!("{md}");
    Ok(())
}
