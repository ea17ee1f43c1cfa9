//! `leukoscope segment`: each frame's nucleus mask and an overlay of the cells found, as PNG files.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::frame::encode_png;
use leukoscope::preprocess::{Scaling, REFERENCE_RBC_PX};
use leukoscope::segment::{draw, Segmenter};
use leukoscope::Frame;

use super::{InputArgs, RbcPxArg};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for `<frame>.mask.png` (nucleus mask, training scale) and `<frame>.overlay.png`.
    #[arg(long)]
    out: std::path::PathBuf,
    #[command(flatten)]
    rbc: RbcPxArg,
    #[command(flatten)]
    inputs: InputArgs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    let mut seg = Segmenter::default();
    let mut failures = 0usize;
    for item in args.inputs.expand().items {
        let result = item.map_err(anyhow::Error::from).and_then(|path| {
            let frame = Frame::open(&path)?;
            // Segmentation knows no model: the training scale all shipped models share.
            let scaling = match args.rbc.rbc_px.map(|r| r.diameter(&frame)) {
                None => Scaling::FrameSize,
                Some(Ok(rbc_px)) => Scaling::Rbc {
                    rbc_px,
                    reference_px: REFERENCE_RBC_PX,
                },
                Some(Err(e)) => {
                    eprintln!(
                        "warning: {}: {e}; the frame is scaled by its size instead",
                        path.display()
                    );
                    Scaling::FrameSize
                }
            };
            let s = seg.segment_with(&frame, scaling);
            let (mask, mw, mh) = seg.mask();
            let stem = path
                .file_stem()
                .map_or("frame".into(), |s| s.to_string_lossy().into_owned());
            let overlay = draw::overlay(&frame, mask, mw, mh, s.scale, &s.cells);
            let write = |name: String, png: Result<Vec<u8>, image::ImageError>| {
                let p = args.out.join(name);
                let bytes = png.with_context(|| format!("{}: cannot encode PNG", p.display()))?;
                std::fs::write(&p, bytes).with_context(|| format!("{}: cannot write", p.display()))
            };
            let grey = draw::mask_grey(mask);
            write(
                format!("{stem}.mask.png"),
                encode_png(&grey, mw, mh, image::ExtendedColorType::L8),
            )?;
            write(format!("{stem}.overlay.png"), overlay.to_png())?;
            Ok((path, s))
        });
        match result {
            Ok((path, s)) => {
                let boxes: Vec<String> = s.cells.iter().map(|c| c.rect.to_string()).collect();
                let more = if s.overflow {
                    " (overflow: more cells not listed)"
                } else {
                    ""
                };
                let line = format!(
                    "{}\t{} cells\t{}{more}\n",
                    path.display(),
                    s.cells.len(),
                    boxes.join(" ")
                );
                let _ = std::io::stdout().write_all(line.as_bytes());
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failures > 0 {
        eprintln!("error: {failures} frame(s) could not be segmented");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
