//! Classification: a verified ONNX model run by tract on the CPU.
//!
//! This module knows models and tensors, never cameras: it takes `u8` inputs from [`crate::preprocess`] and
//! returns a [`Prediction`]: the probabilities of the card's classes and the type after the card's
//! unidentified threshold (the one typing rule every command applies).

use std::path::PathBuf;
use std::sync::Arc;

use tract_onnx::prelude::*;

pub use crate::cell::Prediction;
use crate::classes::Classes;
use crate::contain::contain;
use crate::frame::Frame;
use crate::model::{ModelBytes, ModelCard, ModelError, ModelSource};
use crate::preprocess;

/// A loaded, optimised tract plan and its card.
#[derive(Clone)]
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    card: ModelCard,
    path: PathBuf,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("path", &self.path)
            .field("card", &self.card.name)
            .finish()
    }
}

/// Why an inference failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: inference failed")]
pub struct InferenceError {
    path: PathBuf,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Classifier {
    /// Loads, verifies and optimises a model.
    pub fn load(source: &ModelSource) -> Result<Self, ModelError> {
        Classifier::from_verified(source.load()?)
    }

    /// The embedded default model.
    pub fn embedded() -> Result<Self, ModelError> {
        Classifier::load(&ModelSource::Embedded)
    }

    /// Builds the plan from bytes that already passed [`crate::model::verify`].
    ///
    /// A model a user brings is contained: a graph tract panics on, one whose tensors would need more than
    /// [`MAX_TENSOR_BYTES`], or one that gives non-finite or wrongly sized logits for a plain grey cell is
    /// one [`ModelError`] naming the file; nothing else changes (the embedded default stays usable).
    pub fn from_verified(model: ModelBytes) -> Result<Self, ModelError> {
        let path = model.path.clone();
        let onnx_err = |e: TractError| ModelError::Onnx {
            path: path.clone(),
            source: e.into(),
        };
        let incompatible = |reason: String| ModelError::Incompatible {
            path: path.clone(),
            reason,
        };
        let panicked = |what: &str, message: String| {
            incompatible(format!(
                "tract failed on this graph while {what}: {message}"
            ))
        };
        let inference =
            contain(|| tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(&model.onnx)))
                .map_err(|m| panicked("reading it", m))?
                .map_err(onnx_err)?;
        check_declared_input(&inference).map_err(incompatible)?;
        let typed = contain(|| {
            inference
                .with_input_fact(0, f32::fact(preprocess::INPUT_SHAPE).into())
                .and_then(|m| m.into_typed())
        })
        .map_err(|m| panicked("typing it", m))?
        .map_err(onnx_err)?;
        check_tensor_sizes(&typed).map_err(incompatible)?;
        let typed = contain(|| typed.into_optimized())
            .map_err(|m| panicked("optimising it", m))?
            .map_err(onnx_err)?;
        check_tensor_sizes(&typed).map_err(incompatible)?;
        if typed.inputs.len() != 1 || typed.outputs.len() != 1 {
            return Err(incompatible(format!(
                "expected 1 input and 1 output, found {} and {}",
                typed.inputs.len(),
                typed.outputs.len()
            )));
        }
        let out = typed.output_fact(0).map_err(onnx_err)?.clone();
        let classes = model.card.classes.len();
        let want: TVec<TDim> = tvec![1.into(), (classes as i64).into()];
        if out.shape.to_tvec() != want || out.datum_type != f32::datum_type() {
            return Err(incompatible(format!(
                "output is {:?} {:?}, expected f32 [1, {classes}] logits (the card lists {classes} \
                 classes: {})",
                out.datum_type, out.shape, model.card.classes
            )));
        }
        let plan = contain(|| typed.into_runnable())
            .map_err(|m| panicked("planning it", m))?
            .map_err(onnx_err)?;
        let classifier = Classifier {
            plan,
            card: model.card,
            path: path.clone(),
        };
        // One plain grey cell (the normalised mean: all zeros) through the plan before anything counts.
        let grey = vec![0.0; preprocess::INPUT_SHAPE.iter().product()];
        classifier
            .logits(&grey)
            .map_err(|e| incompatible(format!("{:#}", anyhow::Error::from(e))))?;
        Ok(classifier)
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The classes, in output order (the card's).
    pub fn classes(&self) -> &Classes {
        &self.card.classes
    }

    /// Where the model came from (for messages).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Logits for one normalised CHW input (`3 × INPUT × INPUT` values), one per class. A panic inside
    /// tract, or an output that is not one finite value per class, is an [`InferenceError`].
    pub fn logits(&self, chw: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| InferenceError {
            path: self.path.clone(),
            source,
        };
        let input = Tensor::from_shape(&preprocess::INPUT_SHAPE, chw).map_err(|e| err(e.into()))?;
        let out = contain(|| self.plan.run(tvec!(input.into_tvalue())))
            .map_err(|m| err(format!("tract panicked: {m}").into()))?
            .map_err(|e| err(e.into()))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| err(e.into()))?;
        let logits: Vec<f32> = view.iter().copied().collect();
        let classes = self.card.classes.len();
        if logits.len() != classes {
            return Err(err(format!(
                "the model gave {} values for {classes} classes",
                logits.len()
            )
            .into()));
        }
        if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
            return Err(err(format!(
                "the model gave a non-finite logit ({bad}): it is broken"
            )
            .into()));
        }
        Ok(logits)
    }

    /// Classifies a `u8` model input (an [`preprocess::INPUT`]-square image from [`preprocess::cell_input`]),
    /// unidentified below the card's threshold.
    pub fn classify_input(&self, input: &Frame) -> Result<Prediction, InferenceError> {
        self.classify_input_with(input, self.card.unidentified_threshold)
    }

    /// [`Classifier::classify_input`] with another unidentified threshold.
    pub fn classify_input_with(
        &self,
        input: &Frame,
        unidentified_threshold: f32,
    ) -> Result<Prediction, InferenceError> {
        let logits = self.logits(&self.input_chw(input))?;
        Ok(Prediction::from_logits(&logits, unidentified_threshold))
    }

    /// A `u8` model input as the net takes it: in the card's stain reference when it has one
    /// ([`crate::stain`]), then normalised ([`preprocess::normalize`]).
    pub fn input_chw(&self, input: &Frame) -> Vec<f32> {
        crate::stain::input_chw(self.card.stain_norm.as_ref(), input)
    }

    /// Classifies a frame holding one white cell (the Kaggle images): scale, locate, crop, classify.
    pub fn classify_frame(&self, frame: &Frame) -> Result<Prediction, InferenceError> {
        self.classify_input(&preprocess::frame_input(frame).0)
    }

    /// [`Classifier::classify_frame`] with step 1 done as `scaling` says.
    pub fn classify_frame_with(
        &self,
        frame: &Frame,
        scaling: preprocess::Scaling,
    ) -> Result<Prediction, InferenceError> {
        self.classify_input(&preprocess::frame_input_with(frame, scaling).0)
    }

    /// The red-cell diameter at this model's training scale: the card's, else
    /// [`preprocess::REFERENCE_RBC_PX`].
    pub fn reference_rbc_px(&self) -> f32 {
        self.card
            .rbc_diameter_px
            .unwrap_or(preprocess::REFERENCE_RBC_PX)
    }

    /// [`preprocess::Scaling::Rbc`] for a frame whose red cells measure `rbc_px` pixels, to this model's
    /// reference diameter.
    pub fn rbc_scaling(&self, rbc_px: f32) -> preprocess::Scaling {
        preprocess::Scaling::Rbc {
            rbc_px,
            reference_px: self.reference_rbc_px(),
        }
    }
}

/// Largest tensor a model's graph may hold (a weight or an activation): 256 MiB, four times the largest
/// of the report's three big nets' weight tensors. A graph that would need more is refused before tract
/// allocates it, rather than exhausting the device's memory.
pub const MAX_TENSOR_BYTES: u64 = 256 << 20;

/// Refuses a typed graph with a tensor over [`MAX_TENSOR_BYTES`] or of a size that is not a number.
fn check_tensor_sizes(model: &TypedModel) -> Result<(), String> {
    for node in &model.nodes {
        for (slot, outlet) in node.outputs.iter().enumerate() {
            let fact = &outlet.fact;
            let elements = fact
                .shape
                .iter()
                .try_fold(1u64, |acc, d| {
                    d.to_i64()
                        .ok()
                        .and_then(|v| u64::try_from(v).ok())
                        .and_then(|v| acc.checked_mul(v))
                })
                .ok_or_else(|| {
                    format!(
                        "node {:?} output {slot} has a shape that is not a plain size: {:?}",
                        node.name, fact.shape
                    )
                })?;
            let bytes = elements.saturating_mul(fact.datum_type.size_of() as u64);
            if bytes > MAX_TENSOR_BYTES {
                return Err(format!(
                    "node {:?} output {slot} would need {bytes} bytes ({:?}), more than the \
                     {MAX_TENSOR_BYTES} a model may use",
                    node.name, fact.shape
                ));
            }
        }
    }
    Ok(())
}

/// The graph's own declaration of its input must fit what this build feeds (one f32 `[1, 3, 128, 128]`
/// tensor; the batch may be symbolic): a model for another input size is refused by name rather than by a
/// shape error deep inside tract.
fn check_declared_input(model: &InferenceModel) -> Result<(), String> {
    use tract_onnx::tract_hir::infer::Factoid;
    if model.inputs.len() != 1 {
        return Err(format!(
            "expected 1 input, the graph has {}",
            model.inputs.len()
        ));
    }
    let fact = model.input_fact(0).map_err(|e| format!("{e:#}"))?;
    if let Some(dt) = fact.datum_type.concretize() {
        if dt != f32::datum_type() {
            return Err(format!("input is {dt:?}, expected f32"));
        }
    }
    if fact.shape.is_open() {
        return Ok(());
    }
    let want = preprocess::INPUT_SHAPE;
    let dims: Vec<Option<TDim>> = fact.shape.dims().map(Factoid::concretize).collect();
    let fits = dims.len() == want.len()
        && dims
            .iter()
            .zip(want)
            .enumerate()
            .all(|(i, (d, w))| match d {
                None => true,
                Some(TDim::Val(v)) => *v == w as i64,
                Some(_) => i == 0,
            });
    if fits {
        Ok(())
    } else {
        let shown: Vec<String> = dims
            .iter()
            .map(|d| d.as_ref().map_or("?".into(), |d| d.to_string()))
            .collect();
        Err(format!(
            "model input is [{}], this build feeds {want:?} (NCHW, {} px)",
            shown.join(", "),
            want[3]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_classifies_a_frame() {
        let c = Classifier::embedded().expect("embedded model loads");
        let f = Frame::filled(320, 240, [200, 180, 200]).unwrap();
        let p = c.classify_frame(&f).unwrap();
        assert_eq!(p.probs.len(), c.classes().len());
        assert!(p.probs.iter().all(|v| v.is_finite()));
        let threshold = c.card().unidentified_threshold;
        assert_eq!(p.class.is_some(), p.confidence >= threshold);
    }

    #[test]
    fn a_cards_stain_reference_is_applied_before_the_net() {
        // A cell-like input: violet nucleus on pink cytoplasm on pale plasma, with a yellow cast.
        let mut data = Vec::new();
        for y in 0..preprocess::INPUT {
            for x in 0..preprocess::INPUT {
                let r = ((x as f32 - 64.0).powi(2) + (y as f32 - 64.0).powi(2)).sqrt();
                let px: [u8; 3] = if r < 20.0 {
                    [120, 60, 110]
                } else if r < 40.0 {
                    [230, 170, 150]
                } else {
                    [250, 245, 175]
                };
                data.extend(px);
            }
        }
        let input = Frame::new(preprocess::INPUT, preprocess::INPUT, data).unwrap();
        let mut m = ModelSource::Embedded.load().unwrap();
        m.card.stain_norm = None;
        let plain = Classifier::from_verified(m.clone()).unwrap();
        let reference = crate::stain::StainNorm::Reinhard {
            mean: [-0.24, -0.02, 0.003],
            std: [0.1, 0.06, 0.004],
        };
        m.card.stain_norm = Some(reference.clone());
        let stained = Classifier::from_verified(m).unwrap();
        let moved = reference.apply(&input);
        assert_ne!(moved, input, "the reference changes this input");
        assert_eq!(
            stained.classify_input(&input).unwrap().probs,
            plain.classify_input(&moved).unwrap().probs
        );
        assert_eq!(stained.input_chw(&input), preprocess::normalize(&moved));
    }

    #[test]
    fn the_red_cell_reference_is_the_cards_else_the_constant() {
        let mut m = ModelSource::Embedded.load().unwrap();
        let c = Classifier::from_verified(m.clone()).unwrap();
        assert_eq!(c.reference_rbc_px(), preprocess::REFERENCE_RBC_PX);
        m.card.rbc_diameter_px = Some(30.0);
        let c = Classifier::from_verified(m).unwrap();
        assert_eq!(
            c.rbc_scaling(60.0),
            preprocess::Scaling::Rbc {
                rbc_px: 60.0,
                reference_px: 30.0
            }
        );
        // Scaling by image size is what `classify_frame` does.
        let f = Frame::filled(320, 240, [200, 180, 200]).unwrap();
        assert_eq!(
            c.classify_frame(&f).unwrap(),
            c.classify_frame_with(&f, preprocess::Scaling::FrameSize)
                .unwrap()
        );
    }

    #[test]
    fn random_bytes_model_is_a_clear_error() {
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut card = ModelSource::Embedded.load().unwrap().card;
        card.sha256 = crate::model::sha256_hex(&bytes);
        let m = ModelBytes {
            onnx: bytes,
            card,
            path: "random.onnx".into(),
        };
        let err = Classifier::from_verified(m).unwrap_err().to_string();
        assert!(err.contains("random.onnx"), "{err}");
    }

    #[test]
    fn a_model_with_nan_logits_is_refused_at_load() {
        let err = Classifier::from_verified(crate::testing::graphs::nan_logits()).unwrap_err();
        let msg = format!("{:#}", anyhow::Error::from(err));
        assert!(
            msg.contains("nan-logits.onnx") && msg.contains("non-finite"),
            "{msg}"
        );
    }

    #[test]
    fn a_graph_with_an_absurd_tensor_is_refused_before_it_is_allocated() {
        // 2^34 f32 = 64 GiB: tract folds the constant while typing the graph; its failed allocation is
        // contained (passing this test means the process survived it).
        let m = crate::testing::graphs::huge_constant([1 << 17, 1 << 17]);
        let err = Classifier::from_verified(m).unwrap_err().to_string();
        assert!(
            err.contains("huge-constant.onnx") && err.contains("allocate"),
            "{err}"
        );
        // 320 MiB can be allocated but is more than a model may hold: refused by size, by name.
        let m = crate::testing::graphs::huge_constant([80, 1 << 20]);
        let err = Classifier::from_verified(m).unwrap_err().to_string();
        assert!(err.contains("\"big\"") && err.contains("bytes"), "{err}");
        // A small constant is fine: the same graph loads and types a cell.
        let c = Classifier::from_verified(crate::testing::graphs::huge_constant([2, 2])).unwrap();
        assert_eq!(c.logits(&vec![0.0; 3 * 128 * 128]).unwrap().len(), 4);
    }
}
