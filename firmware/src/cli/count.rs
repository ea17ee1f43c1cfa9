//! `leukoscope count`: find, type and count the white cells of smear frames, then report.

use std::process::ExitCode;

use anyhow::Context;
use leukoscope::count::StopRule;
use leukoscope::report::{Provenance, Report};
use leukoscope::{Frame, Pipeline};

use super::{InputArgs, ModelArg, Outputs, Progress, RbcPxArg, TargetArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    target: TargetArg,
    #[command(flatten)]
    rbc: RbcPxArg,
    #[command(flatten)]
    outputs: Outputs,
    #[command(flatten)]
    inputs: InputArgs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut pipeline = Pipeline::new(args.model.classifier()?).with_rbc_px(args.rbc.rbc_px);
    let stop = StopRule {
        target: args.target.target,
    };
    let mut rep = Report::new(
        pipeline.analysis(),
        stop,
        Provenance::now(&args.inputs.names()),
    );
    let inputs = args.inputs.expand();
    let progress = Progress::new(inputs.items.len());
    for (done, item) in inputs.items.into_iter().enumerate() {
        if rep.done() {
            break;
        }
        match item {
            Err(e) => {
                progress.clear();
                eprintln!("error: {e}");
                rep.add_error(e.path(), &e.to_string());
            }
            Ok(path) => {
                let analysed = Frame::open(&path)
                    .map_err(anyhow::Error::from)
                    .and_then(|f| {
                        pipeline
                            .analyze(&f)
                            .with_context(|| path.display().to_string())
                    });
                match analysed {
                    Ok(r) => {
                        if let Some(e) = &r.scale_error {
                            progress.clear();
                            eprintln!(
                                "warning: {}: {e}; the frame is scaled by its size instead",
                                path.display()
                            );
                        }
                        if let Some(c) = &r.clipping {
                            progress.clear();
                            eprintln!("warning: {}: {c}", path.display());
                        }
                        rep.add_frame(&path, r);
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        progress.clear();
                        eprintln!("error: {msg}");
                        rep.add_error(&path, &msg);
                    }
                }
            }
        }
        progress.show(done + 1, &format!("{} cells", rep.differential.total()));
    }
    progress.clear();
    args.outputs.emit(&rep)?;
    if rep.errors() > 0 {
        eprintln!("error: {} frame(s) could not be counted", rep.errors());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
