//! The frame-to-typed-cells pipeline the counter and the session run: segment a frame, crop each cell by the
//! [`crate::preprocess`] contract, classify it, and apply the unidentified threshold (the model card's by
//! default).
//!
//! Every stage fills in the same [`Cell`]: segmentation its box and nucleus, this module its crop and
//! prediction. This module joins pixels and models; it never counts (that is [`crate::count`]) and never
//! writes reports (that is [`crate::report`]).

use serde::{Deserialize, Serialize};

use crate::cell::Cell;
use crate::classes::Classes;
use crate::classify::{Classifier, InferenceError};
use crate::exposure::Clipping;
use crate::frame::Frame;
use crate::model::ModelId;
use crate::preprocess;
use crate::scale::{RbcPx, ScaleError};
use crate::segment::{SegmentConfig, Segmenter};

/// Who typed the cells: what a session's journal records in its header and every report names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// `model` (segmentation + classifier) or `blobs` (the model-free test double).
    pub analyzer: String,
    /// The model, when there is one.
    pub model: Option<ModelId>,
    /// Below this top-class probability a cell is unidentified.
    pub unidentified_threshold: f32,
    /// The classes, in model output order.
    pub classes: Classes,
}

/// Everything found in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameResult {
    /// The typed cells, largest nucleus first, each with its crop and prediction.
    pub cells: Vec<Cell>,
    /// More cells than [`crate::segment::MAX_CELLS`] were found; the smallest were not typed.
    pub overflow: bool,
    /// The analysed frame's size.
    pub width: u32,
    /// The analysed frame's height.
    pub height: u32,
    /// The red-cell diameter (frame pixels) the frame was brought to the training scale by; `None` when
    /// it was scaled by its size ([`Pipeline::with_rbc_px`]).
    pub rbc_px: Option<f32>,
    /// Why the frame's red cells could not be measured (`auto`): it was scaled by its size instead.
    pub scale_error: Option<ScaleError>,
    /// How much of the frame the camera clipped, when it is over-exposed ([`crate::exposure::LIMIT`]):
    /// its pale cells lost detail and their types are less sure.
    pub clipping: Option<Clipping>,
}

/// Pipeline settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Detection settings.
    pub segment: SegmentConfig,
    /// Below this top probability a cell is unidentified (default: the model card's value).
    pub unidentified_threshold: f32,
    /// Bring each frame to the training scale by its red cells (fixed or measured in each frame; the
    /// model's reference diameter is the card's); `None`: by the frame's size.
    pub rbc_px: Option<RbcPx>,
}

/// Segmenter + classifier, with buffers reused across frames.
#[derive(Debug)]
pub struct Pipeline {
    classifier: Classifier,
    config: PipelineConfig,
    segmenter: Segmenter,
}

impl Pipeline {
    /// Default detection and the card's unidentified threshold.
    pub fn new(classifier: Classifier) -> Self {
        let config = PipelineConfig {
            segment: SegmentConfig::default(),
            unidentified_threshold: classifier.card().unidentified_threshold,
            rbc_px: None,
        };
        Pipeline::with_config(classifier, config)
    }

    /// Explicit settings.
    pub fn with_config(classifier: Classifier, config: PipelineConfig) -> Self {
        Pipeline {
            segmenter: Segmenter::new(config.segment),
            classifier,
            config,
        }
    }

    /// Brings each frame to the training scale by its red cells as `rbc_px` says (`None`: by its size).
    pub fn with_rbc_px(mut self, rbc_px: Option<RbcPx>) -> Self {
        self.config.rbc_px = rbc_px;
        self
    }

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// What types the cells: this model, its classes and the threshold in use.
    pub fn analysis(&self) -> Analysis {
        Analysis {
            analyzer: "model".into(),
            model: Some(self.classifier.card().id()),
            unidentified_threshold: self.config.unidentified_threshold,
            classes: self.classifier.classes().clone(),
        }
    }

    /// The segmenter (e.g. for the last frame's nucleus mask).
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// Finds and types the white cells of a frame of any size. Never panics on pixel content; fails only
    /// when inference fails.
    pub fn analyze(&mut self, frame: &Frame) -> Result<FrameResult, InferenceError> {
        let (scaling, rbc_px, scale_error) = match self.config.rbc_px.map(|r| r.diameter(frame)) {
            None => (preprocess::Scaling::FrameSize, None, None),
            Some(Ok(d)) => (self.classifier.rbc_scaling(d), Some(d), None),
            Some(Err(e)) => (preprocess::Scaling::FrameSize, None, Some(e)),
        };
        let seg = self.segmenter.segment_with(frame, scaling);
        let mut cells = Vec::with_capacity(seg.cells.len());
        for found in &seg.cells {
            // Segmentation sets every cell's nucleus.
            let Some(nucleus) = found.nucleus else {
                continue;
            };
            let mut cell = found.clone();
            let (cx, cy) = nucleus.centre;
            let crop = preprocess::cell_input(&seg.scaled, cx, cy);
            let threshold = self.config.unidentified_threshold;
            cell.prediction = Some(self.classifier.classify_input_with(&crop, threshold)?);
            cell.crop = Some(crop);
            cells.push(cell);
        }
        Ok(FrameResult {
            cells,
            overflow: seg.overflow,
            width: frame.width(),
            height: frame.height(),
            rbc_px,
            scale_error,
            clipping: Clipping::over_exposed(frame),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyze_types_every_detected_cell() {
        let classifier = Classifier::embedded().expect("the embedded model loads");
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../samples/smears/BloodImage_00001.jpg");
        let frame = Frame::open(&p).unwrap();
        let mut pipe = Pipeline::new(classifier);
        let r = pipe.analyze(&frame).unwrap();
        assert!(!r.cells.is_empty());
        let classes = pipe.classifier().classes().clone();
        for c in &r.cells {
            let crop = c.crop.as_ref().expect("a crop");
            assert_eq!(
                (crop.width(), crop.height()),
                (preprocess::INPUT, preprocess::INPUT)
            );
            assert!(c.rect.x1 <= 640 && c.rect.y1 <= 480);
            let p = c.prediction.as_ref().expect("typed");
            assert_eq!(p.probs.len(), classes.len());
            assert!(p.class.is_none_or(|k| k == p.predicted));
            assert!(c.nucleus.is_some());
        }
        let mut d = crate::count::Differential::new(classes);
        r.cells.iter().for_each(|c| d.add(c));
        assert_eq!(d.total() as usize, r.cells.len());
    }
}
