//! Evaluation metrics and report tables.
//!
//! Input is a [`Scores`]: one softmax probability vector per sample (in [`CLASSES`] order) and the true class
//! index. [`evaluate`] turns it into a [`Report`] with the layout of the report this project reproduces:
//!
//! * **per class**, one-vs-rest: AUC, accuracy, sensitivity, specificity and precision ([`ClassMetrics`]);
//! * **average**: macro AUC (mean of the one-vs-rest AUCs), top-1 multi-class accuracy and the mean categorical
//!   cross-entropy ([`Average`]);
//! * the 4×4 **confusion matrix**, `confusion[true][predicted]`.
//!
//! The one-vs-rest counts come from the top-1 prediction (the arg-max of the probabilities; on an exact tie the
//! lower class index wins). The AUC is computed exactly from the scores `probs[c]` with the Mann–Whitney U
//! statistic, giving tied scores their average rank, which equals the trapezoidal area under the tie-aware
//! [`roc_curve`].
//!
//! [`Report`] serialises to JSON with serde and renders as Markdown with [`Report::to_markdown`].

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::data::{Class, CLASSES};
use serde::{Deserialize, Serialize};

/// Number of classes the classifier distinguishes (the length of [`CLASSES`]).
pub const NUM_CLASSES: usize = CLASSES.len();

/// Probabilities are clamped to at least this before taking the logarithm in the cross-entropy loss.
pub const LOSS_EPSILON: f64 = 1e-7;

/// Model outputs on an evaluation split: softmax probabilities and the true class of every sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// Softmax probabilities per sample, indexed like [`CLASSES`].
    pub probs: Vec<[f32; NUM_CLASSES]>,
    /// True class index per sample (`0..NUM_CLASSES`), parallel to `probs`.
    pub labels: Vec<usize>,
}

impl Scores {
    /// Number of samples (the length of `probs`).
    pub fn len(&self) -> usize {
        self.probs.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }

    /// Appends one sample.
    pub fn push(&mut self, probs: [f32; NUM_CLASSES], label: Class) {
        self.probs.push(probs);
        self.labels.push(label.index());
    }

    /// Checks what [`evaluate`] needs: at least one sample, as many labels as probability vectors, every label
    /// a class index and every probability finite.
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.probs.is_empty() && self.labels.is_empty() {
            return Err(EvalError::Empty);
        }
        if self.probs.len() != self.labels.len() {
            return Err(EvalError::LengthMismatch {
                probs: self.probs.len(),
                labels: self.labels.len(),
            });
        }
        if let Some((index, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= NUM_CLASSES)
        {
            return Err(EvalError::LabelOutOfRange { index, label });
        }
        if let Some(index) = self
            .probs
            .iter()
            .position(|p| p.iter().any(|x| !x.is_finite()))
        {
            return Err(EvalError::NonFinite {
                index,
                probs: self.probs[index],
            });
        }
        Ok(())
    }

    /// Top-1 predicted class index per sample ([`leukoscope::cell::argmax`]: on an exact tie the lowest index
    /// wins, as on the device).
    pub fn predictions(&self) -> Vec<usize> {
        self.probs
            .iter()
            .map(|p| leukoscope::cell::argmax(p).map_or(0, |(i, _)| i))
            .collect()
    }
}

/// Why a [`Scores`] cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// There are no samples.
    #[error("no samples to evaluate")]
    Empty,
    /// `probs` and `labels` differ in length.
    #[error("{probs} probability vectors but {labels} labels")]
    LengthMismatch {
        /// Length of `probs`.
        probs: usize,
        /// Length of `labels`.
        labels: usize,
    },
    /// A label is not a class index.
    #[error("sample {index}: label {label} is not a class index (0..{NUM_CLASSES})")]
    LabelOutOfRange {
        /// Sample position.
        index: usize,
        /// The offending label.
        label: usize,
    },
    /// A probability is NaN or infinite.
    #[error("sample {index}: non-finite probabilities {probs:?}")]
    NonFinite {
        /// Sample position.
        index: usize,
        /// The sample's probability vector.
        probs: [f32; NUM_CLASSES],
    },
}

/// One-vs-rest metrics of one class, all as fractions in `[0, 1]`.
///
/// The counts come from the top-1 prediction: for class `c`, TP = predicted `c` and true `c`, FP = predicted `c`
/// but true another class, FN = true `c` but predicted another class, TN = the rest. A ratio whose denominator is
/// 0 (e.g. the precision of a class that is never predicted) is defined as 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Area under the ROC curve of the score `probs[c]` for the label `true == c`. NaN (JSON `null`) when the
    /// split has no positive or no negative sample of the class, where it is undefined.
    #[serde(with = "nan_as_null")]
    pub auc: f64,
    /// (TP + TN) / N.
    pub accuracy: f64,
    /// TP / (TP + FN), the recall or true-positive rate.
    pub sensitivity: f64,
    /// TN / (TN + FP), the true-negative rate.
    pub specificity: f64,
    /// TP / (TP + FP), the positive predictive value.
    pub precision: f64,
}

/// The report's average table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Average {
    /// Top-1 multi-class accuracy: the fraction of samples whose arg-max is the true class.
    pub accuracy: f64,
    /// Macro AUC: the unweighted mean of the per-class one-vs-rest AUCs (NaN, JSON `null`, if any is undefined).
    #[serde(with = "nan_as_null")]
    pub auc: f64,
    /// Mean categorical cross-entropy `-ln(max(p_true, 1e-7))`, natural log (see [`LOSS_EPSILON`]).
    pub loss: f64,
}

/// The evaluation of one model on one split: what the report shows, and what is stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The evaluated model file, e.g. `"edge16-int8-weights.onnx"` (absent in reports written before it was
    /// recorded, and for checkpoints evaluated in tch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Network architecture, e.g. `"edge"`.
    pub arch: String,
    /// Evaluated split, e.g. `"TEST"`.
    pub split: String,
    /// Training recipe that produced the model.
    pub recipe: String,
    /// Number of evaluated samples.
    pub n: usize,
    /// The average table.
    pub average: Average,
    /// One-vs-rest metrics keyed by class name (`"EOSINOPHIL"`, ...).
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// Confusion counts, `confusion[true][predicted]`, indexed like [`CLASSES`].
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `scores` and labels the result with the architecture, split and recipe.
pub fn evaluate(
    scores: &Scores,
    arch: &str,
    split: &str,
    recipe: &str,
) -> Result<Report, EvalError> {
    scores.validate()?;
    let n = scores.len();
    let predictions = scores.predictions();

    let mut confusion = vec![vec![0u64; NUM_CLASSES]; NUM_CLASSES];
    for (&truth, &pred) in scores.labels.iter().zip(&predictions) {
        confusion[truth][pred] += 1;
    }

    let mut per_class = BTreeMap::new();
    let mut auc_sum = 0.0;
    for class in CLASSES {
        let c = class.index();
        let tp = confusion[c][c];
        let fn_ = confusion[c].iter().sum::<u64>() - tp;
        let fp = (0..NUM_CLASSES).map(|t| confusion[t][c]).sum::<u64>() - tp;
        let tn = n as u64 - tp - fn_ - fp;
        let auc = class_auc(scores, c);
        auc_sum += auc;
        let metrics = ClassMetrics {
            auc,
            accuracy: ratio(tp + tn, n as u64),
            sensitivity: ratio(tp, tp + fn_),
            specificity: ratio(tn, tn + fp),
            precision: ratio(tp, tp + fp),
        };
        per_class.insert(class.name().to_string(), metrics);
    }

    let correct: u64 = (0..NUM_CLASSES).map(|c| confusion[c][c]).sum();
    let loss = scores
        .probs
        .iter()
        .zip(&scores.labels)
        .map(|(p, &t)| -(f64::from(p[t]).max(LOSS_EPSILON)).ln())
        .sum::<f64>()
        / n as f64;

    Ok(Report {
        model: None,
        arch: arch.to_string(),
        split: split.to_string(),
        recipe: recipe.to_string(),
        n,
        average: Average {
            accuracy: ratio(correct, n as u64),
            auc: auc_sum / NUM_CLASSES as f64,
            loss,
        },
        per_class,
        confusion,
    })
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// One-vs-rest AUC of class `class` (see [`binary_auc`]).
///
/// # Panics
/// If `class >= NUM_CLASSES`.
pub fn class_auc(scores: &Scores, class: usize) -> f64 {
    let pairs: Vec<(f32, bool)> = scores
        .probs
        .iter()
        .zip(&scores.labels)
        .map(|(p, &t)| (p[class], t == class))
        .collect();
    binary_auc(&pairs)
}

/// Exact ROC AUC of `(score, is_positive)` pairs: the Mann–Whitney U statistic divided by P·N, where tied scores
/// share their average rank. This is the probability that a random positive scores above a random negative,
/// counting ties as one half. Returns NaN when there is no positive or no negative.
pub fn binary_auc(pairs: &[(f32, bool)]) -> f64 {
    let positives = pairs.iter().filter(|(_, p)| *p).count();
    let negatives = pairs.len() - positives;
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < sorted.len() {
        let end = tie_group_end(&sorted, start, |(s, _)| *s);
        let average_rank = (start + 1 + end) as f64 / 2.0; // mean of ranks start+1 ..= end
        let group_positives = sorted[start..end].iter().filter(|(_, p)| *p).count();
        rank_sum += average_rank * group_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    let u = rank_sum - p * (p + 1.0) / 2.0;
    u / (p * n)
}

/// End (exclusive) of the run of elements equal in key to `items[start]`.
fn tie_group_end<T>(items: &[T], start: usize, key: impl Fn(&T) -> f32) -> usize {
    let first = key(&items[start]);
    let mut end = start + 1;
    while end < items.len() && key(&items[end]).partial_cmp(&first) == Some(Ordering::Equal) {
        end += 1;
    }
    end
}

/// One-vs-rest ROC curve of class `class`: `(false-positive rate, true-positive rate)` points from `(0, 0)` to
/// `(1, 1)`, one per distinct score threshold, highest threshold first.
///
/// Samples with equal scores are passed together, so a tie gives one diagonal step rather than an arbitrary
/// staircase; the trapezoidal area under the points equals [`class_auc`]. When the class has no positive or no
/// negative sample the curve is undefined and the result is empty.
///
/// # Panics
/// If `class >= NUM_CLASSES`.
pub fn roc_curve(scores: &Scores, class: usize) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(f32, bool)> = scores
        .probs
        .iter()
        .zip(&scores.labels)
        .map(|(p, &t)| (p[class], t == class))
        .collect();
    let positives = pairs.iter().filter(|(_, p)| *p).count();
    let negatives = pairs.len() - positives;
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut start = 0;
    while start < pairs.len() {
        let end = tie_group_end(&pairs, start, |(s, _)| *s);
        let group_positives = pairs[start..end].iter().filter(|(_, p)| *p).count();
        tp += group_positives;
        fp += end - start - group_positives;
        points.push((fp as f64 / negatives as f64, tp as f64 / positives as f64));
        start = end;
    }
    points
}

/// Share of samples on which two models' top-1 predictions agree (0 for no samples).
///
/// # Panics
/// If the two lists differ in length.
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len(), "predictions of the same samples");
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

impl Report {
    /// Metrics of `class`, if the report has them.
    pub fn class(&self, class: Class) -> Option<&ClassMetrics> {
        self.per_class.get(class.name())
    }

    /// Renders the report's tables as Markdown: a heading naming the model file (when known), architecture and
    /// split, the per-class
    /// one-vs-rest table (percentages with 2 decimals), the average table (AUC and accuracy in percent, loss
    /// with 4 decimals) and the confusion matrix (rows true, columns predicted). Undefined AUCs show as `n/a`.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // `write!` to a String cannot fail.
        let _ = match &self.model {
            Some(model) => writeln!(md, "## {model} ({}) on {}\n", self.arch, self.split),
            None => writeln!(md, "## {} on {}\n", self.arch, self.split),
        };
        let _ = writeln!(md, "Recipe: `{}`; {} images.\n", self.recipe, self.n);

        let _ = writeln!(md, "### Per class (one-vs-rest)\n");
        md.push_str("| Class | AUC | Accuracy | Sensitivity | Specificity | Precision |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|\n");
        for class in CLASSES {
            if let Some(m) = self.class(class) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    class.name(),
                    percent(m.auc),
                    percent(m.accuracy),
                    percent(m.sensitivity),
                    percent(m.specificity),
                    percent(m.precision),
                );
            }
        }

        let _ = writeln!(md, "\n### Average\n");
        md.push_str("| AUC | Accuracy | Loss |\n|---:|---:|---:|\n");
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} |",
            percent(self.average.auc),
            percent(self.average.accuracy),
            self.average.loss
        );

        let _ = writeln!(
            md,
            "\n### Confusion matrix (rows: true, columns: predicted)\n"
        );
        md.push_str("| True \\ Predicted |");
        for class in CLASSES {
            let _ = write!(md, " {} |", class.name());
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(NUM_CLASSES));
        md.push('\n');
        for (class, row) in CLASSES.iter().zip(&self.confusion) {
            let _ = write!(md, "| {} |", class.name());
            for count in row {
                let _ = write!(md, " {count} |");
            }
            md.push('\n');
        }
        md
    }
}

/// A fraction as a percentage with 2 decimals, e.g. `0.98765` → `"98.77%"`; NaN → `"n/a"`.
fn percent(x: f64) -> String {
    if x.is_nan() {
        "n/a".to_string()
    } else {
        format!("{:.2}%", 100.0 * x)
    }
}

/// Serde helpers for an `f64` that may be NaN (an undefined AUC): NaN is written as `null` and read back from it,
/// so a report survives a JSON round trip.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_nan() {
            s.serialize_none()
        } else {
            s.serialize_f64(*x)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const E: usize = 0;
    const L: usize = 1;
    const M: usize = 2;
    const N: usize = 3;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Brute force: P(score_pos > score_neg) + ½ P(equal) over all positive/negative pairs.
    fn pairwise_auc(pairs: &[(f32, bool)]) -> f64 {
        let (mut wins, mut total) = (0.0, 0.0);
        for &(sp, _) in pairs.iter().filter(|(_, p)| *p) {
            for &(sn, _) in pairs.iter().filter(|(_, p)| !*p) {
                total += 1.0;
                if sp > sn {
                    wins += 1.0;
                } else if sp == sn {
                    wins += 0.5;
                }
            }
        }
        wins / total
    }

    fn trapezoid(points: &[(f64, f64)]) -> f64 {
        points
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum()
    }

    /// Eight samples, hand-checked below.
    ///
    /// | # | true | probs (E, L, M, N)      | pred |
    /// |---|------|-------------------------|------|
    /// | 0 | E    | 0.70 0.10 0.10 0.10     | E    |
    /// | 1 | E    | 0.20 0.50 0.20 0.10     | L    |
    /// | 2 | L    | 0.10 0.80 0.05 0.05     | L    |
    /// | 3 | L    | 0.10 0.60 0.20 0.10     | L    |
    /// | 4 | M    | 0.30 0.10 0.40 0.20     | M    |
    /// | 5 | M    | 0.10 0.10 0.20 0.60     | N    |
    /// | 6 | N    | 0.05 0.05 0.10 0.80     | N    |
    /// | 7 | N    | 0.25 0.25 0.25 0.25     | E (tie → lowest index) |
    fn sample() -> Scores {
        Scores {
            probs: vec![
                [0.70, 0.10, 0.10, 0.10],
                [0.20, 0.50, 0.20, 0.10],
                [0.10, 0.80, 0.05, 0.05],
                [0.10, 0.60, 0.20, 0.10],
                [0.30, 0.10, 0.40, 0.20],
                [0.10, 0.10, 0.20, 0.60],
                [0.05, 0.05, 0.10, 0.80],
                [0.25, 0.25, 0.25, 0.25],
            ],
            labels: vec![E, E, L, L, M, M, N, N],
        }
    }

    #[test]
    fn predictions_break_ties_to_the_lowest_index() {
        let s = Scores {
            probs: vec![[0.25; 4], [0.1, 0.4, 0.4, 0.1], [0.1, 0.2, 0.3, 0.4]],
            labels: vec![0, 0, 0],
        };
        assert_eq!(s.predictions(), vec![0, 1, 3]);
        assert_eq!(agreement(&s.predictions(), &[0, 2, 3]), 2.0 / 3.0);
        assert_eq!(agreement(&[], &[]), 0.0);
    }

    #[test]
    fn confusion_matrix_by_hand() {
        let r = evaluate(&sample(), "edge", "TEST", "r").unwrap();
        assert_eq!(
            r.confusion,
            vec![
                vec![1, 1, 0, 0],
                vec![0, 2, 0, 0],
                vec![0, 0, 1, 1],
                vec![1, 0, 0, 1],
            ]
        );
        assert_eq!(r.confusion.iter().flatten().sum::<u64>(), 8);
        assert_eq!(r.n, 8);
    }

    #[test]
    fn one_vs_rest_counts_by_hand() {
        let r = evaluate(&sample(), "edge", "TEST", "r").unwrap();
        // EOSINOPHIL: TP 1 (#0), FN 1 (#1), FP 1 (#7), TN 5.
        let e = r.per_class["EOSINOPHIL"];
        assert!(close(e.accuracy, 6.0 / 8.0));
        assert!(close(e.sensitivity, 0.5));
        assert!(close(e.specificity, 5.0 / 6.0));
        assert!(close(e.precision, 0.5));
        // LYMPHOCYTE: TP 2, FN 0, FP 1 (#1), TN 5.
        let l = r.per_class["LYMPHOCYTE"];
        assert!(close(l.accuracy, 7.0 / 8.0));
        assert!(close(l.sensitivity, 1.0));
        assert!(close(l.specificity, 5.0 / 6.0));
        assert!(close(l.precision, 2.0 / 3.0));
        // MONOCYTE: TP 1, FN 1 (#5), FP 0, TN 6.
        let m = r.per_class["MONOCYTE"];
        assert!(close(m.accuracy, 7.0 / 8.0));
        assert!(close(m.sensitivity, 0.5));
        assert!(close(m.specificity, 1.0));
        assert!(close(m.precision, 1.0));
        // NEUTROPHIL: TP 1 (#6), FN 1 (#7), FP 1 (#5), TN 5.
        let n = r.per_class["NEUTROPHIL"];
        assert!(close(n.accuracy, 6.0 / 8.0));
        assert!(close(n.sensitivity, 0.5));
        assert!(close(n.specificity, 5.0 / 6.0));
        assert!(close(n.precision, 0.5));
        // Top-1: #0, #2, #3, #4, #6 correct.
        assert!(close(r.average.accuracy, 5.0 / 8.0));
    }

    #[test]
    fn auc_by_hand() {
        let r = evaluate(&sample(), "edge", "TEST", "r").unwrap();
        // EOSINOPHIL positives 0.70, 0.20; negatives 0.10 0.10 0.30 0.10 0.05 0.25.
        // 0.70 beats all 6; 0.20 beats 0.10 ×3 and 0.05 = 4. AUC = 10/12.
        assert!(close(r.per_class["EOSINOPHIL"].auc, 10.0 / 12.0));
        // LYMPHOCYTE positives 0.80, 0.60; negatives 0.10 0.50 0.10 0.10 0.05 0.25: both beat all. AUC = 1.
        assert!(close(r.per_class["LYMPHOCYTE"].auc, 1.0));
        // MONOCYTE positives 0.40, 0.20; negatives 0.10 0.20 0.05 0.20 0.10 0.25.
        // 0.40 beats 6; 0.20 beats 0.10, 0.05, 0.10 (3), ties 0.20 ×2 (1), loses to 0.25. AUC = 10/12.
        assert!(close(r.per_class["MONOCYTE"].auc, 10.0 / 12.0));
        // NEUTROPHIL positives 0.80, 0.25; negatives 0.10 0.10 0.05 0.10 0.20 0.60.
        // 0.80 beats 6; 0.25 beats 5, loses to 0.60. AUC = 11/12.
        assert!(close(r.per_class["NEUTROPHIL"].auc, 11.0 / 12.0));
        let macro_auc = (10.0 + 12.0 + 10.0 + 11.0) / 12.0 / 4.0;
        assert!(close(r.average.auc, macro_auc));
    }

    #[test]
    fn loss_by_hand() {
        let r = evaluate(&sample(), "edge", "TEST", "r").unwrap();
        let p_true = [0.70f32, 0.20, 0.80, 0.60, 0.40, 0.20, 0.80, 0.25];
        let expected = p_true.iter().map(|&p| -f64::from(p).ln()).sum::<f64>() / 8.0;
        assert!(close(r.average.loss, expected));
    }

    #[test]
    fn perfect_one_hot_prediction() {
        let mut scores = Scores::default();
        for class in CLASSES {
            let mut p = [0.0; 4];
            p[class.index()] = 1.0;
            scores.push(p, class);
            scores.push(p, class);
        }
        let r = evaluate(&scores, "edge", "TEST", "r").unwrap();
        assert!(r.average.loss.abs() < 1e-12);
        assert_eq!(r.average.accuracy, 1.0);
        assert_eq!(r.average.auc, 1.0);
        for m in r.per_class.values() {
            assert_eq!(
                *m,
                ClassMetrics {
                    auc: 1.0,
                    accuracy: 1.0,
                    sensitivity: 1.0,
                    specificity: 1.0,
                    precision: 1.0
                }
            );
        }
    }

    #[test]
    fn loss_clamps_zero_probability() {
        let scores = Scores {
            probs: vec![[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
            labels: vec![E, E],
        };
        let r = evaluate(&scores, "a", "s", "r").unwrap();
        assert!(close(r.average.loss, -(1e-7f64).ln() / 2.0));
        assert!(r.average.loss.is_finite());
    }

    #[test]
    fn constant_scores_give_auc_one_half() {
        let scores = Scores {
            probs: vec![[0.25; 4]; 10],
            labels: vec![E, L, M, N, E, L, M, N, E, N],
        };
        let r = evaluate(&scores, "a", "s", "r").unwrap();
        for m in r.per_class.values() {
            assert_eq!(m.auc, 0.5);
        }
        for c in 0..NUM_CLASSES {
            assert_eq!(roc_curve(&scores, c), vec![(0.0, 0.0), (1.0, 1.0)]);
        }
    }

    #[test]
    fn separating_and_inverted_scores() {
        let pairs = [(0.9, true), (0.8, true), (0.7, false), (0.1, false)];
        assert_eq!(binary_auc(&pairs), 1.0);
        let inverted: Vec<_> = pairs.iter().map(|&(s, p)| (s, !p)).collect();
        assert_eq!(binary_auc(&inverted), 0.0);
    }

    #[test]
    fn undefined_auc_is_nan_and_round_trips_as_null() {
        // No NEUTROPHIL sample: its AUC is undefined; the counts are still defined (TP = FN = 0 → sensitivity 0).
        let scores = Scores {
            probs: vec![
                [0.7, 0.1, 0.1, 0.1],
                [0.1, 0.7, 0.1, 0.1],
                [0.1, 0.1, 0.7, 0.1],
            ],
            labels: vec![E, L, M],
        };
        let r = evaluate(&scores, "a", "s", "r").unwrap();
        let n = r.per_class["NEUTROPHIL"];
        assert!(n.auc.is_nan());
        assert_eq!((n.sensitivity, n.precision, n.specificity), (0.0, 0.0, 1.0));
        assert!(r.average.auc.is_nan());
        assert!(roc_curve(&scores, N).is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["per_class"]["NEUTROPHIL"]["auc"].is_null());
        assert!(json["average"]["auc"].is_null());
        let back: Report = serde_json::from_value(json).unwrap();
        assert!(back.per_class["NEUTROPHIL"].auc.is_nan());
        assert_eq!(back.per_class["EOSINOPHIL"], r.per_class["EOSINOPHIL"]);
        assert!(r.to_markdown().contains("| NEUTROPHIL | n/a |"));
    }

    #[test]
    fn roc_curve_by_hand() {
        // MONOCYTE scores, descending: 0.40+ | 0.25- | 0.20+ 0.20- 0.20- | 0.10- 0.10- | 0.05-.
        let points = roc_curve(&sample(), M);
        let expected = [
            (0.0, 0.0),
            (0.0, 0.5),
            (1.0 / 6.0, 0.5),
            (3.0 / 6.0, 1.0),
            (5.0 / 6.0, 1.0),
            (1.0, 1.0),
        ];
        assert_eq!(points.len(), expected.len());
        for (p, e) in points.iter().zip(expected) {
            assert!(close(p.0, e.0) && close(p.1, e.1), "{points:?}");
        }
        assert!(close(trapezoid(&points), 10.0 / 12.0));
    }

    #[test]
    fn errors() {
        assert_eq!(
            evaluate(&Scores::default(), "a", "s", "r"),
            Err(EvalError::Empty)
        );
        let mismatch = Scores {
            probs: vec![[0.25; 4]; 2],
            labels: vec![0],
        };
        assert_eq!(
            evaluate(&mismatch, "a", "s", "r"),
            Err(EvalError::LengthMismatch {
                probs: 2,
                labels: 1
            })
        );
        let out_of_range = Scores {
            probs: vec![[0.25; 4]; 2],
            labels: vec![0, 4],
        };
        assert_eq!(
            evaluate(&out_of_range, "a", "s", "r"),
            Err(EvalError::LabelOutOfRange { index: 1, label: 4 })
        );
        let nan = Scores {
            probs: vec![[0.25; 4], [0.5, f32::NAN, 0.25, 0.25]],
            labels: vec![0, 1],
        };
        assert!(matches!(
            evaluate(&nan, "a", "s", "r"),
            Err(EvalError::NonFinite { index: 1, .. })
        ));
        let inf = Scores {
            probs: vec![[f32::INFINITY, 0.0, 0.0, 0.0]],
            labels: vec![0],
        };
        assert!(matches!(
            evaluate(&inf, "a", "s", "r"),
            Err(EvalError::NonFinite { index: 0, .. })
        ));
        assert!(EvalError::LabelOutOfRange { index: 1, label: 4 }
            .to_string()
            .contains("label 4"));
    }

    #[test]
    fn json_layout() {
        let r = evaluate(&sample(), "edge", "TEST", "paper").unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["arch"], "edge");
        assert_eq!(json["split"], "TEST");
        assert_eq!(json["recipe"], "paper");
        assert_eq!(json["n"], 8);
        for key in ["accuracy", "auc", "loss"] {
            assert!(json["average"][key].is_f64(), "{key}");
        }
        for class in CLASSES {
            for key in ["auc", "accuracy", "sensitivity", "specificity", "precision"] {
                assert!(
                    json["per_class"][class.name()][key].is_f64(),
                    "{class} {key}"
                );
            }
        }
        assert_eq!(json["confusion"][3][0], 1);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn markdown_tables() {
        let md = evaluate(&sample(), "edge", "TEST", "paper")
            .unwrap()
            .to_markdown();
        assert!(md.starts_with("## edge on TEST"));
        for class in CLASSES {
            assert!(md.contains(class.name()), "{class}");
        }
        // EOSINOPHIL: AUC 10/12, accuracy 6/8, sensitivity 1/2, specificity 5/6, precision 1/2.
        assert!(
            md.contains("| EOSINOPHIL | 83.33% | 75.00% | 50.00% | 83.33% | 50.00% |"),
            "{md}"
        );
        assert!(
            md.contains("| LYMPHOCYTE | 100.00% | 87.50% | 100.00% | 83.33% | 66.67% |"),
            "{md}"
        );
        // Average: AUC 43/48 = 89.58%, accuracy 5/8; loss with 4 decimals.
        let loss = [0.70f64, 0.20, 0.80, 0.60, 0.40, 0.20, 0.80, 0.25]
            .iter()
            .map(|p| -p.ln())
            .sum::<f64>()
            / 8.0;
        assert!(
            md.contains(&format!("| 89.58% | 62.50% | {loss:.4} |")),
            "{md}"
        );
        assert!(
            md.contains("| True \\ Predicted | EOSINOPHIL | LYMPHOCYTE | MONOCYTE | NEUTROPHIL |")
        );
        assert!(md.contains("| NEUTROPHIL | 1 | 0 | 0 | 1 |"), "{md}");
    }

    /// Scores drawn from a coarse grid so that ties are common.
    fn coarse_scores() -> impl Strategy<Value = Scores> {
        prop::collection::vec(
            ([0u8..6, 0u8..6, 0u8..6, 0u8..6], 0usize..NUM_CLASSES),
            1..60,
        )
        .prop_map(|rows| {
            let (probs, labels) = rows
                .into_iter()
                .map(|(raw, label)| {
                    let total: f32 = raw.iter().map(|&r| f32::from(r) + 0.5).sum();
                    (raw.map(|r| (f32::from(r) + 0.5) / total), label)
                })
                .unzip();
            Scores { probs, labels }
        })
    }

    proptest! {
        #[test]
        fn auc_matches_pairwise_count_and_roc_area(scores in coarse_scores()) {
            let report = evaluate(&scores, "a", "s", "r").unwrap();
            for class in CLASSES {
                let c = class.index();
                let pairs: Vec<(f32, bool)> =
                    scores.probs.iter().zip(&scores.labels).map(|(p, &t)| (p[c], t == c)).collect();
                let auc = report.per_class[class.name()].auc;
                let has_both = pairs.iter().any(|p| p.1) && pairs.iter().any(|p| !p.1);
                if !has_both {
                    prop_assert!(auc.is_nan());
                    prop_assert!(roc_curve(&scores, c).is_empty());
                    continue;
                }
                prop_assert!((auc - pairwise_auc(&pairs)).abs() < 1e-9);
                let points = roc_curve(&scores, c);
                prop_assert_eq!(points[0], (0.0, 0.0));
                prop_assert_eq!(*points.last().unwrap(), (1.0, 1.0));
                prop_assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
                prop_assert!((trapezoid(&points) - auc).abs() < 1e-9);
            }
        }

        #[test]
        fn counts_are_consistent(scores in coarse_scores()) {
            let r = evaluate(&scores, "a", "s", "r").unwrap();
            prop_assert_eq!(r.confusion.iter().flatten().sum::<u64>(), scores.len() as u64);
            for (c, class) in CLASSES.iter().enumerate() {
                prop_assert_eq!(r.confusion[c].iter().sum::<u64>(),
                    scores.labels.iter().filter(|&&l| l == c).count() as u64);
                let m = r.per_class[class.name()];
                for x in [m.accuracy, m.sensitivity, m.specificity, m.precision] {
                    prop_assert!((0.0..=1.0).contains(&x));
                }
            }
            let diag: u64 = (0..NUM_CLASSES).map(|c| r.confusion[c][c]).sum();
            prop_assert!((r.average.accuracy - diag as f64 / scores.len() as f64).abs() < 1e-12);
            prop_assert!(r.average.loss >= 0.0);
        }
    }
}
