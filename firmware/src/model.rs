//! Model files and their cards: what a model expects, where it came from, and whether the bytes are intact.
//!
//! Every model travels as `<name>.onnx` plus `<name>.json` (the card). The default model is compiled into the
//! binary from `models/`, so the device works with no download. Before any model is used its sha256 is checked
//! against the card, the card's class list is validated ([`crate::classes::Classes`]: the classes come from
//! the card, never from this build) and its preprocessing compared with this build's [`crate::preprocess`]
//! contract; a mismatch is refused with an error naming the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classes::Classes;
use crate::preprocess;

/// The one place that names the embedded default model (`models/<name>.onnx` and its card).
macro_rules! default_model {
    () => {
        "edge16-s3-reinhard-int8-weights"
    };
}

/// The embedded default model (ONNX bytes): the edge net with a 16-channel stem and int8 weights (the form
/// `scripts/model_table.sh` chose as the cheapest on the Pi's CPU within a point of float accuracy), trained
/// with `--init-seed 3` and with Reinhard stain normalisation at inference in its card (issue 13, twelfth
/// round: `scripts/reinhard_default.sh`; see `models/README.md`).
pub const DEFAULT_ONNX: &[u8] = include_bytes!(concat!("../../models/", default_model!(), ".onnx"));
/// The embedded default model's card (JSON).
pub const DEFAULT_CARD: &str = include_str!(concat!("../../models/", default_model!(), ".json"));
/// The embedded default model's file name (without extension), as error messages name it.
pub const DEFAULT_NAME: &str = default_model!();

/// The input a model expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Name of the ONNX graph input.
    pub name: String,
    /// `[N, C, H, W]`.
    pub shape: Vec<usize>,
    /// Always `"NCHW"` for now.
    pub layout: String,
    /// Element type, `"f32"`.
    pub dtype: String,
}

/// The preprocessing a model was trained with; must equal this build's contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Training-scale frame `[width, height]`.
    pub frame: [u32; 2],
    /// Nucleus-search window side.
    pub locate_box: u32,
    /// Crop side at training scale.
    pub crop: u32,
    /// Model input side.
    pub input: u32,
    /// Normalisation mean per channel.
    pub mean: [f32; 3],
    /// Normalisation divisor per channel.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// This build's contract.
    pub fn current() -> Self {
        Preprocessing {
            frame: [preprocess::FRAME_WIDTH, preprocess::FRAME_HEIGHT],
            locate_box: preprocess::LOCATE_BOX,
            crop: preprocess::CROP,
            input: preprocess::INPUT,
            mean: preprocess::MEAN,
            std: preprocess::STD,
        }
    }
}

/// A model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Short name, e.g. `"edge"`.
    pub name: String,
    /// Architecture, e.g. `"edge"` or `"resnet101v2"`.
    pub arch: String,
    /// `"float"`, `"int8-qop"` (QLinearConv / QLinearMatMul), `"int8-qdq"` (Quantize/DequantizeLinear pairs)
    /// or `"int8-weights"` (i8 weights, float activations).
    pub format: String,
    /// Output classes in model output order, as the model names them (validated when the card is read:
    /// not empty, no duplicates, not `UNIDENTIFIED`). The classifier's output width is their number.
    pub classes: Classes,
    /// The input.
    pub input: InputSpec,
    /// The preprocessing contract it was trained with.
    pub preprocessing: Preprocessing,
    /// What the single output holds: `"logits"`.
    pub output: String,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
    /// Below this top-class probability a cell is reported as unidentified.
    pub unidentified_threshold: f32,
    /// The exact command that trained it.
    pub training_command: String,
    /// Measured metrics (free form: split → table).
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Measured latency and its command (free form).
    #[serde(default)]
    pub latency: serde_json::Value,
    /// For an int8 model: how it was quantized (float model's sha256, calibrator, calibration images).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub quantization: serde_json::Value,
    /// The red-cell diameter, in pixels at the training scale, of the images it was trained on (what
    /// [`crate::preprocess::Scaling::Rbc`] brings a frame's red cells to); `None` for cards written before
    /// it existed, which mean [`crate::preprocess::REFERENCE_RBC_PX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbc_diameter_px: Option<f32>,
    /// Per-channel statistics of every convolution output on the training images (what
    /// [`crate::adapt::Method::NormHead`] brings a lab's back to); `None` until `leukoscope-train
    /// feature-stats` measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<crate::adapt::FeatureStats>,
    /// The training lab's colours each input is brought to before the net ([`crate::stain`]); `None` (every
    /// card written before it existed): the input as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain_norm: Option<crate::stain::StainNorm>,
    /// For a site-calibrated model ([`crate::adapt`]): what it was adapted from, how and on which cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<Adaptation>,
}

/// How a site-calibrated model was made from its base model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    /// The method.
    pub method: crate::adapt::Method,
    /// Which views of each cell the head was fitted on (cards written before views were a choice: one).
    #[serde(default)]
    pub views: crate::adapt::Views,
    /// The base model.
    pub base: ModelId,
    /// Typed calibration cells per class (0: the class kept the base model's head).
    pub cells: std::collections::BTreeMap<String, usize>,
    /// Untyped calibration cells ([`crate::adapt::Method::Norm`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub untyped: usize,
    /// The new head's pull toward the base head that cross-validation chose (a multiple of the mean squared
    /// standardised embedding norm); none when the base head was kept ([`crate::adapt::Method::Norm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<f32>,
    /// The site's colour statistics, for [`crate::adapt::Method::ColourHead`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<SiteColour>,
    /// How many convolution outputs were re-standardised to the training statistics, for
    /// [`crate::adapt::Method::NormHead`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renormalised: Option<usize>,
    /// How many convolution outputs were pooled beside the embedding for the new head, for
    /// [`crate::adapt::Method::LayersHead`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// When (RFC 3339, UTC).
    pub date: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A site's per-channel model-input statistics (after the card's normalisation), mapped to zero mean and
/// unit spread by the adapted model's first layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteColour {
    /// Mean per channel.
    pub mean: [f32; 3],
    /// Spread per channel.
    pub std: [f32; 3],
}

/// A model as reports and journals name it: the card's name and the file's sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    /// The card's short name.
    pub name: String,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (sha256 {})", self.name, self.sha256)
    }
}

impl ModelCard {
    /// The model's name and sha256.
    pub fn id(&self) -> ModelId {
        ModelId {
            name: self.name.clone(),
            sha256: self.sha256.trim().to_ascii_lowercase(),
        }
    }
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The card is not valid JSON of the expected shape (or its class list is unusable).
    #[error("{path}: bad model card")]
    Card {
        /// The card file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The bytes do not hash to the card's sha256 (truncated, corrupt or swapped file).
    #[error("{path}: sha256 {actual} does not match its card ({expected}); the file is corrupt, truncated or not the model the card describes")]
    Checksum {
        /// The model file.
        path: PathBuf,
        /// From the card.
        expected: String,
        /// Of the bytes.
        actual: String,
    },
    /// The card promises something this build cannot honour.
    #[error("{path}: {reason}")]
    Incompatible {
        /// The model file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// tract could not load or run the graph.
    #[error("{path}: cannot load ONNX model")]
    Onnx {
        /// The model file.
        path: PathBuf,
        /// tract's error (its chain is kept).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where a model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// The default model compiled into this binary.
    Embedded,
    /// `<file>.onnx` with its card `<file>.json` beside it.
    File(PathBuf),
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The card path for a model file: same stem, `.json`.
pub fn card_path(onnx: &Path) -> PathBuf {
    onnx.with_extension("json")
}

/// A verified model: bytes, card and a display name for errors.
#[derive(Clone, Debug)]
pub struct ModelBytes {
    /// ONNX bytes.
    pub onnx: Vec<u8>,
    /// The card.
    pub card: ModelCard,
    /// Where it came from (for messages).
    pub path: PathBuf,
}

impl ModelSource {
    /// Reads and verifies the model: card parses (with a usable class list), sha256 matches, preprocessing
    /// agrees with this build.
    pub fn load(&self) -> Result<ModelBytes, ModelError> {
        let (onnx, card_text, path, card_file) = match self {
            ModelSource::Embedded => (
                DEFAULT_ONNX.to_vec(),
                DEFAULT_CARD.to_string(),
                PathBuf::from(format!("<embedded>/{DEFAULT_NAME}.onnx")),
                PathBuf::from(format!("<embedded>/{DEFAULT_NAME}.json")),
            ),
            ModelSource::File(p) => {
                let onnx = read_bounded(p, MAX_MODEL_BYTES)?;
                let cp = card_path(p);
                let card = String::from_utf8(read_bounded(&cp, MAX_CARD_BYTES)?).map_err(|_| {
                    ModelError::Incompatible {
                        path: cp.clone(),
                        reason: "the card is not UTF-8 text".into(),
                    }
                })?;
                (onnx, card, p.clone(), cp)
            }
        };
        let card: ModelCard =
            serde_json::from_str(&card_text).map_err(|source| ModelError::Card {
                path: card_file.clone(),
                source,
            })?;
        verify(&onnx, &card, &path)?;
        Ok(ModelBytes { onnx, card, path })
    }
}

/// Largest model file read (512 MiB, twice the report's biggest float net); a bigger file is refused
/// before it is read, so a wrong file (a disk image, `/dev/zero`) cannot exhaust the device's memory.
pub const MAX_MODEL_BYTES: u64 = 512 << 20;

/// Largest model card read (1 MiB; cards are a few kB).
pub const MAX_CARD_BYTES: u64 = 1 << 20;

/// Reads at most `limit` bytes of a file; a longer one is [`ModelError::Incompatible`] by name.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let io = |source| ModelError::Io {
        path: path.to_owned(),
        source,
    };
    // Looked at before opening: opening a pipe would wait for a writer.
    let meta = std::fs::metadata(path).map_err(io)?;
    let too_big = || ModelError::Incompatible {
        path: path.to_owned(),
        reason: format!("larger than the {limit} bytes a model file may have"),
    };
    if !meta.is_file() {
        return Err(ModelError::Incompatible {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(io)?;
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Checks bytes against a card and the card against this build.
pub fn verify(onnx: &[u8], card: &ModelCard, path: &Path) -> Result<(), ModelError> {
    let actual = sha256_hex(onnx);
    if !actual.eq_ignore_ascii_case(card.sha256.trim()) {
        return Err(ModelError::Checksum {
            path: path.to_owned(),
            expected: card.sha256.clone(),
            actual,
        });
    }
    if card.preprocessing != Preprocessing::current() {
        return Err(ModelError::Incompatible {
            path: path.to_owned(),
            reason: format!(
                "model was trained with preprocessing {:?}, this build uses {:?}",
                card.preprocessing,
                Preprocessing::current()
            ),
        });
    }
    if card.input.shape != preprocess::INPUT_SHAPE {
        return Err(ModelError::Incompatible {
            path: path.to_owned(),
            reason: format!(
                "card input shape {:?}, this build feeds {:?}",
                card.input.shape,
                preprocess::INPUT_SHAPE
            ),
        });
    }
    if !(0.0..=1.0).contains(&card.unidentified_threshold) {
        return Err(ModelError::Incompatible {
            path: path.to_owned(),
            reason: format!(
                "unidentified_threshold {} is not a probability",
                card.unidentified_threshold
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_verifies() {
        let m = ModelSource::Embedded
            .load()
            .expect("embedded model verifies");
        assert_eq!(m.card.classes.len(), 4);
    }

    #[test]
    fn truncated_model_is_refused() {
        let m = ModelSource::Embedded.load().unwrap();
        let cut = &m.onnx[..m.onnx.len() / 2];
        let err = verify(cut, &m.card, Path::new("cut.onnx")).unwrap_err();
        assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("cut.onnx"));
    }

    #[test]
    fn missing_card_names_the_card() {
        let dir = std::env::temp_dir().join(format!("leuko-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lonely.onnx");
        std::fs::write(&p, b"x").unwrap();
        let err = ModelSource::File(p).load().unwrap_err().to_string();
        assert!(err.contains("lonely.json"), "{err}");
    }

    #[test]
    fn a_card_with_a_bad_class_list_is_one_error_naming_the_card() {
        let dir = std::env::temp_dir().join(format!("leuko-model-cls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dup.onnx");
        std::fs::write(&p, DEFAULT_ONNX).unwrap();
        let card = DEFAULT_CARD.replace("\"LYMPHOCYTE\"", "\"eosinophil\"");
        assert_ne!(card, DEFAULT_CARD);
        std::fs::write(card_path(&p), card).unwrap();
        let err = ModelSource::File(p).load().unwrap_err();
        assert!(matches!(err, ModelError::Card { .. }), "{err}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(
            chain.contains("dup.json") && chain.contains("twice"),
            "{chain}"
        );
    }

    #[test]
    fn other_preprocessing_is_refused() {
        let m = ModelSource::Embedded.load().unwrap();
        let mut card = m.card.clone();
        card.preprocessing.crop += 1;
        let err = verify(&m.onnx, &card, Path::new("m.onnx")).unwrap_err();
        assert!(matches!(err, ModelError::Incompatible { .. }), "{err}");
    }

    #[test]
    fn a_model_file_too_large_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("leuko-model-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("huge.onnx");
        // Sparse: no disk is used, the length alone says it is too big.
        std::fs::File::create(&p)
            .unwrap()
            .set_len(MAX_MODEL_BYTES + 1)
            .unwrap();
        let err = ModelSource::File(p).load().unwrap_err().to_string();
        assert!(
            err.contains("huge.onnx") && err.contains("larger than"),
            "{err}"
        );
    }

    /// Cards written before the red-cell reference existed still load (as `None`), and one that states it
    /// keeps it through a round trip.
    #[test]
    fn the_red_cell_reference_is_optional_and_kept() {
        // The previous default's card, written before the reference existed.
        const OLD_CARD: &str = include_str!("../../models/edge16-int8-weights.json");
        let old: ModelCard = serde_json::from_str(OLD_CARD).unwrap();
        assert!(!OLD_CARD.contains("rbc_diameter_px"));
        assert_eq!(old.rbc_diameter_px, None);
        let mut card = old.clone();
        card.rbc_diameter_px = Some(38.5);
        let text = serde_json::to_string(&card).unwrap();
        let back: ModelCard = serde_json::from_str(&text).unwrap();
        assert_eq!(back.rbc_diameter_px, Some(38.5));
        assert!(!serde_json::to_string(&old)
            .unwrap()
            .contains("rbc_diameter_px"));
    }
}
