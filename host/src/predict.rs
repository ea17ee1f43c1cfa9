//! Host evaluation through the device's own code path: decode, [`leukoscope::preprocess`], and the tract
//! [`leukoscope::Classifier`] on the exported ONNX file, in parallel over images.

use std::path::PathBuf;

use leukoscope::{Classifier, Frame};

use crate::data::Sample;
use crate::eval::Scores;

/// Scores of a classifier on samples, and the files that failed (path, reason).
pub fn predict(
    classifier: &Classifier,
    samples: &[Sample],
    threads: usize,
) -> (Scores, Vec<(PathBuf, String)>) {
    let threads = threads.max(1);
    let chunk = samples.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<Result<[f32; 4], String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                let c = classifier.clone();
                s.spawn(move || {
                    part.iter()
                        .map(|smp| {
                            let chain = |e: anyhow::Error| format!("{e:#}");
                            let f = Frame::open(&smp.path).map_err(|e| chain(e.into()))?;
                            let p = c.classify_frame(&f).map_err(|e| chain(e.into()))?;
                            <[f32; 4]>::try_from(p.probs).map_err(|v| {
                                format!("the model has {} classes, the Kaggle data set 4", v.len())
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("prediction thread"))
            .collect()
    });
    let mut scores = Scores::default();
    let mut failed = Vec::new();
    for (smp, r) in samples.iter().zip(parts.into_iter().flatten()) {
        match r {
            Ok(p) => scores.push(p, smp.class),
            Err(e) => failed.push((smp.path.clone(), e)),
        }
    }
    (scores, failed)
}

/// An unidentified-cell threshold and what it does on the data it was chosen on.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Threshold {
    /// Top-class probability below which a cell is reported as unidentified.
    pub threshold: f32,
    /// Accuracy among the cells kept.
    pub kept_accuracy: f64,
    /// Share of cells set aside as unidentified.
    pub rejected: f64,
}

/// `eval --calibrate`: the accuracy that the cells kept (those at or above the threshold) must reach on VAL.
/// 95 % keeps the differential's typing errors near those of a manual 100-cell count.
pub const CALIBRATION_KEPT_ACCURACY: f64 = 0.95;
/// `eval --calibrate`: the largest share of VAL cells the threshold may set aside as unidentified; a review
/// of more than one cell in ten would cost the technician more time than the count saves.
pub const CALIBRATION_MAX_REJECTED: f64 = 0.10;

/// Chooses the lowest threshold whose kept cells reach `target` accuracy, rejecting at most `max_reject` of
/// the cells; if the target is out of reach, the threshold that rejects `max_reject`.
pub fn choose_threshold(scores: &Scores, target: f64, max_reject: f64) -> Threshold {
    let mut items: Vec<(f32, bool)> = scores
        .probs
        .iter()
        .zip(&scores.labels)
        .map(|(p, &l)| {
            let (top, confidence) = leukoscope::cell::argmax(p).unwrap_or((0, f32::NAN));
            (confidence, top == l)
        })
        .collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = items.len();
    let mut correct_kept: usize = items.iter().filter(|i| i.1).count();
    let cap = (max_reject * n as f64).floor() as usize;
    let at = |k: usize, correct: usize| Threshold {
        threshold: if k == 0 {
            0.0
        } else {
            items[k - 1].0.next_up()
        },
        kept_accuracy: correct as f64 / (n - k).max(1) as f64,
        rejected: k as f64 / n.max(1) as f64,
    };
    for k in 0..=cap.min(n) {
        if k > 0 {
            correct_kept -= items[k - 1].1 as usize;
            // Ties: a threshold cannot split equal confidences.
            if k < n && items[k].0 == items[k - 1].0 {
                continue;
            }
        }
        let t = at(k, correct_kept);
        if t.kept_accuracy >= target || k == cap.min(n) {
            return t;
        }
    }
    at(0, items.iter().filter(|i| i.1).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Class;

    #[test]
    fn threshold_drops_the_unsure_wrong_ones() {
        let mut s = Scores::default();
        s.push([0.9, 0.1, 0.0, 0.0], Class::Eosinophil);
        s.push([0.8, 0.2, 0.0, 0.0], Class::Eosinophil);
        s.push([0.4, 0.3, 0.3, 0.0], Class::Monocyte); // wrong, unsure
        s.push([0.0, 0.0, 0.1, 0.9], Class::Neutrophil);
        let t = choose_threshold(&s, 0.99, 0.5);
        assert_eq!(t.kept_accuracy, 1.0);
        assert_eq!(t.rejected, 0.25);
        assert!(t.threshold > 0.4 && t.threshold <= 0.8);
        let none = choose_threshold(&s, 0.5, 0.5);
        assert_eq!((none.threshold, none.rejected), (0.0, 0.0));
        let capped = choose_threshold(&s, 1.0, 0.0);
        assert_eq!(capped.rejected, 0.0);
    }
}
