//! `leukoscope-train export`: a trained net as float ONNX with its card, or an int8 form of a float model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope::{Classifier, ModelSource};
use leukoscope_host::export::{self, CardInfo, Int8Options};
use leukoscope_host::nets::Arch;
use leukoscope_host::onnx::quant;
use leukoscope_host::train;

use super::{at_least_one, DataArgs, HoldoutArgs};

/// Write a trained net as float ONNX plus its model card, or (--int8) quantize a float model.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture of the weights.
    #[arg(long, value_enum, default_value = "edge")]
    arch: Arch,
    /// Weights saved by `train` (best.ot); its train.json supplies the training command for the card.
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    weights: Option<PathBuf>,
    /// With --int8: quantize this float ONNX model (card beside it) instead of exporting --weights first.
    #[arg(long, requires = "int8")]
    onnx: Option<PathBuf>,
    /// Output ONNX file (replaced if it exists); the card is written beside it as .json.
    #[arg(long)]
    out: PathBuf,
    /// Unidentified-cell threshold to put in the card (calibrate it later with `eval --split VAL --calibrate`).
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Write a statically quantized int8 model (calibrated on TRAIN images) instead of float.
    #[arg(long)]
    int8: bool,
    /// int8 form: qop (QLinearConv / QLinearMatMul), qdq (Quantize/DequantizeLinear pairs) or weights (i8
    /// weights, float activations).
    #[arg(long, value_enum, default_value = "qop", requires = "int8")]
    format: quant::Format,
    /// Activation ranges: minmax, percentile (99.99 %, the default: best top-1 agreement on VAL) or
    /// percentile-P.
    #[arg(long, default_value = "percentile", requires = "int8")]
    calibrator: quant::Calibrator,
    /// Calibration images, from the training side of the smear-grouped split.
    #[arg(long, default_value_t = 512, requires = "int8", value_parser = at_least_one)]
    calib_images: usize,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    holdout: HoldoutArgs,
}

impl Args {
    fn int8_options(&self) -> anyhow::Result<Int8Options> {
        Ok(Int8Options {
            format: self.format,
            calibrator: self.calibrator,
            calib_images: self.calib_images,
            data_root: self.data.root()?,
            seed: self.holdout.seed,
            val_fraction: self.holdout.val_fraction,
        })
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let card = match (&a.weights, &a.onnx) {
        (Some(weights), _) => {
            let (_vs, graph) = train::load(a.arch, weights)?;
            let float_out = if a.int8 {
                export::float_path_for(&a.out)
            } else {
                a.out.clone()
            };
            let info = CardInfo {
                name: export::model_name(&float_out),
                arch: a.arch.name().into(),
                training_command: export::training_command(weights),
                unidentified_threshold: a.threshold,
            };
            let card = export::write_float_model(&graph, &float_out, &info)?;
            if a.int8 {
                println!("wrote the float model {} first", float_out.display());
                export::quantize_file(&float_out, &a.out, &a.int8_options()?)?
            } else {
                card
            }
        }
        (None, Some(onnx)) => export::quantize_file(onnx, &a.out, &a.int8_options()?)?,
        (None, None) => anyhow::bail!("give --weights, or --int8 with --onnx"),
    };
    // Prove the device accepts it before we call it done.
    Classifier::load(&ModelSource::File(a.out.clone()))
        .context("the exported model does not load in tract")?;
    println!(
        "wrote {} ({}, sha256 {}) and its card",
        a.out.display(),
        card.format,
        card.sha256
    );
    Ok(ExitCode::SUCCESS)
}
