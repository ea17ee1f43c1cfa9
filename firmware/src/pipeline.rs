//! The frame-to-typed-cells pipeline the counter and the session run: segment a frame, crop each cell by the
//! [`crate::preprocess`] contract, classify it, and apply the model card's unidentified threshold.
//!
//! Public API used by `session.rs` (issue 5) — keep these names stable:
//! [`Pipeline`] (`new`, `with_config`, `analyze`), [`FrameResult`], [`CountedCell`], and
//! [`crate::count::Differential`] (`add`, `count`, `total`, `to_json`). This module joins pixels and models;
//! it never counts (that is [`crate::count`]) and never writes reports (that is [`crate::report`]).

use crate::cell::Cell;
use crate::classify::{Classifier, InferenceError};
use crate::frame::Frame;
use crate::preprocess::{self, Class};
use crate::segment::{SegmentConfig, Segmenter};

/// One typed white cell of a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct CountedCell {
    /// Cell box `[x0, y0, x1, y1]` in the analysed frame's pixels (`x1`, `y1` exclusive).
    pub bbox: [u32; 4],
    /// The type; `None` when the top probability is below the card's unidentified threshold.
    pub class: Option<Class>,
    /// The model's top class, even when below the threshold.
    pub predicted: Class,
    /// The top class's probability.
    pub confidence: f32,
    /// All probabilities in [`crate::CLASSES`] order.
    pub probs: [f32; 4],
    /// The 128×128 classifier input this cell was typed from.
    pub crop: Frame,
    /// The cell as segmentation found it (nucleus box and crop centre at the training scale).
    pub detection: Cell,
}

/// Everything found in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameResult {
    /// The typed cells, largest nucleus first.
    pub cells: Vec<CountedCell>,
    /// More cells than [`crate::segment::MAX_CELLS`] were found; the smallest were not typed.
    pub overflow: bool,
    /// The analysed frame's size.
    pub width: u32,
    /// The analysed frame's height.
    pub height: u32,
}

/// Pipeline settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Detection settings.
    pub segment: SegmentConfig,
    /// Below this top probability a cell is unidentified (default: the model card's value).
    pub unidentified_threshold: f32,
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

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The segmenter (e.g. for the last frame's nucleus mask).
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// Finds and types the white cells of a frame of any size. Never panics on pixel content; fails only
    /// when inference fails.
    pub fn analyze(&mut self, frame: &Frame) -> Result<FrameResult, InferenceError> {
        let seg = self.segmenter.segment(frame);
        let mut cells = Vec::with_capacity(seg.cells.len());
        for det in &seg.cells {
            // Segmentation sets every cell's nucleus.
            let Some(nucleus) = det.nucleus else { continue };
            let crop = preprocess::cell_input(&seg.scaled, nucleus.centre.0, nucleus.centre.1);
            let p = self.classifier.classify_input(&crop)?;
            cells.push(CountedCell {
                bbox: det.rect.into(),
                class: (p.confidence >= self.config.unidentified_threshold).then_some(p.class),
                predicted: p.class,
                confidence: p.confidence,
                probs: p.probs,
                crop,
                detection: det.clone(),
            });
        }
        Ok(FrameResult {
            cells,
            overflow: seg.overflow,
            width: frame.width(),
            height: frame.height(),
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
        for c in &r.cells {
            assert_eq!(
                (c.crop.width(), c.crop.height()),
                (preprocess::INPUT, preprocess::INPUT)
            );
            assert!(c.bbox[2] <= 640 && c.bbox[3] <= 480);
            assert!(c.class.is_none_or(|k| k == c.predicted));
        }
        let mut d = crate::count::Differential::new();
        r.cells.iter().for_each(|c| d.add(c));
        assert_eq!(d.total() as usize, r.cells.len());
    }
}
