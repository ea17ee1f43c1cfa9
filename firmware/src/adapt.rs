//! Site calibration: a model adapted to one lab's microscope from a few cells of that lab that a
//! technologist has typed, on the device (tract only, no libtorch).
//!
//! The cells come as a folder with one subfolder per class (names matched to the model's classes, any case;
//! images of any size, read like every other input), the folder a review exports, or, for [`Method::Norm`],
//! as one folder of untyped cells. The [`Method`]s:
//!
//! - [`Method::Head`]: the model's own embedding (the input of its last, linear layer) is computed by tract
//!   for every cell, and a new head is fitted on it: a class-balanced multinomial logistic regression that
//!   starts from the base model's head and is pulled back toward it (L2 on the difference), its strength
//!   chosen by k-fold cross-validation on the calibration cells themselves among [`PRIOR_CANDIDATES`].
//! - [`Method::ColourHead`]: first the lab's colour: the per-channel mean and spread of the model input over
//!   the calibration cells are re-estimated and an affine layer in front of the graph maps them to the
//!   training statistics (zero mean, unit spread after the card's normalisation), then the head as above.
//! - [`Method::NormHead`]: the lab's statistics inside the net (AdaBN, Li et al. 2016): every convolution's
//!   output is brought back, per channel, from its mean and spread on the lab's cells to those on the
//!   training images (the card's [`FeatureStats`], measured by [`FeatureMeter`]), one layer at a time, then
//!   the head as above. The convolutions carry their batch norms folded in, so this is the batch norms'
//!   statistics re-estimated on the lab.
//! - [`Method::LayersHead`]: the head as in [`Method::Head`], fitted on more than the last embedding: every
//!   convolution's output, its positive part averaged over the image per channel, beside the embedding. The
//!   last embedding is what the training lab's four classes needed; the earlier layers' textures and colours
//!   are what another lab still shares with it. The base head's weights carry over to the embedding, the
//!   pooled features start at zero and are pulled toward it.
//! - [`Method::Norm`]: the same re-estimated statistics with the base model's own head kept, so the cells
//!   need no types: a lab that has typed none calibrates from a folder of its cells ([`SiteCells::read_untyped`];
//!   typed cells weigh each class the same, untyped ones each cell the same).
//!
//! With [`Views::Dihedral`] the head is fitted on each cell's 8 flips and quarter turns (a cell on a slide
//! has no up or handedness), the views of one cell kept in one cross-validation fold.
//!
//! The adapted model is a new ONNX file with its card ([`crate::model::Adaptation`]: base model, method,
//! views, cells per class, date), loaded by `--model` like any other. Nothing is written unless every cell
//! was read and the new model loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::cell;
use crate::classes::Classes;
use crate::classify::Classifier;
use crate::frame::{Frame, FrameError};
use crate::inputs::{self, InputError};
use crate::model::{sha256_hex, Adaptation, ModelBytes, ModelError};
use crate::preprocess;

/// Fewest cells a class folder may hold.
pub const MIN_CELLS: usize = 3;

/// Fewest untyped cells [`Method::Norm`] takes (the fewest measured on the second lab, models/README.md).
pub const MIN_UNTYPED_CELLS: usize = 20;

/// The head's pull toward the base head, as multiples of the mean squared norm of the standardised embedding; the one used is
/// chosen by cross-validation on the calibration cells.
pub const PRIOR_CANDIDATES: [f32; 5] = [0.0001, 0.001, 0.01, 0.1, 1.0];

/// Cross-validation folds of the prior strength.
const FOLDS: usize = 3;

/// Gradient steps of a head fit.
const ITERATIONS: usize = 600;

/// How a model is adapted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A new head on the model's embeddings (logistic regression pulled toward the base head).
    Head,
    /// The lab's colour statistics re-estimated (an input affine layer), then [`Method::Head`].
    ColourHead,
    /// Every convolution output re-standardised from the lab's statistics to the training images' (the
    /// card's [`FeatureStats`]), then [`Method::Head`].
    NormHead,
    /// A new head, as [`Method::Head`], on every convolution's pooled output beside the embedding.
    LayersHead,
    /// Every convolution output re-standardised as in [`Method::NormHead`], the base model's head kept: the
    /// cells need no types.
    Norm,
}

impl Method {
    /// Whether the method fits a new head (and so needs typed cells).
    pub fn fits_head(self) -> bool {
        !matches!(self, Method::Norm)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Head => "head",
            Method::ColourHead => "colour-head",
            Method::NormHead => "norm-head",
            Method::LayersHead => "layers-head",
            Method::Norm => "norm",
        })
    }
}

/// Which views of each calibration cell the head is fitted on. A cell on a slide has no up, down or
/// handedness, so each of its 8 flips and quarter turns (the dihedral group of the square input) is a cell
/// the lab could show; fitting the head on all 8 gives it 8 embeddings per cell instead of one. The colour
/// and in-net statistics are estimated on the cells as read in either case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Views {
    /// Each cell as read.
    #[default]
    One,
    /// Each cell under the 8 flips and quarter turns of its model input.
    Dihedral,
}

impl Views {
    /// How many views of a cell the head sees.
    pub fn count(self) -> usize {
        match self {
            Views::One => 1,
            Views::Dihedral => 8,
        }
    }
}

impl std::fmt::Display for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Views::One => "one",
            Views::Dihedral => "dihedral",
        })
    }
}

/// View `k` (0..8) of a `channels × n × n` image: bit 2 transposes, bit 1 flips rows, bit 0 flips columns.
fn dihedral(chw: &[f32], n: usize, k: usize) -> Vec<f32> {
    let plane = n * n;
    let mut out = Vec::with_capacity(chw.len());
    for c in chw.chunks_exact(plane) {
        for i in 0..n {
            for j in 0..n {
                let (a, b) = if k & 4 != 0 { (j, i) } else { (i, j) };
                let a = if k & 2 != 0 { n - 1 - a } else { a };
                let b = if k & 1 != 0 { n - 1 - b } else { b };
                out.push(c[a * n + b]);
            }
        }
    }
    out
}

/// Why a model could not be adapted. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// The cells folder could not be listed.
    #[error("{path}: cannot read the cells folder")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cells folder has no subfolder.
    #[error("{path}: no class folders (expected one subfolder per class, named as the model's classes: {classes})")]
    NoClasses {
        /// The folder.
        path: PathBuf,
        /// The model's classes.
        classes: String,
    },
    /// A subfolder is not named after a class of the model.
    #[error("{path}: `{name}` is not a class of the model (its classes: {classes})")]
    UnknownClass {
        /// The subfolder.
        path: PathBuf,
        /// Its name.
        name: String,
        /// The model's classes.
        classes: String,
    },
    /// Two subfolders name the same class (in different case).
    #[error("{first} and {second} are both class {class}")]
    DuplicateClass {
        /// The first folder.
        first: PathBuf,
        /// The second.
        second: PathBuf,
        /// The class.
        class: String,
    },
    /// A class folder holds no image.
    #[error("class {class} has no cells")]
    EmptyClass {
        /// The class.
        class: String,
        /// Which folder and why.
        source: InputError,
    },
    /// A class has fewer than [`MIN_CELLS`] cells.
    #[error("{path}: {found} cell(s) of {class}; at least {MIN_CELLS} per class are needed")]
    TooFew {
        /// The class folder.
        path: PathBuf,
        /// The class.
        class: String,
        /// How many it holds.
        found: usize,
    },
    /// An untyped cells folder holds no image.
    #[error("the untyped cells folder has no cells")]
    NoUntyped {
        /// Which folder and why.
        source: InputError,
    },
    /// Fewer than [`MIN_UNTYPED_CELLS`] untyped cells.
    #[error("{path}: {found} untyped cell(s); norm needs at least {MIN_UNTYPED_CELLS}")]
    TooFewUntyped {
        /// The folder.
        path: PathBuf,
        /// How many it holds.
        found: usize,
    },
    /// A method that fits a head was given untyped cells.
    #[error(
        "{method} fits a new head and needs typed cells (one subfolder per class); {untyped} untyped cell(s) \
         were given: use `norm` for untyped cells"
    )]
    Untyped {
        /// The method.
        method: Method,
        /// How many untyped cells.
        untyped: usize,
    },
    /// A cell image could not be read.
    #[error(transparent)]
    Image(#[from] FrameError),
    /// The base model cannot be used.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The base model's graph has no head this module can refit.
    #[error("{path}: cannot adapt this model: {reason}")]
    Graph {
        /// The model file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// tract failed on a calibration cell.
    #[error("{path}: computing a cell's embedding failed")]
    Embedding {
        /// The cell image.
        path: PathBuf,
        /// tract's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// [`Method::NormHead`] or [`Method::Norm`] on a model whose card has no training-image statistics.
    #[error(
        "{path}: its card has no feature_stats (the training images' statistics that norm and norm-head bring \
         the lab's back to): add them with `leukoscope-train feature-stats --model {path}`"
    )]
    NoFeatureStats {
        /// The model file.
        path: PathBuf,
    },
    /// The adapted model could not be written.
    #[error("{path}: cannot write")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Cells of one lab: per class of the model (in its order), the typed cell images and their paths; and
/// cells of no known type (for [`Method::Norm`]).
#[derive(Clone, Debug)]
pub struct SiteCells {
    /// `cells[class]`: (path, image).
    pub cells: Vec<Vec<(PathBuf, Frame)>>,
    /// Cells whose type is not known: (path, image).
    pub untyped: Vec<(PathBuf, Frame)>,
}

impl SiteCells {
    /// Reads `dir/<CLASS>/*` for the model's `classes`. Every subfolder must name a class (any case), every
    /// class folder present must hold at least [`MIN_CELLS`] readable images; a class without a folder keeps
    /// the base model's head.
    pub fn read(dir: &Path, classes: &Classes) -> Result<Self, AdaptError> {
        let names = || classes.names().join(", ");
        let rd = std::fs::read_dir(dir).map_err(|source| AdaptError::Folder {
            path: dir.to_owned(),
            source,
        })?;
        let mut folders: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        if folders.is_empty() {
            return Err(AdaptError::NoClasses {
                path: dir.to_owned(),
                classes: names(),
            });
        }
        let mut seen: Vec<Option<PathBuf>> = vec![None; classes.len()];
        let mut cells = vec![Vec::new(); classes.len()];
        for folder in folders {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(class) = classes.index(&name) else {
                return Err(AdaptError::UnknownClass {
                    path: folder,
                    name,
                    classes: names(),
                });
            };
            let class_name = classes.label(Some(class)).to_string();
            if let Some(first) = seen[class].replace(folder.clone()) {
                return Err(AdaptError::DuplicateClass {
                    first,
                    second: folder,
                    class: class_name,
                });
            }
            let files = inputs::list_images(&folder).map_err(|source| AdaptError::EmptyClass {
                class: class_name.clone(),
                source,
            })?;
            if files.len() < MIN_CELLS {
                return Err(AdaptError::TooFew {
                    path: folder,
                    class: class_name,
                    found: files.len(),
                });
            }
            for f in files {
                let frame = Frame::open(&f)?;
                cells[class].push((f, frame));
            }
        }
        Ok(SiteCells {
            cells,
            untyped: Vec::new(),
        })
    }

    /// Reads every image under `dir` (subfolders too, their names not read) as untyped cells of the lab: at least
    /// [`MIN_UNTYPED_CELLS`], every one readable. `classes` sizes the (empty) typed lists.
    pub fn read_untyped(dir: &Path, classes: &Classes) -> Result<Self, AdaptError> {
        let files = inputs::list_images(dir).map_err(|source| AdaptError::NoUntyped { source })?;
        if files.len() < MIN_UNTYPED_CELLS {
            return Err(AdaptError::TooFewUntyped {
                path: dir.to_owned(),
                found: files.len(),
            });
        }
        let untyped = files
            .into_iter()
            .map(|f| Frame::open(&f).map(|frame| (f, frame)))
            .collect::<Result<_, _>>()?;
        Ok(SiteCells {
            cells: vec![Vec::new(); classes.len()],
            untyped,
        })
    }

    /// How many cells, typed or not.
    pub fn len(&self) -> usize {
        self.cells.iter().map(Vec::len).sum::<usize>() + self.untyped.len()
    }

    /// Whether there is no cell.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cells per class, by class name (classes without cells included, as 0).
    pub fn counts(&self, classes: &Classes) -> BTreeMap<String, usize> {
        classes
            .iter()
            .zip(&self.cells)
            .map(|(c, v)| (c.to_string(), v.len()))
            .collect()
    }
}

/// The model input of one cell image, normalised (`3 × INPUT × INPUT`), by the same path `classify` takes
/// (in the card's stain reference `stain` when it has one: [`crate::classify::Classifier::input_chw`]).
fn cell_chw(stain: Option<&crate::stain::StainNorm>, frame: &Frame) -> Vec<f32> {
    crate::stain::input_chw(stain, &preprocess::frame_input(frame).0)
}

/// The last linear layer of a graph: `logits = emb · W + b`.
struct Head {
    /// The tensor the head reads (the embedding).
    embedding: String,
    /// `W`, `dim × classes`, row-major.
    weight: Vec<f32>,
    /// `b`.
    bias: Vec<f32>,
    /// Embedding width.
    dim: usize,
    /// The outputs of the nodes that only compute the head, removed when it is replaced.
    nodes: Vec<String>,
}

fn graph_err(path: &Path, reason: impl Into<String>) -> AdaptError {
    AdaptError::Graph {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn initializer<'a>(g: &'a pb::GraphProto, name: &str) -> Option<&'a pb::TensorProto> {
    g.initializer.iter().find(|t| t.name == name)
}

fn tensor_f32(path: &Path, t: &pb::TensorProto) -> Result<(Vec<usize>, Vec<f32>), AdaptError> {
    let tensor =
        tract_onnx::tensor::load_tensor(&tract_onnx::data_resolver::FopenDataResolver, t, None)
            .map_err(|e| graph_err(path, format!("initializer {}: {e}", t.name)))?;
    let shape = tensor.shape().to_vec();
    let f = tensor
        .cast_to::<f32>()
        .map_err(|e| graph_err(path, format!("initializer {}: {e}", t.name)))?;
    let values = f
        .to_plain_array_view::<f32>()
        .map_err(|e| graph_err(path, format!("initializer {}: {e}", t.name)))?
        .iter()
        .copied()
        .collect();
    Ok((shape, values))
}

/// A weight's shape, its values as f32 and the `DequantizeLinear` node (by index) that made it, if any.
type Weight = (Vec<usize>, Vec<f32>, Option<usize>);

/// A weight initializer, directly or behind a `DequantizeLinear` of initializers (the int8-weights form).
fn weight(path: &Path, g: &pb::GraphProto, name: &str) -> Result<Weight, AdaptError> {
    if let Some(t) = initializer(g, name) {
        let (s, v) = tensor_f32(path, t)?;
        return Ok((s, v, None));
    }
    let (ix, dq) = g
        .node
        .iter()
        .enumerate()
        .find(|(_, n)| n.output.iter().any(|o| o == name))
        .ok_or_else(|| graph_err(path, format!("the head's weight {name} has no producer")))?;
    if dq.op_type != "DequantizeLinear" || dq.input.len() < 2 {
        return Err(graph_err(
            path,
            format!(
                "the head's weight comes from {} (expected an initializer or DequantizeLinear)",
                dq.op_type
            ),
        ));
    }
    let get = |i: usize| {
        dq.input
            .get(i)
            .and_then(|n| initializer(g, n))
            .ok_or_else(|| {
                graph_err(
                    path,
                    "the head's DequantizeLinear does not read initializers",
                )
            })
            .and_then(|t| tensor_f32(path, t))
    };
    let (shape, q) = get(0)?;
    let (_, scale) = get(1)?;
    let zero = if dq.input.len() > 2 {
        get(2)?.1
    } else {
        vec![0.0; scale.len()]
    };
    let axis = dq
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(1, |a| a.i);
    if shape.len() != 2 || !(axis == 1 || axis == -1 || scale.len() == 1) {
        return Err(graph_err(
            path,
            "the head's DequantizeLinear is not per column of a 2-D weight",
        ));
    }
    let cols = shape[1];
    let values = q
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = if scale.len() == 1 { 0 } else { i % cols };
            (v - zero[c]) * scale[c]
        })
        .collect();
    Ok((shape, values, Some(ix)))
}

/// Finds the head that produces the graph's only output: `Gemm(emb, W, b)` (`transB` 0 or 1) or
/// `Add(MatMul(emb, W), b)`.
fn find_head(path: &Path, g: &pb::GraphProto, classes: usize) -> Result<Head, AdaptError> {
    let [out] = g.output.as_slice() else {
        return Err(graph_err(path, "expected one graph output"));
    };
    let producer = |name: &str| {
        g.node
            .iter()
            .enumerate()
            .find(|(_, n)| n.output.iter().any(|o| o == name))
    };
    let (last_ix, last) =
        producer(&out.name).ok_or_else(|| graph_err(path, "the output has no producer"))?;
    let (embedding, (wshape, mut w, dq), bias, mut nodes) = match last.op_type.as_str() {
        "Gemm" if last.input.len() == 3 => {
            let trans_b = last.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
            let mut wt = weight(path, g, &last.input[1])?;
            if trans_b && wt.0.len() == 2 {
                let (r, c) = (wt.0[0], wt.0[1]);
                let t: Vec<f32> = (0..c * r).map(|i| wt.1[(i % r) * c + i / r]).collect();
                wt = (vec![c, r], t, wt.2);
            }
            let bias = initializer(g, &last.input[2]).ok_or_else(|| graph_err(path, "the Gemm's bias is not an initializer"))?;
            (last.input[0].clone(), wt, tensor_f32(path, bias)?.1, vec![last_ix])
        }
        "Add" if last.input.len() == 2 => {
            let (bias_name, mm_name) = if initializer(g, &last.input[1]).is_some() {
                (&last.input[1], &last.input[0])
            } else {
                (&last.input[0], &last.input[1])
            };
            let bias = initializer(g, bias_name).ok_or_else(|| graph_err(path, "the last Add has no constant bias"))?;
            let (mm_ix, mm) = producer(mm_name).ok_or_else(|| graph_err(path, "the last Add reads nothing"))?;
            if mm.op_type != "MatMul" || mm.input.len() != 2 {
                return Err(graph_err(path, format!("the head is {} + Add (expected MatMul + Add or Gemm)", mm.op_type)));
            }
            (mm.input[0].clone(), weight(path, g, &mm.input[1])?, tensor_f32(path, bias)?.1, vec![last_ix, mm_ix])
        }
        other => {
            return Err(graph_err(
                path,
                format!("the output comes from {other} (expected a float or int8-weights head: Gemm, or MatMul + Add)"),
            ))
        }
    };
    if let Some(ix) = dq {
        nodes.push(ix);
    }
    if wshape.len() != 2 || wshape[1] != classes || bias.len() != classes {
        return Err(graph_err(
            path,
            format!("the head's weight is {wshape:?}, expected [dim, {classes}]"),
        ));
    }
    w.truncate(wshape[0] * classes);
    Ok(Head {
        embedding,
        dim: wshape[0],
        weight: w,
        bias,
        nodes: nodes
            .iter()
            .filter_map(|&i| g.node[i].output.first().cloned())
            .collect(),
    })
}

/// A float initializer (also [`crate::testing::graphs`]'s).
pub(crate) fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A node named after its one output.
pub(crate) fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.to_string(),
        name: output.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        ..Default::default()
    }
}

/// A float graph input or output of fixed dims.
pub(crate) fn float_output(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    float_info(
        name,
        Some(pb::TensorShapeProto {
            dim: dims
                .iter()
                .map(|&d| Dimension {
                    value: Some(dimension::Value::DimValue(d as i64)),
                    ..Default::default()
                })
                .collect(),
        }),
    )
}

/// A float graph output of unknown shape (an inner tensor read out).
fn float_value(name: &str) -> pb::ValueInfoProto {
    float_info(name, None)
}

/// A float tensor's value info, of `shape` where known.
fn float_info(name: &str, shape: Option<pb::TensorShapeProto>) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Puts `x' = x · scale + shift` (per channel) in front of every node that reads the graph input.
fn prepend_colour(g: &mut pb::GraphProto, scale: [f32; 3], shift: [f32; 3]) {
    let input = g.input[0].name.clone();
    let (scaled, adjusted) = ("site/colour/scaled", "site/colour/input");
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == input {
                *i = adjusted.to_string();
            }
        }
    }
    g.initializer
        .push(float_tensor("site/colour/scale", &[1, 3, 1, 1], &scale));
    g.initializer
        .push(float_tensor("site/colour/shift", &[1, 3, 1, 1], &shift));
    let front = [
        node("Mul", &[&input, "site/colour/scale"], scaled),
        node("Add", &[scaled, "site/colour/shift"], adjusted),
    ];
    g.node.splice(0..0, front);
}

/// The graph with the head's nodes removed and `output` as its only output.
fn without_head(g: &pb::GraphProto, head: &Head) -> pb::GraphProto {
    let mut g = g.clone();
    g.node
        .retain(|n| !n.output.iter().any(|o| head.nodes.contains(o)));
    g
}

fn encode(model: &pb::ModelProto, graph: pb::GraphProto) -> Vec<u8> {
    let mut m = model.clone();
    m.graph = Some(graph);
    m.encode_to_vec()
}

/// Per-channel mean and spread of normalised model inputs.
fn channel_stats(inputs: &[Vec<f32>]) -> ([f32; 3], [f32; 3]) {
    let plane = preprocess::INPUT as usize * preprocess::INPUT as usize;
    let mut mean = [0f32; 3];
    let mut std = [0f32; 3];
    for c in 0..3 {
        let (mut s, mut ss, mut n) = (0f64, 0f64, 0f64);
        for x in inputs {
            for &v in &x[c * plane..(c + 1) * plane] {
                s += v as f64;
                ss += (v as f64) * (v as f64);
                n += 1.0;
            }
        }
        let m = s / n;
        mean[c] = m as f32;
        std[c] = ((ss / n - m * m).max(1e-12)).sqrt() as f32;
    }
    (mean, std)
}

/// Per-channel mean and spread of one tensor (a convolution's output) over a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The tensor, as the graph names it.
    pub tensor: String,
    /// Mean per channel (over images and positions).
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

/// What every convolution of a model computes on the images it was trained on, per channel: the reference
/// that [`Method::NormHead`] brings a lab's statistics back to. A card's `feature_stats`, measured by
/// [`FeatureMeter`] (`leukoscope-train feature-stats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Which images were measured (e.g. `"TRAIN of ../shared/data/blood-cells"`).
    pub source: String,
    /// How many.
    pub images: usize,
    /// One entry per convolution, in graph order.
    pub layers: Vec<ChannelStats>,
}

/// Weighted per-channel first and second moments of a `[1, C, H, W]` tensor over images.
#[derive(Clone, Debug, Default)]
struct Moments {
    weight: f64,
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl Moments {
    /// Adds one image's tensor (`values` of `channels` planes) with `weight`.
    fn add(&mut self, values: &[f32], channels: usize, weight: f64) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; channels];
            self.squares = vec![0.0; channels];
        }
        let plane = values.len() / channels.max(1);
        for (c, p) in values.chunks(plane.max(1)).enumerate().take(channels) {
            let (s, q) = p.iter().fold((0f64, 0f64), |(s, q), &v| {
                (s + f64::from(v), q + f64::from(v) * f64::from(v))
            });
            self.sum[c] += weight * s / plane as f64;
            self.squares[c] += weight * q / plane as f64;
        }
        self.weight += weight;
    }

    /// Mean and standard deviation per channel.
    fn stats(&self, tensor: &str) -> ChannelStats {
        let w = self.weight.max(f64::MIN_POSITIVE);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / w).collect();
        let std = self
            .squares
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / w - m * m).max(0.0).sqrt() as f32)
            .collect();
        ChannelStats {
            tensor: tensor.to_string(),
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }
}

/// The outputs of every `Conv` node, in graph (topological) order.
fn conv_outputs(g: &pb::GraphProto) -> Vec<String> {
    g.node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .filter_map(|n| n.output.first().cloned())
        .collect()
}

/// `graph` (of `model`) made runnable by tract on the model input, `what` naming it in errors.
fn runnable(
    path: &Path,
    model: &pb::ModelProto,
    graph: pb::GraphProto,
    what: &str,
) -> Result<Arc<TypedRunnableModel>, AdaptError> {
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(encode(model, graph)))
        .and_then(|m| m.with_input_fact(0, f32::fact(preprocess::INPUT_SHAPE).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| graph_err(path, format!("{what} does not load: {e:#}")))
}

/// Runs `plan` on one model input; every output as `(channels, values)`.
fn run_outputs(
    plan: &Arc<TypedRunnableModel>,
    cell: &Path,
    chw: &[f32],
) -> Result<Vec<(usize, Vec<f32>)>, AdaptError> {
    let err = |e: TractError| AdaptError::Embedding {
        path: cell.to_owned(),
        source: e.into(),
    };
    let input = Tensor::from_shape(&preprocess::INPUT_SHAPE, chw).map_err(err)?;
    let out = plan.run(tvec!(input.into_tvalue())).map_err(err)?;
    out.iter()
        .map(|t| {
            let channels = t.shape().get(1).copied().unwrap_or(1);
            let values: Vec<f32> = t
                .to_plain_array_view::<f32>()
                .map_err(err)?
                .iter()
                .copied()
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(AdaptError::Embedding {
                    path: cell.to_owned(),
                    source: "a convolution output is not finite".into(),
                });
            }
            Ok((channels, values))
        })
        .collect()
}

/// Measures a model's [`FeatureStats`] one image at a time (the training images are many: they are not
/// held in memory), through the same preprocessing as `classify`.
pub struct FeatureMeter {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    tensors: Vec<String>,
    moments: Vec<Moments>,
    images: usize,
    /// The card's stain reference, applied to every image as the classifier does.
    stain: Option<crate::stain::StainNorm>,
}

impl FeatureMeter {
    /// A meter for every convolution output of `model`.
    pub fn new(model: &ModelBytes) -> Result<Self, AdaptError> {
        let path = model.path.clone();
        let proto = pb::ModelProto::decode(model.onnx.as_slice())
            .map_err(|e| graph_err(&path, format!("not an ONNX protobuf: {e}")))?;
        let mut graph = proto
            .graph
            .clone()
            .ok_or_else(|| graph_err(&path, "no graph"))?;
        let tensors = conv_outputs(&graph);
        if tensors.is_empty() {
            return Err(graph_err(&path, "no convolution to measure"));
        }
        graph.output = tensors.iter().map(|t| float_value(t)).collect();
        let plan = runnable(
            &path,
            &proto,
            graph,
            "the graph read out at its convolutions",
        )?;
        Ok(FeatureMeter {
            moments: vec![Moments::default(); tensors.len()],
            stain: model.card.stain_norm.clone(),
            path,
            plan,
            tensors,
            images: 0,
        })
    }

    /// Adds one image (`path` names it in errors).
    pub fn add(&mut self, path: &Path, frame: &Frame) -> Result<(), AdaptError> {
        let outs = run_outputs(&self.plan, path, &cell_chw(self.stain.as_ref(), frame))?;
        for ((channels, values), m) in outs.iter().zip(&mut self.moments) {
            m.add(values, *channels, 1.0);
        }
        self.images += 1;
        Ok(())
    }

    /// The statistics of the images added, `source` saying which they were.
    pub fn finish(self, source: &str) -> Result<FeatureStats, AdaptError> {
        if self.images == 0 {
            return Err(graph_err(&self.path, "no image measured"));
        }
        Ok(FeatureStats {
            source: source.to_string(),
            images: self.images,
            layers: self
                .tensors
                .iter()
                .zip(&self.moments)
                .map(|(t, m)| m.stats(t))
                .collect(),
        })
    }
}

/// An integer attribute.
fn int_attribute(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// Adds to `graph` the features [`Method::LayersHead`] fits its head on: for every convolution output, in
/// graph order, `Relu`, `GlobalAveragePool` and `Flatten` (one value per channel), then `Concat` with the
/// head's embedding last. Returns `head` widened to read them (the base weights on the embedding, zero on
/// the pooled values) and the number of convolutions pooled. `probe` (one model input) tells their widths.
fn pool_layers(
    path: &Path,
    model: &pb::ModelProto,
    graph: &mut pb::GraphProto,
    head: &Head,
    probe: &[f32],
) -> Result<(Head, usize), AdaptError> {
    let tensors = conv_outputs(graph);
    if tensors.is_empty() {
        return Err(graph_err(path, "no convolution to pool for layers-head"));
    }
    let mut read = graph.clone();
    read.output = tensors.iter().map(|t| float_value(t)).collect();
    let plan = runnable(path, model, read, "the graph read out at its convolutions")?;
    let pooled: usize = run_outputs(&plan, path, probe)?
        .iter()
        .map(|(c, _)| c)
        .sum();
    let mut parts = Vec::with_capacity(tensors.len() + 1);
    for t in &tensors {
        let (relu, gap, flat) = (
            format!("site/layers/{t}/relu"),
            format!("site/layers/{t}/pool"),
            format!("site/layers/{t}/flat"),
        );
        graph.node.push(node("Relu", &[t], &relu));
        graph.node.push(node("GlobalAveragePool", &[&relu], &gap));
        let mut f = node("Flatten", &[&gap], &flat);
        f.attribute.push(int_attribute("axis", 1));
        graph.node.push(f);
        parts.push(flat);
    }
    parts.push(head.embedding.clone());
    let features = "site/layers/features";
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut cat = node("Concat", &refs, features);
    cat.attribute.push(int_attribute("axis", 1));
    graph.node.push(cat);
    let classes = head.bias.len();
    let mut weight = vec![0f32; pooled * classes];
    weight.extend_from_slice(&head.weight);
    let widened = Head {
        embedding: features.to_string(),
        dim: pooled + head.dim,
        weight,
        bias: head.bias.clone(),
        nodes: head.nodes.clone(),
    };
    Ok((widened, tensors.len()))
}

/// Brings every convolution output of `graph` from its statistics on the lab's `samples` back to
/// `reference`'s (the training images'), per channel: `x' = (x − m_lab) · s_train / s_lab + m_train`, a `Mul`
/// and an `Add` after the convolution. One layer at a time, in graph order, each measured with the layers
/// before it already corrected (as the batch statistics of AdaBN are); when every cell is typed each class
/// weighs the same, as in the balanced training set, otherwise each cell does. Returns the number of layers
/// corrected.
fn renormalise(
    path: &Path,
    model: &pb::ModelProto,
    graph: &mut pb::GraphProto,
    reference: &FeatureStats,
    samples: &[(&PathBuf, Vec<f32>, Option<usize>)],
    classes: usize,
) -> Result<usize, AdaptError> {
    let mut per_class = vec![0usize; classes];
    samples
        .iter()
        .filter_map(|s| s.2)
        .for_each(|c| per_class[c] += 1);
    let typed = samples.iter().all(|s| s.2.is_some());
    let weight = |c: Option<usize>| match c {
        Some(c) if typed => 1.0 / per_class[c] as f64,
        _ => 1.0,
    };
    for layer in &reference.layers {
        let t = &layer.tensor;
        let at = graph
            .node
            .iter()
            .position(|n| n.op_type == "Conv" && n.output.first() == Some(t))
            .ok_or_else(|| {
                graph_err(
                    path,
                    format!("the card's feature_stats name {t}, which no convolution of the graph computes"),
                )
            })?;
        let mut read = graph.clone();
        read.output = vec![float_value(t)];
        let plan = runnable(path, model, read, &format!("the graph read out at {t}"))?;
        let mut m = Moments::default();
        for (p, chw, c) in samples {
            let (channels, values) = run_outputs(&plan, p, chw)?.swap_remove(0);
            if channels != layer.mean.len() || layer.std.len() != channels {
                return Err(graph_err(
                    path,
                    format!(
                        "{t} has {channels} channels; the card's feature_stats give {}",
                        layer.mean.len()
                    ),
                ));
            }
            m.add(&values, channels, weight(*c));
        }
        let lab = m.stats(t);
        let scale: Vec<f32> = lab
            .std
            .iter()
            .zip(&layer.std)
            .map(|(&s, &r)| if s > 1e-6 { r / s } else { 1.0 })
            .collect();
        let shift: Vec<f32> = (0..scale.len())
            .map(|c| layer.mean[c] - lab.mean[c] * scale[c])
            .collect();
        let (s_name, b_name) = (
            format!("site/norm/{t}/scale"),
            format!("site/norm/{t}/shift"),
        );
        let (scaled, out) = (
            format!("site/norm/{t}/scaled"),
            format!("site/norm/{t}/output"),
        );
        for n in &mut graph.node {
            for i in &mut n.input {
                if i == t {
                    *i = out.clone();
                }
            }
        }
        let dims = [1, scale.len(), 1, 1];
        graph.initializer.push(float_tensor(&s_name, &dims, &scale));
        graph.initializer.push(float_tensor(&b_name, &dims, &shift));
        graph.node.splice(
            at + 1..at + 1,
            [
                node("Mul", &[t, &s_name], &scaled),
                node("Add", &[&scaled, &b_name], &out),
            ],
        );
    }
    Ok(reference.layers.len())
}

/// A fitted head: `W` (`dim × classes`) and `b`.
#[derive(Clone, Debug)]
struct Fit {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Fit {
    /// `row · W + b` into `out` (one value per class).
    fn logits(&self, row: &[f32], out: &mut [f32]) {
        // Row-major over `W`'s contiguous class entries: the same sums in the same order as one dot product
        // per class, but without a strided walk.
        out.fill(0.0);
        for (v, w) in row.iter().zip(self.weight.chunks_exact(out.len())) {
            out.iter_mut().zip(w).for_each(|(o, w)| *o += v * w);
        }
        out.iter_mut().zip(&self.bias).for_each(|(o, b)| *o += b);
    }
}

/// Class-balanced multinomial logistic regression on `x` (rows of `dim`) with labels `y`, starting from and
/// pulled toward `prior` with strength `lambda` (L2 on the difference), by gradient descent with the step
/// from the loss's curvature bound (convex: it converges).
fn fit_head(x: &[Vec<f32>], y: &[usize], classes: usize, prior: &Fit, lambda: f32) -> Fit {
    let mut per_class = vec![0usize; classes];
    y.iter().for_each(|&c| per_class[c] += 1);
    let present = per_class.iter().filter(|&&n| n > 0).count() as f32;
    let weight_of = |c: usize| 1.0 / (present * per_class[c] as f32);
    let max_norm = x
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f32>() + 1.0)
        .fold(0f32, f32::max);
    let step = 1.0 / (0.5 * max_norm + lambda);
    let mut fit = prior.clone();
    let mut logits = vec![0f32; classes];
    let mut g = vec![0f32; classes];
    for _ in 0..ITERATIONS {
        let mut gw: Vec<f32> = fit
            .weight
            .iter()
            .zip(&prior.weight)
            .map(|(w, p)| lambda * (w - p))
            .collect();
        let mut gb: Vec<f32> = fit
            .bias
            .iter()
            .zip(&prior.bias)
            .map(|(b, p)| lambda * (b - p))
            .collect();
        for (row, &label) in x.iter().zip(y) {
            fit.logits(row, &mut logits);
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            let w = weight_of(label);
            for k in 0..classes {
                let p = (logits[k] - max).exp() / sum;
                g[k] = w * (p - if k == label { 1.0 } else { 0.0 });
                gb[k] += g[k];
            }
            for (v, gw) in row.iter().zip(gw.chunks_exact_mut(classes)) {
                gw.iter_mut().zip(&g).for_each(|(gw, g)| *gw += g * v);
            }
        }
        fit.weight
            .iter_mut()
            .zip(&gw)
            .for_each(|(w, g)| *w -= step * g);
        fit.bias
            .iter_mut()
            .zip(&gb)
            .for_each(|(b, g)| *b -= step * g);
    }
    fit
}

fn predict(fit: &Fit, row: &[f32], classes: usize) -> usize {
    let mut logits = vec![0f32; classes];
    fit.logits(row, &mut logits);
    cell::argmax(&logits).map_or(0, |(k, _)| k)
}

/// The prior strength among [`PRIOR_CANDIDATES`] with the best class-balanced accuracy over [`FOLDS`]
/// stratified folds of the calibration cells (the smallest on ties). `fold[i]` is row `i`'s fold: every view
/// of one cell is in the same fold, so no cell is scored by a head that saw it.
fn choose_lambda(
    x: &[Vec<f32>],
    y: &[usize],
    fold: &[usize],
    classes: usize,
    prior: &Fit,
    scale: f32,
) -> f32 {
    let mut best = (f32::NEG_INFINITY, PRIOR_CANDIDATES[0] * scale);
    for &c in &PRIOR_CANDIDATES {
        let lambda = c * scale;
        let mut hit = vec![0f32; classes];
        let mut seen = vec![0f32; classes];
        for f in 0..FOLDS {
            let (train, test): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| fold[i] != f);
            if test.is_empty() || train.is_empty() {
                continue;
            }
            let tx: Vec<Vec<f32>> = train.iter().map(|&i| x[i].clone()).collect();
            let ty: Vec<usize> = train.iter().map(|&i| y[i]).collect();
            let m = fit_head(&tx, &ty, classes, prior, lambda);
            for &i in &test {
                seen[y[i]] += 1.0;
                hit[y[i]] += f32::from(u8::from(predict(&m, &x[i], classes) == y[i]));
            }
        }
        let present: Vec<f32> = hit
            .iter()
            .zip(&seen)
            .filter(|(_, s)| **s > 0.0)
            .map(|(h, s)| h / s)
            .collect();
        let score = present.iter().sum::<f32>() / present.len().max(1) as f32;
        if score > best.0 + 1e-6 {
            best = (score, lambda);
        }
    }
    best.1
}

/// Adapts `base` to the lab of `cells` with `method`, its head fitted on `views` of each cell; `date` goes
/// on the card (RFC 3339). Returns the new model (verified: it loads as a [`Classifier`]).
pub fn adapt(
    base: &ModelBytes,
    cells: &SiteCells,
    method: Method,
    views: Views,
    date: &str,
) -> Result<ModelBytes, AdaptError> {
    let path = &base.path;
    let classes = base.card.classes.len();
    let model = pb::ModelProto::decode(base.onnx.as_slice())
        .map_err(|e| graph_err(path, format!("not an ONNX protobuf: {e}")))?;
    let mut graph = model
        .graph
        .clone()
        .ok_or_else(|| graph_err(path, "no graph"))?;
    if graph.input.len() != 1 {
        return Err(graph_err(path, "expected one graph input"));
    }
    let head = find_head(path, &graph, classes)?;
    let stain = base.card.stain_norm.as_ref();
    if method.fits_head() && !cells.untyped.is_empty() {
        return Err(AdaptError::Untyped {
            method,
            untyped: cells.untyped.len(),
        });
    }
    let samples: Vec<(&PathBuf, Vec<f32>, Option<usize>)> = cells
        .cells
        .iter()
        .enumerate()
        .flat_map(|(c, v)| v.iter().map(move |(p, f)| (p, cell_chw(stain, f), Some(c))))
        .chain(
            cells
                .untyped
                .iter()
                .map(|(p, f)| (p, cell_chw(stain, f), None)),
        )
        .collect();
    if samples.is_empty() {
        return Err(graph_err(path, "no calibration cells"));
    }

    let colour = match method {
        Method::Head | Method::NormHead | Method::LayersHead | Method::Norm => None,
        Method::ColourHead => {
            let inputs: Vec<Vec<f32>> = samples.iter().map(|s| s.1.clone()).collect();
            let (mean, std) = channel_stats(&inputs);
            let scale = std.map(|s| 1.0 / s);
            let shift = [0, 1, 2].map(|c| -mean[c] / std[c]);
            prepend_colour(&mut graph, scale, shift);
            Some(crate::model::SiteColour { mean, std })
        }
    };
    let renormalised = match method {
        Method::NormHead | Method::Norm => {
            let reference = base
                .card
                .feature_stats
                .as_ref()
                .ok_or_else(|| AdaptError::NoFeatureStats { path: path.clone() })?;
            Some(renormalise(
                path, &model, &mut graph, reference, &samples, classes,
            )?)
        }
        Method::Head | Method::ColourHead | Method::LayersHead => None,
    };
    let (head, layers) = if method == Method::LayersHead {
        let (h, n) = pool_layers(path, &model, &mut graph, &head, &samples[0].1)?;
        (h, Some(n))
    } else {
        (head, None)
    };

    // The new head (every method but `norm`, which keeps the base model's).
    let (g, prior) = if method.fits_head() {
        let (g, prior) = refit_head(path, &model, &graph, &head, &samples, classes, views)?;
        (g, Some(prior))
    } else {
        (graph, None)
    };
    let onnx = encode(&model, g);

    let mut card = base.card.clone();
    card.name = format!("{}-site", base.card.name);
    card.sha256 = sha256_hex(&onnx);
    card.metrics = serde_json::Value::Null;
    card.latency = serde_json::Value::Null;
    card.adaptation = Some(Adaptation {
        method,
        views,
        base: base.card.id(),
        cells: cells.counts(&base.card.classes),
        untyped: cells.untyped.len(),
        prior,
        colour,
        renormalised,
        layers,
        date: date.to_string(),
    });
    let adapted = ModelBytes {
        onnx,
        card,
        path: path.with_file_name(format!("{}-site.onnx", base.card.name)),
    };
    Classifier::from_verified(adapted.clone())?;
    Ok(adapted)
}

/// `graph` with its `head` replaced by a float `MatMul` + `Add` fitted on the embeddings of `views` of the
/// typed `samples`; with the prior strength chosen (a multiple of the mean squared standardised embedding
/// norm).
fn refit_head(
    path: &Path,
    model: &pb::ModelProto,
    graph: &pb::GraphProto,
    head: &Head,
    samples: &[(&PathBuf, Vec<f32>, Option<usize>)],
    classes: usize,
    views: Views,
) -> Result<(pb::GraphProto, f32), AdaptError> {
    // Embeddings: the graph without its head, the head's input as the output.
    let mut trunk = without_head(graph, head);
    trunk.output = vec![float_output(&head.embedding, &[1, head.dim])];
    let trunk_plan = runnable(path, model, trunk, "the graph without its head")?;
    let rows = samples.len() * views.count();
    let mut x = Vec::with_capacity(rows);
    let mut y = Vec::with_capacity(rows);
    let mut fold = Vec::with_capacity(rows);
    // Stratified fold of each cell: its rank within its class, modulo the number of folds.
    let mut rank = vec![0usize; classes];
    let side = preprocess::INPUT_SHAPE[3];
    for ((p, chw, c), k) in samples
        .iter()
        .flat_map(|s| (0..views.count()).map(move |k| (s, k)))
    {
        let err = |e: TractError| AdaptError::Embedding {
            path: (*p).clone(),
            source: e.into(),
        };
        // `adapt` refuses untyped cells for the head methods before this.
        let Some(c) = *c else {
            return Err(graph_err(path, "an untyped cell in a head fit"));
        };
        if k == 0 {
            rank[c] += 1;
        }
        let view = if k == 0 {
            chw.clone()
        } else {
            dihedral(chw, side, k)
        };
        let input = Tensor::from_shape(&preprocess::INPUT_SHAPE, &view).map_err(err)?;
        let out = trunk_plan.run(tvec!(input.into_tvalue())).map_err(err)?;
        let emb: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .map_err(err)?
            .iter()
            .copied()
            .collect();
        if emb.len() != head.dim || emb.iter().any(|v| !v.is_finite()) {
            return Err(graph_err(
                path,
                format!(
                    "{}: the embedding is not {} finite values",
                    p.display(),
                    head.dim
                ),
            ));
        }
        x.push(emb);
        y.push(c);
        fold.push(rank[c] % FOLDS);
    }

    // Each embedding dimension standardised on the calibration cells (the fit is then well conditioned);
    // the base head is carried into those coordinates exactly, and the fit folded back after.
    let dim = head.dim;
    let n = x.len() as f32;
    let mu: Vec<f32> = (0..dim)
        .map(|d| x.iter().map(|r| r[d]).sum::<f32>() / n)
        .collect();
    let sd: Vec<f32> = (0..dim)
        .map(|d| {
            let v = x.iter().map(|r| (r[d] - mu[d]).powi(2)).sum::<f32>() / n;
            if v > 1e-12 {
                v.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let z: Vec<Vec<f32>> = x
        .iter()
        .map(|r| (0..dim).map(|d| (r[d] - mu[d]) / sd[d]).collect())
        .collect();
    let prior = Fit {
        weight: (0..dim * classes)
            .map(|i| head.weight[i] * sd[i / classes])
            .collect(),
        bias: (0..classes)
            .map(|k| {
                head.bias[k]
                    + (0..dim)
                        .map(|d| mu[d] * head.weight[d * classes + k])
                        .sum::<f32>()
            })
            .collect(),
    };
    let scale = z
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f32>())
        .sum::<f32>()
        / n;
    let lambda = choose_lambda(&z, &y, &fold, classes, &prior, scale);
    let fitted = fit_head(&z, &y, classes, &prior, lambda);
    let fit = Fit {
        weight: (0..dim * classes)
            .map(|i| fitted.weight[i] / sd[i / classes])
            .collect(),
        bias: (0..classes)
            .map(|k| {
                fitted.bias[k]
                    - (0..dim)
                        .map(|d| mu[d] * fitted.weight[d * classes + k] / sd[d])
                        .sum::<f32>()
            })
            .collect(),
    };

    // The adapted graph: the old head out, a float MatMul + Add in.
    let mut g = without_head(graph, head);
    let output = graph.output[0].name.clone();
    let (w_name, b_name, mm) = ("site/head/weight", "site/head/bias", "site/head/matmul");
    g.initializer
        .push(float_tensor(w_name, &[head.dim, classes], &fit.weight));
    g.initializer
        .push(float_tensor(b_name, &[classes], &fit.bias));
    g.node.push(node("MatMul", &[&head.embedding, w_name], mm));
    g.node.push(node("Add", &[mm, b_name], &output));
    let used: std::collections::HashSet<&String> =
        g.node.iter().flat_map(|n| n.input.iter()).collect();
    let keep: Vec<pb::TensorProto> = g
        .initializer
        .iter()
        .filter(|t| used.contains(&t.name))
        .cloned()
        .collect();
    g.initializer = keep;
    Ok((g, lambda / scale))
}

/// Writes `out` (`.onnx`) and its card beside it; the card last, so a model file without a card is the only
/// partial state a crash can leave (and [`crate::model::ModelSource::load`] refuses it by name).
pub fn write(model: &ModelBytes, out: &Path) -> Result<(), AdaptError> {
    let card = crate::model::card_path(out);
    let text = serde_json::to_string_pretty(&model.card).expect("a card serialises");
    for (path, bytes) in [
        (out.to_path_buf(), model.onnx.clone()),
        (card, text.into_bytes()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| AdaptError::Write { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelSource;

    fn cells_dir(name: &str, classes: &[(&str, usize)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("leukoscope-adapt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (i, (class, n)) in classes.iter().enumerate() {
            let sub = dir.join(class);
            std::fs::create_dir_all(&sub).unwrap();
            for k in 0..*n {
                let shade = (40 * i + 7 * k) as u8;
                let f = Frame::filled(120, 120, [200 - shade, 120 + shade / 2, 190]).unwrap();
                std::fs::write(sub.join(format!("{k}.png")), f.to_png().unwrap()).unwrap();
            }
        }
        dir
    }

    #[test]
    fn bad_cell_folders_are_one_clear_error_each() {
        let base = ModelSource::Embedded.load().unwrap();
        let classes = &base.card.classes;
        let unknown = cells_dir("unknown", &[("neutrophil", 3), ("BLAST", 3)]);
        let e = SiteCells::read(&unknown, classes).unwrap_err().to_string();
        assert!(e.contains("BLAST") && e.contains("not a class"), "{e}");
        let few = cells_dir("few", &[("Neutrophil", 2)]);
        let e = SiteCells::read(&few, classes).unwrap_err().to_string();
        assert!(
            e.contains("2 cell(s) of NEUTROPHIL") && e.contains("at least 3"),
            "{e}"
        );
        let empty = cells_dir("empty", &[("LYMPHOCYTE", 0)]);
        let e = format!(
            "{:#}",
            anyhow::Error::from(SiteCells::read(&empty, classes).unwrap_err())
        );
        assert!(
            e.contains("LYMPHOCYTE has no cells") && e.contains("no images"),
            "{e}"
        );
        let none = cells_dir("none", &[]);
        std::fs::create_dir_all(&none).unwrap();
        let e = SiteCells::read(&none, classes).unwrap_err().to_string();
        assert!(e.contains("no class folders"), "{e}");
        let bad = cells_dir("bad", &[("MONOCYTE", 3)]);
        std::fs::write(bad.join("MONOCYTE/0.png"), b"not a png").unwrap();
        let e = SiteCells::read(&bad, classes).unwrap_err().to_string();
        assert!(
            e.contains("0.png") && e.contains("not a decodable image"),
            "{e}"
        );
        for d in [unknown, few, empty, none, bad] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn the_dihedral_views_are_the_eight_symmetries_of_the_square() {
        let n = 5;
        let image: Vec<f32> = (0..2 * n * n).map(|v| v as f32).collect();
        let views: Vec<Vec<f32>> = (0..8).map(|k| dihedral(&image, n, k)).collect();
        assert_eq!(views[0], image);
        for (k, v) in views.iter().enumerate() {
            // A permutation within each channel.
            for (c, plane) in v.chunks_exact(n * n).enumerate() {
                let mut sorted = plane.to_vec();
                sorted.sort_by(f32::total_cmp);
                assert_eq!(sorted, image[c * n * n..(c + 1) * n * n], "view {k}");
            }
            for w in &views[..k] {
                assert_ne!(v, w, "view {k} repeats another");
            }
        }
        // Bit 0 mirrors the columns, bit 2 transposes.
        assert_eq!(views[1][0], image[n - 1]);
        assert_eq!(views[4][1], image[n]);
        // Two transposes undo each other; the centre pixel never moves.
        assert_eq!(dihedral(&views[4], n, 4), image);
        assert!(views.iter().all(|v| v[12] == image[12]));
    }

    #[test]
    fn cards_written_before_views_read_as_one_view() {
        let a = Adaptation {
            method: Method::Head,
            views: Views::Dihedral,
            base: crate::model::ModelId {
                name: "edge16-int8-weights".into(),
                sha256: "0".repeat(64),
            },
            cells: BTreeMap::from([("MONOCYTE".to_string(), 3)]),
            untyped: 0,
            prior: Some(1.0),
            colour: None,
            renormalised: None,
            layers: None,
            date: "2026-12-06T00:00:00Z".into(),
        };
        let mut card = serde_json::to_value(&a).unwrap();
        assert_eq!(card["views"], "dihedral");
        card.as_object_mut().unwrap().remove("views");
        let old: Adaptation = serde_json::from_value(card).unwrap();
        assert_eq!(old.views, Views::One);
        assert_eq!(
            Adaptation {
                views: Views::One,
                ..a
            },
            old
        );
    }

    /// The embedded model without its card's stain reference: the synthetic cells below are flat colours,
    /// which Reinhard's per-image statistics would all bring to the reference's one colour (and the
    /// read-out below feeds the net unnormalised inputs); these tests are of the calibration's mechanics.
    fn unstained_embedded() -> ModelBytes {
        let mut base = ModelSource::Embedded.load().unwrap();
        base.card.stain_norm = None;
        base
    }

    /// Adapts the embedded model with `method` on `views` of twelve flat synthetic cells of four distinct
    /// colours (three per class, folder names in any case) and checks the card and that the refitted head
    /// separates them.
    fn assert_learns_the_site_cells(name: &str, method: Method, views: Views) {
        let base = unstained_embedded();
        let dir = cells_dir(
            name,
            &[
                ("EOSINOPHIL", 3),
                ("lymphocyte", 3),
                ("Monocyte", 3),
                ("NEUTROPHIL", 3),
            ],
        );
        let cells = SiteCells::read(&dir, &base.card.classes).unwrap();
        let m = adapt(&base, &cells, method, views, "2026-12-02T00:00:00Z").unwrap();
        let a = m.card.adaptation.clone().unwrap();
        assert_eq!(a.method, method);
        assert_eq!(a.views, views);
        assert_eq!(a.base, base.card.id());
        assert_eq!(a.cells["MONOCYTE"], 3);
        assert_eq!(m.card.sha256, sha256_hex(&m.onnx));
        let c = Classifier::from_verified(m).unwrap();
        let right = cells
            .cells
            .iter()
            .enumerate()
            .flat_map(|(k, v)| v.iter().map(move |(_, f)| (k, f)))
            .filter(|(k, f)| c.classify_frame(f).unwrap().predicted == *k)
            .count();
        assert!(
            right >= 10,
            "{method}, {views}: {right}/12 calibration cells typed as labelled"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    // Every method once. The views only change which rows the head is fitted on, the same code for every
    // method, so `head` takes the 8 views and the others one.
    #[test]
    fn head_on_the_eight_views_learns_the_site_cells_and_names_its_base() {
        assert_learns_the_site_cells("fit-head", Method::Head, Views::Dihedral);
    }

    #[test]
    fn colour_head_learns_the_site_cells_and_names_its_base() {
        assert_learns_the_site_cells("fit-colour", Method::ColourHead, Views::One);
    }

    #[test]
    fn norm_head_learns_the_site_cells_and_names_its_base() {
        assert_learns_the_site_cells("fit-norm", Method::NormHead, Views::One);
    }

    #[test]
    fn layers_head_learns_the_site_cells_and_names_its_base() {
        assert_learns_the_site_cells("fit-layers", Method::LayersHead, Views::One);
    }

    /// `layers-head`'s features, read out of the adapted graph, are every convolution's positive part
    /// averaged per channel (computed here from the base graph's own convolution outputs), in graph order,
    /// then the base embedding; and the new head reads all of them.
    #[test]
    fn layers_head_reads_every_convolution_pooled_beside_the_embedding() {
        let base = ModelSource::Embedded.load().unwrap();
        let cells = sample_cells(&base.card.classes);
        let m = adapt(
            &base,
            &cells,
            Method::LayersHead,
            Views::One,
            "2026-12-07T00:00:00Z",
        )
        .unwrap();
        let proto = pb::ModelProto::decode(base.onnx.as_slice()).unwrap();
        let g = proto.graph.clone().unwrap();
        let head = find_head(&base.path, &g, base.card.classes.len()).unwrap();
        let convs = conv_outputs(&g);
        assert_eq!(
            m.card.adaptation.as_ref().unwrap().layers,
            Some(convs.len())
        );
        let mut read = g.clone();
        read.output = convs
            .iter()
            .chain([&head.embedding])
            .map(|t| float_value(t))
            .collect();
        let base_plan = runnable(&base.path, &proto, read, "base").unwrap();
        let adapted = pb::ModelProto::decode(m.onnx.as_slice()).unwrap();
        let mut ag = adapted.graph.clone().unwrap();
        assert_eq!(
            ag.node
                .iter()
                .filter(|n| n.op_type == "GlobalAveragePool")
                .count(),
            g.node
                .iter()
                .filter(|n| n.op_type == "GlobalAveragePool")
                .count()
                + convs.len()
        );
        ag.output = vec![float_value("site/layers/features")];
        let features = runnable(&m.path, &adapted, ag, "adapted").unwrap();
        let w = initializer(adapted.graph.as_ref().unwrap(), "site/head/weight").unwrap();
        let (p, f) = &cells.cells[2][0];
        let chw = cell_chw(base.card.stain_norm.as_ref(), f);
        let expected: Vec<f32> = run_outputs(&base_plan, p, &chw)
            .unwrap()
            .iter()
            .enumerate()
            .flat_map(|(i, (c, v))| {
                if i == convs.len() {
                    return v.clone();
                }
                let hw = v.len() / c;
                v.chunks_exact(hw)
                    .map(|ch| ch.iter().map(|x| x.max(0.0)).sum::<f32>() / hw as f32)
                    .collect()
            })
            .collect();
        let got = run_outputs(&features, p, &chw).unwrap().swap_remove(0).1;
        assert_eq!(got.len(), expected.len());
        assert_eq!(w.dims, [got.len() as i64, base.card.classes.len() as i64]);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "feature {i}: {g} vs {e}"
            );
        }
    }

    /// The twelve bundled cells (three per class) of the training lab.
    fn sample_cells(classes: &Classes) -> SiteCells {
        SiteCells::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/cells"),
            classes,
        )
        .unwrap()
    }

    /// The site's per-channel `Mul` and `Add` constants that `norm-head` put after each convolution.
    fn norm_constants(m: &ModelBytes, tensor: &str) -> (Vec<f32>, Vec<f32>) {
        let g = pb::ModelProto::decode(m.onnx.as_slice())
            .unwrap()
            .graph
            .unwrap();
        let get = |what: &str| {
            let t = initializer(&g, &format!("site/norm/{tensor}/{what}")).unwrap();
            tensor_f32(&m.path, t).unwrap().1
        };
        (get("scale"), get("shift"))
    }

    #[test]
    fn norm_head_changes_nothing_on_cells_that_match_the_training_statistics() {
        let mut base = ModelSource::Embedded.load().unwrap();
        let cells = sample_cells(&base.card.classes);
        // The reference measured on these very cells (three per class: the class-balanced statistics are
        // the plain ones), so every layer's correction must be the identity.
        let mut meter = FeatureMeter::new(&base).unwrap();
        for (p, f) in cells.cells.iter().flatten() {
            meter.add(p, f).unwrap();
        }
        let stats = meter.finish("the bundled cells").unwrap();
        assert_eq!(stats.images, 12);
        assert_eq!(
            stats.layers.len(),
            base.card.feature_stats.as_ref().unwrap().layers.len()
        );
        base.card.feature_stats = Some(stats.clone());
        let m = adapt(
            &base,
            &cells,
            Method::NormHead,
            Views::One,
            "2026-12-04T00:00:00Z",
        )
        .unwrap();
        assert_eq!(
            m.card.adaptation.as_ref().unwrap().renormalised,
            Some(stats.layers.len())
        );
        for layer in &stats.layers {
            let (scale, shift) = norm_constants(&m, &layer.tensor);
            assert_eq!(scale.len(), layer.mean.len());
            for c in 0..scale.len() {
                if layer.std[c] > 1e-3 {
                    assert!(
                        (scale[c] - 1.0).abs() < 1e-3,
                        "{} channel {c}: scale {}",
                        layer.tensor,
                        scale[c]
                    );
                }
                assert!(
                    shift[c].abs() < 1e-3 * (1.0 + layer.mean[c].abs()),
                    "{} channel {c}: shift {}",
                    layer.tensor,
                    shift[c]
                );
            }
        }
    }

    #[test]
    fn norm_head_brings_each_convolution_to_the_training_statistics() {
        let base = unstained_embedded();
        let reference = base
            .card
            .feature_stats
            .clone()
            .expect("the default card carries feature_stats");
        let cells = sample_cells(&base.card.classes);
        let m = adapt(
            &base,
            &cells,
            Method::NormHead,
            Views::One,
            "2026-12-04T00:00:00Z",
        )
        .unwrap();
        // Read the corrected outputs of every convolution on the calibration cells: their statistics are
        // the training images'.
        let proto = pb::ModelProto::decode(m.onnx.as_slice()).unwrap();
        let mut g = proto.graph.clone().unwrap();
        g.output = reference
            .layers
            .iter()
            .map(|l| float_value(&format!("site/norm/{}/output", l.tensor)))
            .collect();
        let plan = runnable(&m.path, &proto, g, "the adapted graph read out").unwrap();
        let mut moments = vec![Moments::default(); reference.layers.len()];
        for (p, f) in cells.cells.iter().flatten() {
            for ((ch, v), mo) in run_outputs(&plan, p, &cell_chw(None, f))
                .unwrap()
                .iter()
                .zip(&mut moments)
            {
                mo.add(v, *ch, 1.0);
            }
        }
        let mut moved = 0;
        for (layer, mo) in reference.layers.iter().zip(&moments) {
            let got = mo.stats(&layer.tensor);
            let (scale, _) = norm_constants(&m, &layer.tensor);
            for (c, &sc) in scale.iter().enumerate() {
                let tol = 1e-3 * (1.0 + layer.std[c] + layer.mean[c].abs());
                assert!(
                    (got.mean[c] - layer.mean[c]).abs() < tol,
                    "{} channel {c}: mean {} against {}",
                    layer.tensor,
                    got.mean[c],
                    layer.mean[c]
                );
                if sc != 1.0 {
                    assert!(
                        (got.std[c] - layer.std[c]).abs() < tol,
                        "{} channel {c}: std {} against {}",
                        layer.tensor,
                        got.std[c],
                        layer.std[c]
                    );
                }
                moved += usize::from((sc - 1.0).abs() > 0.01);
            }
        }
        // The bundled cells are not the whole training set: the corrections are not all the identity.
        assert!(moved > 0);
    }

    #[test]
    fn norm_keeps_the_base_head_and_changes_nothing_on_cells_that_match_the_training_statistics() {
        let mut base = ModelSource::Embedded.load().unwrap();
        let typed = sample_cells(&base.card.classes);
        // The same twelve cells, untyped: each weighs the same, so the statistics measured on them are the
        // reference and every correction is the identity; the base head is kept, so the adapted model types
        // every cell as the base model does, with the same probabilities.
        let cells = SiteCells {
            cells: vec![Vec::new(); base.card.classes.len()],
            untyped: typed.cells.iter().flatten().cloned().collect(),
        };
        let mut meter = FeatureMeter::new(&base).unwrap();
        for (p, f) in &cells.untyped {
            meter.add(p, f).unwrap();
        }
        base.card.feature_stats = Some(meter.finish("the bundled cells").unwrap());
        let m = adapt(
            &base,
            &cells,
            Method::Norm,
            Views::One,
            "2026-12-07T00:00:00Z",
        )
        .unwrap();
        let a = m.card.adaptation.clone().unwrap();
        assert_eq!(a.method, Method::Norm);
        assert_eq!((a.untyped, a.prior), (12, None));
        assert!(a.cells.values().all(|&n| n == 0), "{:?}", a.cells);
        assert!(a.renormalised.is_some_and(|n| n > 0));
        let card = serde_json::to_value(&m.card).unwrap();
        assert_eq!(card["adaptation"]["untyped"], 12);
        assert!(card["adaptation"].get("prior").is_none(), "{card}");
        let adapted = Classifier::from_verified(m).unwrap();
        let before = Classifier::from_verified(base).unwrap();
        for (p, f) in &cells.untyped {
            let (x, y) = (
                before.classify_frame(f).unwrap(),
                adapted.classify_frame(f).unwrap(),
            );
            assert_eq!(x.predicted, y.predicted, "{}", p.display());
            for (u, v) in x.probs.iter().zip(&y.probs) {
                assert!(
                    (u - v).abs() < 1e-3,
                    "{}: {:?} against {:?}",
                    p.display(),
                    x,
                    y
                );
            }
        }
    }

    #[test]
    fn untyped_cells_are_one_clear_error_each() {
        let base = ModelSource::Embedded.load().unwrap();
        let classes = &base.card.classes;
        // Subfolders are read, their names not: 12 cells are too few.
        let few = cells_dir("untyped-few", &[("any", 6), ("BLAST", 6)]);
        let e = SiteCells::read_untyped(&few, classes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("12 untyped cell(s)") && e.contains("at least 20"),
            "{e}"
        );
        let none = cells_dir("untyped-none", &[("empty", 0)]);
        let e = format!(
            "{:#}",
            anyhow::Error::from(SiteCells::read_untyped(&none, classes).unwrap_err())
        );
        assert!(e.contains("no cells") && e.contains("no images"), "{e}");
        let bad = cells_dir("untyped-bad", &[("x", 20)]);
        std::fs::write(bad.join("x/7.png"), b"not a png").unwrap();
        let e = SiteCells::read_untyped(&bad, classes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("7.png") && e.contains("not a decodable image"),
            "{e}"
        );
        std::fs::write(
            bad.join("x/7.png"),
            Frame::filled(120, 120, [200, 120, 190])
                .unwrap()
                .to_png()
                .unwrap(),
        )
        .unwrap();
        let cells = SiteCells::read_untyped(&bad, classes).unwrap();
        assert_eq!((cells.len(), cells.untyped.len()), (20, 20));
        // A method that fits a head needs types.
        for method in [Method::Head, Method::ColourHead, Method::NormHead] {
            let e = adapt(&base, &cells, method, Views::One, "2026-12-07T00:00:00Z")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("needs typed cells") && e.contains("use `norm`"),
                "{e}"
            );
        }
        for d in [few, none, bad] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn norm_head_without_training_statistics_is_one_clear_error() {
        let mut base = ModelSource::Embedded.load().unwrap();
        base.card.feature_stats = None;
        let cells = sample_cells(&base.card.classes);
        let e = adapt(
            &base,
            &cells,
            Method::NormHead,
            Views::One,
            "2026-12-04T00:00:00Z",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no feature_stats") && e.contains("leukoscope-train feature-stats"),
            "{e}"
        );
        let mut other = ModelSource::Embedded.load().unwrap();
        other.card.feature_stats.as_mut().unwrap().layers[0].tensor = "nowhere".into();
        let e = adapt(
            &other,
            &cells,
            Method::NormHead,
            Views::One,
            "2026-12-04T00:00:00Z",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nowhere") && e.contains("no convolution"), "{e}");
    }
}
