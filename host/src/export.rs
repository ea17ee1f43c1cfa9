//! Writing a model for the device: the ONNX file from the trained graph plus its card.
//!
//! The card's sha256 is computed from the exact bytes written, and its preprocessing block is this build's
//! contract, so the firmware's verification ([`leukoscope::model::verify`]) accepts exactly these files.

use std::path::{Path, PathBuf};

use leukoscope::model::{self, InputSpec, ModelCard, Preprocessing};
use leukoscope::preprocess;
use tract_onnx::pb::ModelProto;

use crate::nets::Graph;
use crate::onnx::quant::{self, Calibration, Calibrator, Format, QuantError};
use crate::onnx::{self, ExportOptions};

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    /// The graph could not be expressed as ONNX.
    #[error(transparent)]
    Onnx(#[from] onnx::ExportError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
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
    #[error("{path}: not an ONNX model: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the protobuf decoder said.
        reason: String,
    },
    /// An existing card is not valid.
    #[error("{path}: bad model card: {reason}")]
    Card {
        /// The card.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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
    };
    if let Some(dir) = onnx_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(onnx_path, &bytes).map_err(io(onnx_path))?;
    write_card(&card, &model::card_path(onnx_path))?;
    Ok(card)
}

/// Reads a float ONNX model file as a protobuf message (to quantize it).
pub fn read_model_proto(path: &Path) -> Result<ModelProto, ExportFileError> {
    use prost::Message;
    let bytes = std::fs::read(path).map_err(io(path))?;
    ModelProto::decode(&bytes[..]).map_err(|e| ExportFileError::Decode {
        path: path.to_owned(),
        reason: e.to_string(),
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
    let name = onnx_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    let card = ModelCard {
        name,
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
    if let Some(dir) = onnx_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(onnx_path, &bytes).map_err(io(onnx_path))?;
    write_card(&card, &model::card_path(onnx_path))?;
    Ok(card)
}

/// Reads a card.
pub fn read_card(path: &Path) -> Result<ModelCard, ExportFileError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| ExportFileError::Card {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes a card as pretty JSON.
pub fn write_card(card: &ModelCard, path: &Path) -> Result<(), ExportFileError> {
    let text = serde_json::to_string_pretty(card).expect("card serialises") + "\n";
    std::fs::write(path, text).map_err(io(path))
}
