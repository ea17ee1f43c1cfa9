//! Writing a model for the device: the ONNX file from the trained graph plus its card.
//!
//! The card's sha256 is computed from the exact bytes written, and its preprocessing block is this build's
//! contract, so the firmware's verification ([`leukoscope::model::verify`]) accepts exactly these files.

use std::path::{Path, PathBuf};

use leukoscope::model::{self, InputSpec, ModelCard, Preprocessing};
use leukoscope::preprocess;
use tract_onnx::pb::ModelProto;

use crate::eval::Report;
use crate::nets::Graph;
use crate::onnx::quant::{self, Calibration, Calibrator, Format, QuantError};
use crate::onnx::{self, ExportOptions};
use crate::predict::Threshold;

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    /// The graph could not be expressed as ONNX.
    #[error(transparent)]
    Onnx(#[from] onnx::ExportError),
    /// A file could not be written or read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model could not be quantized.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// A float model file is not valid ONNX.
    #[error("{path}: not an ONNX model")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the protobuf decoder said.
        source: prost::DecodeError,
    },
    /// An existing card is not valid.
    #[error("{path}: bad model card")]
    Card {
        /// The card.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A model to quantize does not load on the device (sha256, card or contract).
    #[error(transparent)]
    Model(#[from] leukoscope::model::ModelError),
    /// A model to quantize is not a float model.
    #[error("{}: is {format}, quantize a float model", path.display())]
    NotFloat {
        /// The model file.
        path: PathBuf,
        /// Its card's format.
        format: String,
    },
    /// The calibration images could not be listed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Members that cannot be joined into an ensemble (their graphs).
    #[error(transparent)]
    Ensemble(#[from] onnx::ensemble::EnsembleError),
    /// An ensemble member's card differs from the first member's in what the device relies on.
    #[error("{}: {what} differs from the first member's (an ensemble's members share classes, input and preprocessing)", path.display())]
    MemberCard {
        /// The member's model file.
        path: PathBuf,
        /// The card field.
        what: &'static str,
    },
    /// Fewer calibration images decoded than asked for.
    #[error("only {got} calibration images could be read (asked for {wanted})")]
    CalibrationImages {
        /// Images read.
        got: usize,
        /// Images asked for.
        wanted: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportFileError + '_ {
    move |source| ExportFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What goes into a new card besides what the graph determines.
#[derive(Clone, Debug)]
pub struct CardInfo {
    /// Short name (file stem).
    pub name: String,
    /// Architecture name.
    pub arch: String,
    /// The command that trained the weights.
    pub training_command: String,
    /// Top-class probability below which a cell is unidentified.
    pub unidentified_threshold: f32,
}

/// Exports `graph` to `onnx_path` and writes its card beside it (`.json`); returns the card.
pub fn write_float_model(
    graph: &Graph,
    onnx_path: &Path,
    info: &CardInfo,
) -> Result<ModelCard, ExportFileError> {
    let opts = ExportOptions {
        doc_string: format!(
            "Leukoscope {} white-cell classifier; trained by: {}",
            info.arch, info.training_command
        ),
        ..Default::default()
    };
    let bytes = onnx::export(graph, [preprocess::INPUT as i64; 2], &opts)?;
    let card = ModelCard {
        name: info.name.clone(),
        arch: info.arch.clone(),
        format: "float".into(),
        classes: crate::data::kaggle_classes(),
        input: InputSpec {
            name: onnx::INPUT_NAME.into(),
            shape: preprocess::INPUT_SHAPE.to_vec(),
            layout: "NCHW".into(),
            dtype: "f32".into(),
        },
        preprocessing: Preprocessing::current(),
        output: "logits".into(),
        sha256: model::sha256_hex(&bytes),
        unidentified_threshold: info.unidentified_threshold,
        training_command: info.training_command.clone(),
        metrics: serde_json::json!({}),
        latency: serde_json::json!({}),
        quantization: serde_json::Value::Null,
        // Trained on the Kaggle images, whose red cells measure the reference diameter.
        rbc_diameter_px: Some(preprocess::REFERENCE_RBC_PX),
        feature_stats: None,
        stain_norm: None,
        adaptation: None,
    };
    write_model(onnx_path, &bytes, card)
}

/// Joins the float models `members` (each with its card beside it) into one ensemble ([`onnx::ensemble`]:
/// the mean of their logits) at `onnx_path`, and writes its card: the first member's classes, input,
/// preprocessing and threshold (calibrate it with `eval --split VAL --calibrate`), arch `{arch}x{k}`, and every
/// member's name, sha256 and training command in `training_command`.
pub fn write_ensemble(members: &[PathBuf], onnx_path: &Path) -> Result<ModelCard, ExportFileError> {
    use prost::Message;
    let mut protos = Vec::with_capacity(members.len());
    let mut cards: Vec<ModelCard> = Vec::with_capacity(members.len());
    for path in members {
        let card = read_card(&model::card_path(path))?;
        if card.format != "float" {
            return Err(ExportFileError::NotFloat {
                path: path.clone(),
                format: card.format,
            });
        }
        if let Some(first) = cards.first() {
            for (what, equal) in [
                ("classes", first.classes == card.classes),
                ("input", first.input == card.input),
                ("preprocessing", first.preprocessing == card.preprocessing),
                ("output", first.output == card.output),
                ("stain_norm", first.stain_norm == card.stain_norm),
                (
                    "rbc_diameter_px",
                    // No entry means the reference diameter (what the device assumes, as here).
                    first
                        .rbc_diameter_px
                        .unwrap_or(preprocess::REFERENCE_RBC_PX)
                        == card.rbc_diameter_px.unwrap_or(preprocess::REFERENCE_RBC_PX),
                ),
            ] {
                if !equal {
                    return Err(ExportFileError::MemberCard {
                        path: path.clone(),
                        what,
                    });
                }
            }
        }
        protos.push((path.display().to_string(), read_model_proto(path)?));
        cards.push(card);
    }
    let bytes = onnx::ensemble::join(&protos)?.encode_to_vec();
    let first = &cards[0];
    let arch = if cards.iter().all(|c| c.arch == first.arch) {
        format!("{}x{}", first.arch, cards.len())
    } else {
        cards
            .iter()
            .map(|c| c.arch.as_str())
            .collect::<Vec<_>>()
            .join("+")
    };
    let card = ModelCard {
        name: model_name(onnx_path),
        arch,
        sha256: model::sha256_hex(&bytes),
        training_command: format!(
            "ensemble (mean of the logits) of: {}",
            cards
                .iter()
                .map(|c| format!("{} (sha256 {}): {}", c.name, c.sha256, c.training_command))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        metrics: serde_json::json!({}),
        latency: serde_json::json!({}),
        quantization: serde_json::Value::Null,
        feature_stats: None,
        adaptation: None,
        rbc_diameter_px: Some(
            first
                .rbc_diameter_px
                .unwrap_or(preprocess::REFERENCE_RBC_PX),
        ),
        ..first.clone()
    };
    write_model(onnx_path, &bytes, card)
}

/// Reads a float ONNX model file as a protobuf message (to quantize it).
pub fn read_model_proto(path: &Path) -> Result<ModelProto, ExportFileError> {
    use prost::Message;
    let bytes = std::fs::read(path).map_err(io(path))?;
    ModelProto::decode(&bytes[..]).map_err(|source| ExportFileError::Decode {
        path: path.to_owned(),
        source,
    })
}

/// The card format name of an int8 form (`int8-qop`, `int8-qdq`, `int8-weights`).
pub fn int8_format_name(format: Format) -> String {
    format!("int8-{format}")
}

/// Quantizes the float model `float` (whose card is `float_card`) and writes it to `onnx_path` with its card;
/// returns the card. The new card keeps the float card's training command and threshold, and records the
/// float model's sha256, the calibrator and the number of calibration images under `quantization`.
pub fn write_int8_model(
    float: &ModelProto,
    float_card: &ModelCard,
    calibration: &Calibration,
    calibrator: Calibrator,
    format: Format,
    onnx_path: &Path,
) -> Result<ModelCard, ExportFileError> {
    use prost::Message;
    let bytes = quant::quantize(float, calibration, calibrator, format)?.encode_to_vec();
    let card = ModelCard {
        name: model_name(onnx_path),
        format: int8_format_name(format),
        sha256: model::sha256_hex(&bytes),
        metrics: serde_json::json!({}),
        latency: serde_json::json!({}),
        quantization: serde_json::json!({
            "float_model": float_card.name,
            "float_sha256": float_card.sha256,
            "calibrator": if format == Format::Weights { serde_json::Value::Null } else { calibrator.to_string().into() },
            "calibration_images": if format == Format::Weights { 0 } else { calibration.images },
            "weights": "int8 symmetric, per output channel (per tensor for QLinearMatMul)",
            "activations": if format == Format::Weights { "float" } else { "uint8 asymmetric, per tensor" },
        }),
        ..float_card.clone()
    };
    write_model(onnx_path, &bytes, card)
}

/// Writes the model bytes (creating the folder) and its card beside them; returns the card.
fn write_model(
    onnx_path: &Path,
    bytes: &[u8],
    card: ModelCard,
) -> Result<ModelCard, ExportFileError> {
    if let Some(dir) = onnx_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(onnx_path, bytes).map_err(io(onnx_path))?;
    write_card(&card, &model::card_path(onnx_path))?;
    Ok(card)
}

/// A model's name as its card records it: the file stem (`models/edge16.onnx` → `edge16`).
pub fn model_name(onnx_path: &Path) -> String {
    onnx_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string()
}

/// Where `export --weights W --int8 --out M` writes the float model it quantizes: `M`'s stem + `-float.onnx`.
pub fn float_path_for(int8_out: &Path) -> PathBuf {
    int8_out.with_file_name(format!("{}-float.onnx", model_name(int8_out)))
}

/// The command that trained `weights`, from the `train.json` beside them (a note when it is missing).
pub fn training_command(weights: &Path) -> String {
    let log_path = weights.with_file_name("train.json");
    std::fs::read_to_string(&log_path)
        .ok()
        .and_then(|t| serde_json::from_str::<crate::train::RunLog>(&t).ok())
        .map_or_else(
            || format!("(unknown: {} not found)", log_path.display()),
            |l| l.command,
        )
}

/// How [`quantize_file`] calibrates and what it writes.
#[derive(Clone, Debug)]
pub struct Int8Options {
    /// The int8 form.
    pub format: Format,
    /// How activation ranges are chosen.
    pub calibrator: Calibrator,
    /// Calibration images, from the training side of the smear-grouped split.
    pub calib_images: usize,
    /// The data root (Kaggle layout).
    pub data_root: PathBuf,
    /// The training run's validation split seed, so that no validation smear calibrates.
    pub seed: u64,
    /// The training run's validation fraction.
    pub val_fraction: f64,
}

/// Calibrates the float model `float` (verified as the device would load it) on TRAIN images and writes its
/// int8 form to `out` with a card; returns the card.
pub fn quantize_file(
    float: &Path,
    out: &Path,
    o: &Int8Options,
) -> Result<ModelCard, ExportFileError> {
    let verified = leukoscope::ModelSource::File(float.to_owned()).load()?;
    if verified.card.format != "float" {
        return Err(ExportFileError::NotFloat {
            path: float.to_owned(),
            format: verified.card.format,
        });
    }
    let proto = read_model_proto(float)?;
    let t = std::time::Instant::now();
    let images = crate::data::calibration_inputs(
        &o.data_root,
        o.calib_images,
        o.seed,
        o.val_fraction,
        verified.card.stain_norm.as_ref(),
    )?;
    if images.len() != o.calib_images {
        return Err(ExportFileError::CalibrationImages {
            got: images.len(),
            wanted: o.calib_images,
        });
    }
    let calibration = quant::calibrate(&proto, &images, preprocess::INPUT_SHAPE)?;
    eprintln!(
        "calibrated {} tensors on {} TRAIN images in {:.1} s",
        calibration.tensors().len(),
        images.len(),
        t.elapsed().as_secs_f64()
    );
    write_int8_model(
        &proto,
        &verified.card,
        &calibration,
        o.calibrator,
        o.format,
        out,
    )
}

/// Stores `report` in `card.metrics[split]`, with the command that produced it.
pub fn store_metrics(card: &mut ModelCard, split: &str, report: &Report, command: &str) {
    let mut m = serde_json::to_value(report).expect("a report serialises");
    m["command"] = serde_json::Value::String(command.to_string());
    if !card.metrics.is_object() {
        card.metrics = serde_json::json!({});
    }
    card.metrics[split] = m;
}

/// Makes `t` the card's unidentified threshold and records how it was chosen under `metrics`.
pub fn store_threshold(card: &mut ModelCard, t: &Threshold) {
    card.unidentified_threshold = t.threshold;
    if !card.metrics.is_object() {
        card.metrics = serde_json::json!({});
    }
    card.metrics["unidentified_threshold"] =
        serde_json::to_value(t).expect("a threshold serialises");
}

/// Reads a card.
pub fn read_card(path: &Path) -> Result<ModelCard, ExportFileError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| ExportFileError::Card {
        path: path.to_owned(),
        source,
    })
}

/// Writes a card as pretty JSON.
pub fn write_card(card: &ModelCard, path: &Path) -> Result<(), ExportFileError> {
    let text = serde_json::to_string_pretty(card).expect("card serialises") + "\n";
    std::fs::write(path, text).map_err(io(path))
}
