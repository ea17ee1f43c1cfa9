//! Stain normalisation at inference: each model input's colours brought to the training lab's before the
//! net sees them (issue 13, item 2), so a model trained on one lab's stain is shown another lab's cells in
//! the colours it knows. The training lab's reference travels in the card ([`crate::model::ModelCard`]
//! `stain_norm`); a card without one (every card before this module) leaves the input as it is.
//!
//! Two named methods, both fitted on each input alone (nothing is learned from the lab):
//! - [`StainNorm::Reinhard`] (Reinhard et al. 2001): the input's mean and spread of each channel in the
//!   decorrelated `lαβ` space matched to the reference's.
//! - [`StainNorm::Macenko`] (Macenko et al. 2009): in optical density against the input's own white point
//!   (its plasma), the two stain vectors found as the extreme angles of the stained pixels in the plane of
//!   their two main axes, each pixel's two stain amounts solved for, their 99th percentiles scaled to the
//!   reference's, and the pixel rebuilt from the reference's stain vectors and white point.
//!
//! Pixels of the black fill that augmentation leaves (every channel at most [`crate::scale::BLACK`]) are
//! measured by neither and stay as they are. An input with too few pixels to fit (fewer than
//! [`MIN_PIXELS`] measurable, or for Macenko stained) is left as it is.

use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::preprocess;
use crate::scale::BLACK;

/// Fewest measured (and, for Macenko, stained) pixels an input needs to be normalised.
pub const MIN_PIXELS: usize = 64;
/// Macenko's transparency threshold β (Macenko et al. 2009): a pixel is stained when its optical density
/// vector is at least this long. (Macenko asks it of every channel; in a blood smear that leaves out the red
/// cells, whose stain barely absorbs red light, and with them the second stain.)
pub const MACENKO_BETA: f32 = 0.15;
/// Macenko's robust extreme, in percent: the stain angles at this percentile and at 100 minus it (α).
pub const MACENKO_ALPHA: f32 = 1.0;
/// The percentile of each stain's amount that is brought to the reference's.
pub const MACENKO_MAX_PERCENTILE: f32 = 99.0;
/// Side of the square whose mean is the white point (as [`preprocess::white_balance`]).
pub const WHITE_BLOCK: u32 = 8;

/// A training lab's colours, and how an input is brought to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum StainNorm {
    /// Each `lαβ` channel's mean and standard deviation over the input matched to these.
    Reinhard {
        /// Reference mean of `l`, `α`, `β`.
        mean: [f32; 3],
        /// Reference standard deviation of `l`, `α`, `β`.
        std: [f32; 3],
    },
    /// Stain vectors, stain amounts and white point matched to these.
    Macenko(MacenkoFit),
}

/// One image's Macenko stains (or the mean of many: a reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MacenkoFit {
    /// The white point per channel, 0–255.
    pub white: [f32; 3],
    /// The two unit stain vectors in optical density, the one absorbing more red light first (the
    /// nuclear stain).
    pub stains: [[f32; 3]; 2],
    /// The [`MACENKO_MAX_PERCENTILE`] of each stain's amount.
    pub max_conc: [f32; 2],
}

/// The two named methods, for commands that measure a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// [`StainNorm::Reinhard`].
    Reinhard,
    /// [`StainNorm::Macenko`].
    Macenko,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Reinhard => "reinhard",
            Method::Macenko => "macenko",
        })
    }
}

impl StainNorm {
    /// Its method.
    pub fn method(&self) -> Method {
        match self {
            StainNorm::Reinhard { .. } => Method::Reinhard,
            StainNorm::Macenko(_) => Method::Macenko,
        }
    }

    /// The reference of `method` for a lab: the mean of the per-image fits of `images` (those that can be
    /// fitted), the stain vectors renormalised; `None` when none can.
    pub fn reference<'a>(
        method: Method,
        images: impl IntoIterator<Item = &'a Frame>,
    ) -> Option<Self> {
        let mut n = 0usize;
        match method {
            Method::Reinhard => {
                let (mut m, mut s) = ([0f64; 3], [0f64; 3]);
                for (mean, std) in images.into_iter().filter_map(reinhard_stats) {
                    n += 1;
                    for c in 0..3 {
                        m[c] += f64::from(mean[c]);
                        s[c] += f64::from(std[c]);
                    }
                }
                (n > 0).then(|| StainNorm::Reinhard {
                    mean: m.map(|v| (v / n as f64) as f32),
                    std: s.map(|v| (v / n as f64) as f32),
                })
            }
            Method::Macenko => {
                let (mut w, mut st, mut mc) = ([0f64; 3], [[0f64; 3]; 2], [0f64; 2]);
                for fit in images.into_iter().filter_map(macenko_fit) {
                    n += 1;
                    for (acc, v) in w.iter_mut().zip(fit.white) {
                        *acc += f64::from(v);
                    }
                    for (acc, stain) in st.iter_mut().zip(fit.stains) {
                        for (a, v) in acc.iter_mut().zip(stain) {
                            *a += f64::from(v);
                        }
                    }
                    for (acc, v) in mc.iter_mut().zip(fit.max_conc) {
                        *acc += f64::from(v);
                    }
                }
                (n > 0).then(|| {
                    let stains = st.map(|v| {
                        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                        v.map(|x| (x / norm) as f32)
                    });
                    StainNorm::Macenko(MacenkoFit {
                        white: w.map(|v| (v / n as f64) as f32),
                        stains,
                        max_conc: mc.map(|v| (v / n as f64) as f32),
                    })
                })
            }
        }
    }

    /// `input` in the reference's colours (unchanged when it cannot be fitted).
    pub fn apply(&self, input: &Frame) -> Frame {
        match self {
            StainNorm::Reinhard { mean, std } => reinhard_apply(input, mean, std),
            StainNorm::Macenko(reference) => macenko_apply(input, reference),
        }
        .unwrap_or_else(|| input.clone())
    }
}

/// The model input as the net takes it: brought to `stain`'s reference when there is one, then normalised
/// ([`preprocess::normalize`]). The one place the classifier, `adapt` and int8 calibration do this.
pub fn input_chw(stain: Option<&StainNorm>, input: &Frame) -> Vec<f32> {
    match stain {
        Some(s) => preprocess::normalize(&s.apply(input)),
        None => preprocess::normalize(input),
    }
}

fn is_fill(px: &[u8]) -> bool {
    px.iter().all(|&v| v <= BLACK)
}

/// RGB to LMS cone responses (Reinhard et al. 2001), rows L, M, S. The host's in-graph Reinhard
/// standardisation uses the same matrices.
pub const RGB_TO_LMS: [[f32; 3]; 3] = [
    [0.3811, 0.5783, 0.0402],
    [0.1967, 0.7244, 0.0782],
    [0.0241, 0.1288, 0.8444],
];

/// log10 of the LMS responses to `lαβ` (Reinhard et al. 2001), rows l, α, β.
pub fn lms_to_lab() -> [[f32; 3]; 3] {
    let (r3, r6, r2) = (3f32.sqrt(), 6f32.sqrt(), 2f32.sqrt());
    [
        [1.0 / r3, 1.0 / r3, 1.0 / r3],
        [1.0 / r6, 1.0 / r6, -2.0 / r6],
        [1.0 / r2, -1.0 / r2, 0.0],
    ]
}

/// `u8` RGB to Reinhard's `lαβ` (via LMS and log10; `(v + 1) / 256` keeps black finite).
fn to_lab(px: &[u8], lab: &[[f32; 3]; 3]) -> [f32; 3] {
    let rgb = [0, 1, 2].map(|c| (f32::from(px[c]) + 1.0) / 256.0);
    let log_lms = RGB_TO_LMS.map(|row| (0..3).map(|c| row[c] * rgb[c]).sum::<f32>().log10());
    lab.map(|row| (0..3).map(|c| row[c] * log_lms[c]).sum())
}

/// Every pixel's `lαβ`, `None` for the fill; computed once for the statistics and the transfer.
fn lab_pixels(input: &Frame) -> Vec<Option<[f32; 3]>> {
    let lab = lms_to_lab();
    input
        .data()
        .chunks_exact(3)
        .map(|px| (!is_fill(px)).then(|| to_lab(px, &lab)))
        .collect()
}

fn from_lab([l, a, b]: [f32; 3]) -> [u8; 3] {
    let (r3, r6, r2) = (3f32.sqrt(), 6f32.sqrt(), 2f32.sqrt());
    let ll = 10f32.powf(l / r3 + a / r6 + b / r2);
    let mm = 10f32.powf(l / r3 + a / r6 - b / r2);
    let ss = 10f32.powf(l / r3 - 2.0 * a / r6);
    let r = 4.4679 * ll - 3.5873 * mm + 0.1193 * ss;
    let g = -1.2186 * ll + 2.3809 * mm - 0.1624 * ss;
    let b = 0.0497 * ll - 0.2439 * mm + 1.2045 * ss;
    [r, g, b].map(|v| (v * 256.0 - 1.0).round().clamp(0.0, 255.0) as u8)
}

/// The mean and standard deviation of each `lαβ` channel over the input's measured pixels.
fn reinhard_stats(input: &Frame) -> Option<([f32; 3], [f32; 3])> {
    lab_stats(&lab_pixels(input))
}

fn lab_stats(pixels: &[Option<[f32; 3]>]) -> Option<([f32; 3], [f32; 3])> {
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0usize);
    for lab in pixels.iter().flatten() {
        for c in 0..3 {
            sum[c] += f64::from(lab[c]);
            sq[c] += f64::from(lab[c]) * f64::from(lab[c]);
        }
        n += 1;
    }
    if n < MIN_PIXELS {
        return None;
    }
    let mean = sum.map(|s| s / n as f64);
    let std =
        std::array::from_fn(|c| ((sq[c] / n as f64 - mean[c] * mean[c]).max(0.0)).sqrt() as f32);
    Some((mean.map(|m| m as f32), std))
}

fn reinhard_apply(input: &Frame, mean: &[f32; 3], std: &[f32; 3]) -> Option<Frame> {
    let pixels = lab_pixels(input);
    let (m, s) = lab_stats(&pixels)?;
    let data = input
        .data()
        .chunks_exact(3)
        .zip(&pixels)
        .flat_map(|(px, lab)| match lab {
            None => [px[0], px[1], px[2]],
            Some(lab) => from_lab(std::array::from_fn(|c| {
                (lab[c] - m[c]) * std[c] / s[c].max(1e-6) + mean[c]
            })),
        })
        .collect();
    Frame::new(input.width(), input.height(), data).ok()
}

/// Optical density of a pixel against a white point (0 where it is at least as bright).
fn optical_density(px: &[u8], white: &[f32; 3]) -> [f32; 3] {
    std::array::from_fn(|c| (((white[c] + 1.0) / (f32::from(px[c]) + 1.0)).ln()).max(0.0))
}

/// Eigenvalues and unit eigenvectors (columns) of a symmetric 3×3 matrix, by cyclic Jacobi rotations,
/// in decreasing order of eigenvalue.
fn symmetric_eigen(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        if off < 1e-30 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // a ← Jᵀ a J, v ← v J with J the rotation in the (p, q) plane.
            for row in &mut a {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            for k in 0..3 {
                a[p][k] = c * row_p[k] - s * row_q[k];
                a[q][k] = s * row_p[k] + c * row_q[k];
            }
            for row in &mut v {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.map(|i| a[i][i]);
    let vectors = std::array::from_fn(|r| order.map(|i| v[r][i]));
    (values, vectors)
}

/// The value at `pct` percent of `v` (sorted in place; nearest rank).
fn percentile(v: &mut [f32], pct: f32) -> f32 {
    v.sort_by(f32::total_cmp);
    let i = ((pct / 100.0) * (v.len() - 1) as f32).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Each measured pixel's two stain amounts for unit stain vectors `stains` (least squares).
fn concentrations(od: &[f32; 3], stains: &[[f32; 3]; 2]) -> [f32; 2] {
    let [h, e] = stains;
    let dot = |x: &[f32; 3], y: &[f32; 3]| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
    let (hh, ee, he) = (dot(h, h), dot(e, e), dot(h, e));
    let (ho, eo) = (dot(h, od), dot(e, od));
    let det = hh * ee - he * he;
    if det.abs() < 1e-9 {
        return [ho / hh.max(1e-9), 0.0];
    }
    [(ee * ho - he * eo) / det, (hh * eo - he * ho) / det]
}

/// One input's Macenko stains; `None` when it has too few stained pixels or they span no plane.
pub fn macenko_fit(input: &Frame) -> Option<MacenkoFit> {
    let white = preprocess::white_point(input, WHITE_BLOCK).map(|v| v as f32);
    if white.iter().any(|&w| w <= f32::from(BLACK)) {
        return None;
    }
    let measured: Vec<[f32; 3]> = input
        .data()
        .chunks_exact(3)
        .filter(|p| !is_fill(p))
        .map(|p| optical_density(p, &white))
        .collect();
    let stained: Vec<[f32; 3]> = measured
        .iter()
        .filter(|od| od.iter().map(|v| v * v).sum::<f32>() >= MACENKO_BETA * MACENKO_BETA)
        .copied()
        .collect();
    if stained.len() < MIN_PIXELS {
        return None;
    }
    // The plane of the two main axes of the stained pixels' optical densities.
    let n = stained.len() as f64;
    let mean: [f64; 3] =
        std::array::from_fn(|c| stained.iter().map(|o| f64::from(o[c])).sum::<f64>() / n);
    let mut cov = [[0f64; 3]; 3];
    for o in &stained {
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += (f64::from(o[i]) - mean[i]) * (f64::from(o[j]) - mean[j]) / n;
            }
        }
    }
    let (values, vectors) = symmetric_eigen(cov);
    if values[1] <= 1e-12 {
        return None;
    }
    let axis = |k: usize| {
        let v: [f32; 3] = std::array::from_fn(|r| vectors[r][k] as f32);
        // Pointing into positive optical density.
        if v.iter().sum::<f32>() < 0.0 {
            v.map(|x| -x)
        } else {
            v
        }
    };
    let (e1, e2) = (axis(0), axis(1));
    let dot = |x: &[f32; 3], y: &[f32; 3]| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
    let mut angles: Vec<f32> = stained
        .iter()
        .map(|o| dot(o, &e2).atan2(dot(o, &e1)))
        .collect();
    let lo = percentile(&mut angles, MACENKO_ALPHA);
    let hi = percentile(&mut angles, 100.0 - MACENKO_ALPHA);
    let unit = |phi: f32| {
        let v: [f32; 3] = std::array::from_fn(|c| e1[c] * phi.cos() + e2[c] * phi.sin());
        let norm = dot(&v, &v).sqrt().max(1e-9);
        v.map(|x| x / norm)
    };
    let (a, b) = (unit(lo), unit(hi));
    let stains = if a[0] >= b[0] { [a, b] } else { [b, a] };
    let mut h: Vec<f32> = Vec::with_capacity(measured.len());
    let mut e: Vec<f32> = Vec::with_capacity(measured.len());
    for od in &measured {
        let [ch, ce] = concentrations(od, &stains);
        h.push(ch);
        e.push(ce);
    }
    let max_conc = [
        percentile(&mut h, MACENKO_MAX_PERCENTILE),
        percentile(&mut e, MACENKO_MAX_PERCENTILE),
    ];
    if max_conc
        .iter()
        .any(|&m| m.is_nan() || m <= 1e-6 || !m.is_finite())
    {
        return None;
    }
    Some(MacenkoFit {
        white,
        stains,
        max_conc,
    })
}

fn macenko_apply(input: &Frame, reference: &MacenkoFit) -> Option<Frame> {
    let fit = macenko_fit(input)?;
    let scale = [0, 1].map(|k| reference.max_conc[k] / fit.max_conc[k]);
    let data = input
        .data()
        .chunks_exact(3)
        .flat_map(|px| {
            if is_fill(px) {
                return [px[0], px[1], px[2]];
            }
            let od = optical_density(px, &fit.white);
            let conc = concentrations(&od, &fit.stains);
            std::array::from_fn(|c| {
                let out_od: f32 = (0..2)
                    .map(|k| reference.stains[k][c] * conc[k].max(0.0) * scale[k])
                    .sum();
                ((reference.white[c] + 1.0) * (-out_od).exp() - 1.0)
                    .round()
                    .clamp(0.0, 255.0) as u8
            })
        })
        .collect();
    Frame::new(input.width(), input.height(), data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic smear: plasma, "red cells" of one stain and a "nucleus" of another, under `lamp`.
    fn smear(stain_a: [f32; 3], stain_b: [f32; 3], lamp: [f32; 3]) -> Frame {
        let (w, h) = (64u32, 64u32);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - 32.0, y as f32 - 32.0);
                let r = (dx * dx + dy * dy).sqrt();
                // Amounts of each stain: a nucleus disc, a ring of the other stain, plasma outside.
                let (ca, cb) = if r < 10.0 {
                    (1.2 + 0.02 * (x % 5) as f32, 0.3)
                } else if r < 22.0 {
                    (0.1, 0.6 + 0.03 * (y % 7) as f32)
                } else {
                    (0.0, 0.0)
                };
                for c in 0..3 {
                    let od = stain_a[c] * ca + stain_b[c] * cb;
                    data.push((lamp[c] * (-od).exp()).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        Frame::new(w, h, data).unwrap()
    }

    fn unit(v: [f32; 3]) -> [f32; 3] {
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        v.map(|x| x / n)
    }

    const NUCLEAR: [f32; 3] = [0.65, 0.70, 0.29];
    const PINK: [f32; 3] = [0.07, 0.99, 0.11];

    /// The reference lab's smear.
    fn home() -> Frame {
        smear(unit(NUCLEAR), unit(PINK), [250.0, 245.0, 240.0])
    }

    /// Another lab: bluer nuclear stain, redder counterstain, a yellow lamp.
    fn other_lab() -> Frame {
        smear(
            unit([0.80, 0.60, 0.10]),
            unit([0.02, 0.90, 0.40]),
            [255.0, 250.0, 170.0],
        )
    }

    #[test]
    fn jacobi_finds_the_eigenvectors_of_a_symmetric_matrix() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (values, vectors) = symmetric_eigen(a);
        assert!(values[0] >= values[1] && values[1] >= values[2]);
        for k in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|c| a[r][c] * vectors[c][k]).sum();
                assert!((av - values[k] * vectors[r][k]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn macenko_recovers_the_stain_vectors_it_was_made_with() {
        let f = home();
        let fit = macenko_fit(&f).expect("stained");
        for (got, want) in fit.stains.iter().zip([unit(NUCLEAR), unit(PINK)]) {
            let cos: f32 = (0..3).map(|c| got[c] * want[c]).sum();
            assert!(cos > 0.99, "{got:?} against {want:?}: cos {cos}");
        }
        assert!((fit.white[0] - 250.0).abs() < 1.5, "{:?}", fit.white);
    }

    #[test]
    fn macenko_brings_another_labs_stain_and_lamp_to_the_reference() {
        let reference_frame = home();
        let reference = StainNorm::reference(Method::Macenko, [&reference_frame]).unwrap();
        let other = other_lab();
        let out = reference.apply(&other);
        let mean_abs = |a: &Frame, b: &Frame| {
            a.data()
                .iter()
                .zip(b.data())
                .map(|(x, y)| (f32::from(*x) - f32::from(*y)).abs())
                .sum::<f32>()
                / a.data().len() as f32
        };
        let before = mean_abs(&other, &reference_frame);
        let after = mean_abs(&out, &reference_frame);
        assert!(
            after < before / 4.0,
            "mean |difference| {before} before, {after} after"
        );
    }

    #[test]
    fn reinhard_matches_the_reference_statistics() {
        let reference_frame = home();
        let reference = StainNorm::reference(Method::Reinhard, [&reference_frame]).unwrap();
        let other = other_lab();
        let out = reference.apply(&other);
        let (m, s) = reinhard_stats(&out).unwrap();
        let StainNorm::Reinhard { mean, std } = &reference else {
            unreachable!()
        };
        for c in 0..3 {
            assert!(
                (m[c] - mean[c]).abs() < 0.02,
                "mean {c}: {} against {}",
                m[c],
                mean[c]
            );
            assert!(
                (s[c] - std[c]).abs() < 0.1 * std[c] + 0.01,
                "std {c}: {} against {}",
                s[c],
                std[c]
            );
        }
    }

    #[test]
    fn a_reference_applied_to_itself_changes_little_and_fill_and_blank_inputs_stay() {
        let f = home();
        for method in [Method::Reinhard, Method::Macenko] {
            let reference = StainNorm::reference(method, [&f]).unwrap();
            let out = reference.apply(&f);
            let worst = out
                .data()
                .iter()
                .zip(f.data())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 6, "{method}: a pixel moved by {worst}");
            let black = Frame::new(16, 16, vec![0; 16 * 16 * 3]).unwrap();
            assert_eq!(reference.apply(&black), black, "{method}");
            let white = Frame::new(16, 16, vec![250; 16 * 16 * 3]).unwrap();
            if method == Method::Macenko {
                assert_eq!(reference.apply(&white), white, "nothing stained");
            }
        }
    }

    #[test]
    fn a_card_reference_survives_json() {
        let f = home();
        for method in [Method::Reinhard, Method::Macenko] {
            let reference = StainNorm::reference(method, [&f]).unwrap();
            let json = serde_json::to_string(&reference).unwrap();
            assert!(json.contains(&format!("\"method\":\"{method}\"")), "{json}");
            let back: StainNorm = serde_json::from_str(&json).unwrap();
            assert_eq!(back, reference);
        }
    }
}
