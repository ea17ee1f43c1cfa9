//! Writing a model for the device: the ONNX file from the trained graph plus its card.
//!
//! The card's sha256 is computed from the exact bytes written, and its preprocessing block is this build's
//! contract, so the firmware's verification ([`leukoscope::model::verify`]) accepts exactly these files.

use std::path::{Path, PathBuf};

use leukoscope::model::{self, InputSpec, ModelCard, Preprocessing};
use leukoscope::{preprocess, CLASSES};

use crate::nets::Graph;
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
        classes: CLASSES.iter().map(|c| c.name().to_string()).collect(),
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
