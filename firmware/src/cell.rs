//! The one cell type: a white cell as the stages of the device see it, each stage filling in its part.
//!
//! [`crate::segment`] finds a cell ([`Cell::rect`], [`Cell::nucleus`]); the pipeline cuts its classifier
//! input ([`Cell::crop`]) and [`crate::classify`] types it ([`Cell::prediction`]); counting, reports and
//! the journal read the same value. Class *names* live in [`crate::classes::Classes`]; a cell holds
//! indices into the model's class list.

use crate::frame::Frame;
use crate::rect::Rect;

/// What the classifier says of one cell (serialised as is in the journal).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// Softmax probabilities, in the model's class order (as many as the model has classes).
    #[serde(deserialize_with = "nans_from_nulls")]
    pub probs: Vec<f32>,
    /// Index of the most probable class (the first on ties).
    pub predicted: usize,
    /// Its probability.
    #[serde(deserialize_with = "nan_from_null")]
    pub confidence: f32,
    /// The type the count uses: `Some(predicted)`, or `None` (unidentified) when `confidence` is below
    /// the unidentified threshold. Every command applies this one rule.
    pub class: Option<usize>,
}

impl Prediction {
    /// Softmax of the logits, arg-max first on ties, unidentified below `threshold`. Non-finite logits
    /// give an unidentified prediction with the probabilities as computed (NaN stays visible).
    pub fn from_logits(logits: &[f32], threshold: f32) -> Prediction {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let (predicted, confidence) = argmax(&probs).unwrap_or((0, f32::NAN));
        Prediction {
            class: (confidence >= threshold).then_some(predicted),
            probs,
            predicted,
            confidence,
        }
    }
}

// JSON has no NaN: serde_json writes it as `null`, so a prediction from non-finite logits reads back.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    <Option<f32> as serde::Deserialize>::deserialize(d).map(|v| v.unwrap_or(f32::NAN))
}

fn nans_from_nulls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    <Vec<Option<f32>> as serde::Deserialize>::deserialize(d)
        .map(|v| v.into_iter().map(|p| p.unwrap_or(f32::NAN)).collect())
}

/// Index and value of the largest element, the first on ties; `None` when empty. NaN never wins.
pub fn argmax(values: &[f32]) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.or_else(|| values.first().map(|&v| (0, v)))
}

/// Where segmentation found a cell's nucleus, at the training scale ([`crate::preprocess`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nucleus {
    /// The nucleus box, at the training scale.
    pub rect: Rect,
    /// Nucleus pixels, at the training scale.
    pub area: u32,
    /// Classifier crop centre, at the training scale (pass to [`crate::preprocess::cell_input`]).
    pub centre: (u32, u32),
}

/// One white cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The cell's box in the pixels of the frame it was found in.
    pub rect: Rect,
    /// The nucleus, when the cell came from segmentation.
    pub nucleus: Option<Nucleus>,
    /// The classifier input it was (or will be) typed from.
    pub crop: Option<Frame>,
    /// The classifier's verdict, once typed.
    pub prediction: Option<Prediction>,
    /// What a person said on review, if anyone did: it wins over the classifier.
    pub review: Option<Review>,
}

/// What a reviewer says a cell is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// One of the model's classes (an index into its class list).
    Class(usize),
    /// A white cell the reviewer cannot type either: it counts as unidentified.
    Unidentified,
    /// Not a white cell (debris, a smudge, a clump of platelets): left out of the count.
    NotWhiteCell,
}

/// A reviewer's verdict on one cell, as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Review {
    /// What the cell is.
    pub verdict: Verdict,
    /// The signed-in operator who said so.
    pub by: String,
    /// When, seconds since the Unix epoch.
    pub unix: u64,
}

impl Cell {
    /// A cell known only by its box.
    pub fn new(rect: Rect) -> Self {
        Cell {
            rect,
            nucleus: None,
            crop: None,
            prediction: None,
            review: None,
        }
    }

    /// The type the count uses: the reviewer's when reviewed, else the classifier's; `None` when
    /// unidentified, not typed yet, or not a white cell.
    pub fn class(&self) -> Option<usize> {
        match self.review.as_ref().map(|r| r.verdict) {
            Some(Verdict::Class(c)) => Some(c),
            Some(Verdict::Unidentified | Verdict::NotWhiteCell) => None,
            None => self.prediction.as_ref().and_then(|p| p.class),
        }
    }

    /// Whether the cell counts at all: every cell does, unless a reviewer marked it not a white cell.
    pub fn is_white_cell(&self) -> bool {
        !matches!(
            self.review.as_ref().map(|r| r.verdict),
            Some(Verdict::NotWhiteCell)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_picks_max_and_applies_the_threshold() {
        let p = Prediction::from_logits(&[0.0, 3.0, 1.0, -2.0, 0.5], 0.0);
        assert_eq!(p.predicted, 1);
        assert_eq!(p.class, Some(1));
        assert_eq!(p.probs.len(), 5);
        assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(p.confidence, p.probs[1]);
        let q = Prediction::from_logits(&[0.0, 0.1], 0.9);
        assert_eq!((q.predicted, q.class), (1, None));
    }

    #[test]
    fn nan_logits_are_unidentified() {
        let p = Prediction::from_logits(&[f32::NAN, 1.0], 0.5);
        assert_eq!(p.class, None);
    }

    #[test]
    fn a_nan_prediction_survives_json() {
        let p = Prediction::from_logits(&[f32::NAN, 1.0], 0.5);
        let text = serde_json::to_string(&p).unwrap();
        let back: Prediction = serde_json::from_str(&text).unwrap();
        assert!(back.confidence.is_nan() && back.probs.iter().all(|v| v.is_nan()));
        assert_eq!((back.predicted, back.class), (p.predicted, p.class));
    }

    #[test]
    fn argmax_first_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some((1, 3.0)));
        assert_eq!(argmax(&[f32::NAN, 2.0]), Some((1, 2.0)));
        assert_eq!(argmax(&[]), None);
    }
}
