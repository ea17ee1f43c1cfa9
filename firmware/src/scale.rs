//! The slide's own ruler: the typical red-cell diameter of a frame or a crop, in pixels.
//!
//! Red cells are about 7.5 µm across on every microscope, so their diameter in pixels says how far a frame
//! is from the training scale ([`crate::preprocess::REFERENCE_RBC_PX`]). This module measures it from
//! colour and shape only; it knows nothing of models, cells' types or cameras, and it never guesses: a
//! frame with no measurable red cell is an error ([`ScaleError`]), not a default.
//!
//! The method, on the frame brought near the training scale by integer block averaging
//! ([`crate::preprocess::scale_factor`]):
//! 1. **Label** every pixel: *unknown* (stained nuclei and platelets, `B − G` ≥ [`NUCLEUS_BG`], and the
//!    black fill that augmentation leaves, all channels ≤ [`BLACK`]), then *cell* or *plasma* by Otsu's
//!    threshold on the 3×3-smoothed green channel (haemoglobin absorbs green; the plasma does not). A
//!    frame whose two classes differ by less than [`MIN_CONTRAST`] green levels has no red cells.
//! 2. **Fill** the plasma pockets enclosed by cells (the pale centre of a biconcave red cell, the hole of a
//!    ring-shaped one), i.e. plasma components that do not touch the frame edge.
//! 3. **Measure**: the exact Euclidean distance of every pixel to the plasma; its local maxima are the
//!    centres of inscribed discs, their value the radius. Overlapping red cells keep their own maxima; a
//!    cell cut by the frame edge keeps its true radius when its centre is inside (the frame edge is not
//!    plasma). A disc is kept only when its centre lies at least [`ScaleParams::clearance`] radii from
//!    anything unknown and from the frame edge, which drops the white cell (its disc holds its nucleus) and
//!    the half-discs of cells centred outside the frame.
//! 4. **Summarise**: every covered pixel votes for the largest kept disc covering it; the area-weighted
//!    median radius is the typical one ([`Summary::Area`]: fragments and bumps of an outline cover little).
//!    The diameter is `2 r − 1` (the boundary lies half a pixel inside the first plasma pixel), back in the
//!    frame's own pixels. The red cells counted are the discs, one per cell (a disc whose centre lies in a
//!    larger one is the same cell), of at least half that radius; too few is an error.
//! 5. **Check**: a red cell is never much smaller than a white cell's nucleus. When the frame holds a
//!    nucleus (its largest 8-connected piece of nucleus-coloured pixels, at least [`MIN_NUCLEUS_PIXELS`]),
//!    a typical diameter under [`ScaleParams::min_nucleus_ratio`] of the nucleus's equivalent diameter is not
//!    a red cell's (granules, the rim of a cytoplasm, specks) and is an error, not a scale.
//!
//! What it measures is the inscribed diameter of the colour mask: on BCCD it reads the hand-drawn red-cell
//! boxes about 20 % small (oval and overlapping cells, soft edges; `models/results/rbc-scale.md`). The
//! training-scale reference is measured the same way, so the ratio that rescales a frame is unaffected.

use crate::frame::Frame;
use crate::segment::components::Labeller;

/// Pixels with `B − G` at least this are stained nuclei or platelets, never red cells (a red cell's `B − G`
/// stays below about 40 in BCCD, a nucleus is about 100).
pub const NUCLEUS_BG: i32 = 50;
/// Pixels whose channels are all at most this are not the slide (the black fill of rotated Kaggle images).
pub const BLACK: u8 = 40;
/// Fewest green levels between the mean of the cell class and of the plasma class for red cells to exist.
pub const MIN_CONTRAST: f32 = 15.0;
/// Smallest radius (in pixels near the training scale) a red cell can have; smaller discs are specks.
pub const MIN_RADIUS: f32 = 4.0;

/// Fewest pixels (near the training scale) the largest nucleus piece needs for step 5's check.
pub const MIN_NUCLEUS_PIXELS: usize = 200;

/// How the estimator decides; [`ScaleParams::default`] is the shipped choice (see
/// `models/results/rbc-scale.md` for how it was picked on BCCD and Kaggle TRAIN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleParams {
    /// A disc of radius `r` is kept only when its centre is at least `clearance × r` from any unknown
    /// pixel (nucleus, platelet, black fill) and from the frame edge.
    pub clearance: f32,
    /// Fill enclosed plasma pockets (pale centres, ring-shaped cells) before measuring.
    pub fill_holes: bool,
    /// Fewest red cells (kept discs of at least half the typical radius) for a measurement.
    pub min_cells: usize,
    /// Which median is the typical diameter.
    pub summary: Summary,
    /// Where the cell / plasma cut lies between the two Otsu classes' mean greens (0: the cells' mean,
    /// 1: the plasma's); `None`: Otsu's own threshold.
    pub cut: Option<f32>,
    /// Smallest typical red-cell diameter, as a share of the equivalent diameter of the frame's largest
    /// nucleus, that is taken for red cells (step 5); `None`: not checked. A red cell is 7–8 µm; the largest
    /// nucleus of a normal white cell (a monocyte's) about 10–12 µm across its area; with the estimator's
    /// inscribed diameter reading about 20 % small, a red cell measures at least about half a nucleus. The
    /// default, a third, leaves that margin again; it was set from these sizes, before any frame was
    /// measured with it.
    pub min_nucleus_ratio: Option<f32>,
}

/// Which median of the kept discs is the typical red-cell diameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    /// The median over discs (one vote per disc).
    Disc,
    /// The area-weighted median: each covered pixel votes for the largest disc covering it, so fragments
    /// and bumps of a cell's outline (small discs, little area) hardly count.
    Area,
}

impl Default for ScaleParams {
    fn default() -> Self {
        ScaleParams {
            clearance: 0.5,
            fill_holes: true,
            min_cells: 2,
            summary: Summary::Area,
            cut: None,
            min_nucleus_ratio: Some(1.0 / 3.0),
        }
    }
}

/// A measured red-cell scale.
#[derive(Clone, Debug, PartialEq)]
pub struct RbcScale {
    /// The median red-cell diameter, in pixels of the frame given.
    pub diameter_px: f32,
    /// The red cells (discs) it rests on.
    pub cells: usize,
    /// Every kept disc's diameter, in pixels of the frame given, ascending.
    pub diameters: Vec<f32>,
}

/// Why no red-cell diameter could be measured.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScaleError {
    /// No pixels stand out from the plasma as red cells (a blank field, or a crop that is all white cell).
    #[error(
        "no red cell can be measured: nothing in the {width}x{height} image differs from the plasma like \
         red cells do (green contrast {contrast:.0}, at least {MIN_CONTRAST:.0} needed)"
    )]
    NoContrast {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Green levels between the two Otsu classes (0 when there is nothing to split).
        contrast: f32,
    },
    /// Red-cell coloured pixels exist but too few whole-enough red cells could be measured.
    #[error(
        "no red cell can be measured: {found} measurable red cell(s) in the {width}x{height} image, at \
         least {needed} needed"
    )]
    TooFewCells {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Discs kept.
        found: usize,
        /// [`ScaleParams::min_cells`].
        needed: usize,
    },
    /// What measures as red cells is too small beside the frame's nucleus to be red cells.
    #[error(
        "no red cell can be measured: what measures {diameter:.1} px in the {width}x{height} image is less \
         than {ratio:.2} of its largest nucleus ({nucleus:.1} px across), so not red cells"
    )]
    Implausible {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// The typical diameter found, in the frame's pixels.
        diameter: f32,
        /// The largest nucleus's equivalent diameter, in the frame's pixels.
        nucleus: f32,
        /// [`ScaleParams::min_nucleus_ratio`].
        ratio: f32,
    },
}

/// Smallest and largest red-cell diameter a microscope may be set to, in pixels.
pub const RBC_PX_RANGE: std::ops::RangeInclusive<f32> = 4.0..=2000.0;

/// How a microscope's red cells are sized (`--rbc-px N|auto`): a calibrated diameter, or measured in each
/// frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RbcPx {
    /// This microscope's red cells measure this many pixels (as [`estimate_rbc_diameter`] measures them).
    Fixed(f32),
    /// Measured in each frame ([`estimate_rbc_diameter`]).
    Auto,
}

impl RbcPx {
    /// The red-cell diameter of `frame`: the fixed one, or measured.
    pub fn diameter(self, frame: &Frame) -> Result<f32, ScaleError> {
        match self {
            RbcPx::Fixed(d) => Ok(d),
            RbcPx::Auto => estimate_rbc_diameter(frame).map(|s| s.diameter_px),
        }
    }
}

impl std::str::FromStr for RbcPx {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(RbcPx::Auto);
        }
        match s.parse::<f32>() {
            Ok(v) if RBC_PX_RANGE.contains(&v) => Ok(RbcPx::Fixed(v)),
            _ => Err(format!(
                "expected a red-cell diameter in pixels from {} to {}, or `auto`",
                RBC_PX_RANGE.start(),
                RBC_PX_RANGE.end()
            )),
        }
    }
}

/// The typical red-cell diameter of a frame or a crop, in its own pixels, with [`ScaleParams::default`].
pub fn estimate_rbc_diameter(frame: &Frame) -> Result<RbcScale, ScaleError> {
    estimate_rbc_diameter_with(frame, &ScaleParams::default())
}

/// [`estimate_rbc_diameter`] with other parameters (to compare candidates on reference data).
pub fn estimate_rbc_diameter_with(
    frame: &Frame,
    params: &ScaleParams,
) -> Result<RbcScale, ScaleError> {
    let factor = crate::preprocess::scale_factor(frame.width(), frame.height());
    let work = frame.downscale(factor);
    let (w, h) = (work.width() as usize, work.height() as usize);
    let no_contrast = |contrast| ScaleError::NoContrast {
        width: frame.width(),
        height: frame.height(),
        contrast,
    };

    // 1. Label: unknown, then cell / plasma by Otsu on the smoothed green.
    let green = smooth_green(&work);
    let unknown: Vec<bool> = work
        .data()
        .chunks_exact(3)
        .map(|p| p[2] as i32 - p[1] as i32 >= NUCLEUS_BG || p.iter().all(|&v| v <= BLACK))
        .collect();
    let mut hist = [0u64; 256];
    for (g, _) in green.iter().zip(&unknown).filter(|(_, &u)| !u) {
        hist[*g as usize] += 1;
    }
    let Some((otsu_t, m0, m1)) = otsu(&hist) else {
        return Err(no_contrast(0.0));
    };
    let contrast = m1 - m0;
    if contrast < MIN_CONTRAST {
        return Err(no_contrast(contrast));
    }
    let t = match params.cut {
        None => otsu_t,
        Some(c) => (m0 + c * contrast).clamp(0.0, 255.0) as u8,
    };
    // Cell: darker green than the threshold (unknown pixels are not plasma either).
    let mut cell: Vec<bool> = green
        .iter()
        .zip(&unknown)
        .map(|(&g, &u)| u || g <= t)
        .collect();

    // 2. Fill enclosed plasma pockets.
    if params.fill_holes {
        fill_holes(&mut cell, w, h);
    }

    // 3. Distances to the plasma and to the unknown or the frame edge.
    let to_plasma = edt(&cell.iter().map(|&c| !c).collect::<Vec<_>>(), w, h);
    let to_unknown = edt(&unknown, w, h);
    let mut peaks = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if unknown[i] || !cell[i] {
                continue;
            }
            let v = to_plasma[i];
            if v < MIN_RADIUS * MIN_RADIUS {
                continue;
            }
            let is_max = (y.saturating_sub(1)..=(y + 1).min(h - 1)).all(|ny| {
                (x.saturating_sub(1)..=(x + 1).min(w - 1)).all(|nx| to_plasma[ny * w + nx] <= v)
            });
            if !is_max {
                continue;
            }
            let r = v.sqrt();
            let edge = (x + 1).min(y + 1).min(w - x).min(h - y) as f32;
            let clear = to_unknown[i].sqrt().min(edge);
            if clear >= params.clearance * r {
                peaks.push((r, x as f32, y as f32));
            }
        }
    }
    // Largest first: each pixel is claimed by the largest kept disc that covers it (its opening radius).
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
    let r_median = match params.summary {
        Summary::Disc => None,
        Summary::Area => area_median(&peaks, w, h),
    };
    // One disc per cell: those whose centre is outside every larger kept disc.
    let mut kept: Vec<(f32, f32, f32)> = Vec::new();
    for &p in &peaks {
        if kept
            .iter()
            .all(|k| (k.1 - p.1).powi(2) + (k.2 - p.2).powi(2) > k.0 * k.0)
        {
            kept.push(p);
        }
    }
    let r_median = r_median.unwrap_or_else(|| {
        let mut r: Vec<f32> = kept.iter().map(|k| k.0).collect();
        r.sort_by(f32::total_cmp);
        median(&r)
    });
    // Cells: kept discs of at least half the typical radius (smaller ones are fragments and bumps).
    kept.retain(|k| k.0 >= 0.5 * r_median);
    let needed = params.min_cells.max(1);
    if kept.len() < needed {
        return Err(ScaleError::TooFewCells {
            width: frame.width(),
            height: frame.height(),
            found: kept.len(),
            needed,
        });
    }

    // 4. The diameter, in the frame's own pixels.
    let diameter = |r: f32| (2.0 * r - 1.0) * factor as f32;

    // 5. Not smaller than a red cell can be beside the largest nucleus.
    if let Some(ratio) = params.min_nucleus_ratio {
        let nuclear: Vec<u8> = work
            .data()
            .chunks_exact(3)
            .map(|p| {
                u8::from(p[2] as i32 - p[1] as i32 >= NUCLEUS_BG && !p.iter().all(|&v| v <= BLACK))
            })
            .collect();
        let mut pieces = Vec::new();
        Labeller::default().label(&nuclear, w as u32, h as u32, &mut pieces);
        let largest = pieces.iter().map(|c| c.area as usize).max().unwrap_or(0);
        if largest >= MIN_NUCLEUS_PIXELS {
            let nucleus = 2.0 * (largest as f32 / std::f32::consts::PI).sqrt() * factor as f32;
            let d = diameter(r_median);
            if d < ratio * nucleus {
                return Err(ScaleError::Implausible {
                    width: frame.width(),
                    height: frame.height(),
                    diameter: d,
                    nucleus,
                    ratio,
                });
            }
        }
    }
    let mut diameters: Vec<f32> = kept.iter().map(|k| diameter(k.0)).collect();
    diameters.sort_by(f32::total_cmp);
    Ok(RbcScale {
        diameter_px: diameter(r_median),
        cells: diameters.len(),
        diameters,
    })
}

/// The median of sorted values (0 for none).
fn median(v: &[f32]) -> f32 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The area-weighted median radius: every pixel covered by a disc (`peaks` sorted by radius, largest
/// first) counts once, with the radius of the largest disc covering it; `None` when nothing is covered.
fn area_median(peaks: &[(f32, f32, f32)], w: usize, h: usize) -> Option<f32> {
    let mut claimed = vec![false; w * h];
    let mut area = vec![0u64; peaks.len()];
    for (k, &(r, cx, cy)) in peaks.iter().enumerate() {
        let (x0, x1) = (
            (cx - r).floor().max(0.0) as usize,
            ((cx + r).ceil() as usize).min(w - 1),
        );
        let (y0, y1) = (
            (cy - r).floor().max(0.0) as usize,
            ((cy + r).ceil() as usize).min(h - 1),
        );
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                let i = y * w + x;
                if !claimed[i] && dx * dx + dy * dy < r * r {
                    claimed[i] = true;
                    area[k] += 1;
                }
            }
        }
    }
    let total: u64 = area.iter().sum();
    let mut acc = 0;
    // Ascending radius: the radius at which half the covered area is reached.
    for (k, a) in area.iter().enumerate().rev() {
        acc += a;
        if 2 * acc >= total && total > 0 {
            return Some(peaks[k].0);
        }
    }
    None
}

/// The green channel, 3×3 box-smoothed (edges clamped), against JPEG noise.
fn smooth_green(frame: &Frame) -> Vec<u8> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let g: Vec<u32> = frame.data().chunks_exact(3).map(|p| p[1] as u32).collect();
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0;
            for dy in [-1i64, 0, 1] {
                for dx in [-1i64, 0, 1] {
                    let sy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                    let sx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                    acc += g[sy * w + sx];
                }
            }
            out[y * w + x] = ((acc + 4) / 9) as u8;
        }
    }
    out
}

/// Otsu's threshold of a histogram (values ≤ it are the dark class) and the two classes' means (dark,
/// bright); `None` when there are not two classes.
fn otsu(hist: &[u64; 256]) -> Option<(u8, f32, f32)> {
    let total: u64 = hist.iter().sum();
    let sum: f64 = hist
        .iter()
        .enumerate()
        .map(|(v, &n)| v as f64 * n as f64)
        .sum();
    let (mut n0, mut s0) = (0u64, 0f64);
    let mut best: Option<(f64, u8, f32, f32)> = None;
    for (t, &n) in hist.iter().enumerate().take(255) {
        n0 += n;
        s0 += t as f64 * n as f64;
        let n1 = total - n0;
        if n0 == 0 || n1 == 0 {
            continue;
        }
        let m0 = s0 / n0 as f64;
        let m1 = (sum - s0) / n1 as f64;
        let between = n0 as f64 * n1 as f64 * (m1 - m0) * (m1 - m0);
        if best.is_none_or(|b| between > b.0) {
            best = Some((between, t as u8, m0 as f32, m1 as f32));
        }
    }
    best.map(|(_, t, m0, m1)| (t, m0, m1))
}

/// Turns plasma pixels (`false`) not 4-connected to the frame edge into cell pixels.
fn fill_holes(cell: &mut [bool], w: usize, h: usize) {
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w)
        .flat_map(|x| [x, (h - 1) * w + x])
        .chain((0..h).flat_map(|y| [y * w, y * w + w - 1]))
        .filter(|&i| !cell[i])
        .collect();
    while let Some(i) = stack.pop() {
        if outside[i] || cell[i] {
            continue;
        }
        outside[i] = true;
        let (x, y) = (i % w, i / w);
        if x > 0 {
            stack.push(i - 1);
        }
        if x + 1 < w {
            stack.push(i + 1);
        }
        if y > 0 {
            stack.push(i - w);
        }
        if y + 1 < h {
            stack.push(i + w);
        }
    }
    for (c, o) in cell.iter_mut().zip(&outside) {
        *c = !o;
    }
}

/// Exact squared Euclidean distance of every pixel to the nearest `source` pixel (Felzenszwalb and
/// Huttenlocher's lower envelope of parabolas, columns then rows); about `1e10` where there is none.
fn edt(source: &[bool], w: usize, h: usize) -> Vec<f32> {
    // f64 keeps `FAR + q²` exact for every frame side (squared distances stay below 1e9).
    const FAR: f64 = 1e10;
    let mut d: Vec<f64> = source.iter().map(|&s| if s { 0.0 } else { FAR }).collect();
    let mut line = Vec::with_capacity(w.max(h));
    let mut out = Vec::with_capacity(w.max(h));
    for x in 0..w {
        line.clear();
        line.extend((0..h).map(|y| d[y * w + x]));
        edt_1d(&line, &mut out);
        for y in 0..h {
            d[y * w + x] = out[y];
        }
    }
    for y in 0..h {
        line.clear();
        line.extend_from_slice(&d[y * w..(y + 1) * w]);
        edt_1d(&line, &mut out);
        d[y * w..(y + 1) * w].copy_from_slice(&out);
    }
    d.into_iter().map(|v| v as f32).collect()
}

/// One dimension of [`edt`]: `out[q] = min_p (f[p] + (q − p)²)`.
fn edt_1d(f: &[f64], out: &mut Vec<f64>) {
    let n = f.len();
    out.clear();
    out.resize(n, 0.0);
    if n == 0 {
        return;
    }
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let meet = |q: usize, p: usize| {
        ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q - p) as f64)
    };
    for q in 1..n {
        let mut s = meet(q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = meet(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let dq = q as f64 - v[k] as f64;
        *o = dq * dq + f[v[k]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLASMA: [u8; 3] = [205, 200, 195];
    const RED: [u8; 3] = [180, 140, 150];
    const NUCLEUS: [u8; 3] = [90, 40, 150];
    const CYTOPLASM: [u8; 3] = [190, 160, 175];

    /// A `w × h` plasma frame with discs `(cx, cy, diameter, colour)` painted in order.
    fn frame(w: u32, h: u32, discs: &[(f32, f32, f32, [u8; 3])]) -> Frame {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let mut c = PLASMA;
                for &(cx, cy, d, col) in discs {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    if dx * dx + dy * dy < d * d / 4.0 {
                        c = col;
                    }
                }
                data.extend_from_slice(&c);
            }
        }
        Frame::new(w, h, data).unwrap()
    }

    /// Red discs of diameter `d` on a grid, every other pair overlapping, the last column cut by the edge.
    fn field(w: u32, h: u32, d: f32) -> Vec<(f32, f32, f32, [u8; 3])> {
        let mut v = Vec::new();
        let mut y = d;
        while y < h as f32 {
            let mut x = d;
            while x < w as f32 + d / 3.0 {
                v.push((x, y, d, RED));
                // An overlapping neighbour, a third of a diameter in.
                v.push((x + 0.7 * d, y + 0.2 * d, d, RED));
                x += 2.4 * d;
            }
            y += 1.6 * d;
        }
        v
    }

    fn assert_within(got: f32, want: f32, tol: f32) {
        assert!(
            (got - want).abs() <= tol * want,
            "estimated {got}, true {want}"
        );
    }

    #[test]
    fn discs_of_20_px_overlapping_and_cut_are_measured_within_10_percent() {
        let f = frame(320, 240, &field(320, 240, 20.0));
        let s = estimate_rbc_diameter(&f).unwrap();
        assert!(s.cells >= 10, "{s:?}");
        assert_within(s.diameter_px, 20.0, 0.1);
    }

    #[test]
    fn discs_of_40_px_overlapping_and_cut_are_measured_within_10_percent() {
        let f = frame(320, 240, &field(320, 240, 40.0));
        let s = estimate_rbc_diameter(&f).unwrap();
        assert_within(s.diameter_px, 40.0, 0.1);
    }

    #[test]
    fn a_camera_frame_is_measured_in_its_own_pixels() {
        // 640×480 is block-averaged by 2 inside; the answer is in the frame's pixels.
        let f = frame(640, 480, &field(640, 480, 80.0));
        let s = estimate_rbc_diameter(&f).unwrap();
        assert_within(s.diameter_px, 80.0, 0.1);
    }

    #[test]
    fn the_white_cell_is_not_a_red_cell() {
        // A white cell twice a red cell's size (pink cytoplasm, violet nucleus) among 30-px red cells.
        let mut discs = vec![
            (160.0, 120.0, 90.0, CYTOPLASM),
            (160.0, 120.0, 55.0, NUCLEUS),
        ];
        for (x, y) in [
            (40.0, 40.0),
            (90.0, 200.0),
            (270.0, 60.0),
            (260.0, 190.0),
            (40.0, 150.0),
        ] {
            discs.push((x, y, 30.0, RED));
        }
        let s = estimate_rbc_diameter(&frame(320, 240, &discs)).unwrap();
        assert_eq!(s.cells, 5, "{s:?}");
        assert_within(s.diameter_px, 30.0, 0.1);
    }

    #[test]
    fn specks_far_smaller_than_the_nucleus_are_not_red_cells() {
        // The second lab's kind of crop: a white cell filling most of it, four 12-px pale specks at the
        // corners (granules, a cytoplasm's rim) where red cells would be.
        let mut discs = vec![(60.0, 60.0, 100.0, CYTOPLASM), (60.0, 60.0, 60.0, NUCLEUS)];
        for (x, y) in [(9.0, 9.0), (111.0, 9.0), (9.0, 111.0), (111.0, 111.0)] {
            discs.push((x, y, 12.0, RED));
        }
        let f = frame(120, 120, &discs);
        let unchecked = ScaleParams {
            min_nucleus_ratio: None,
            ..ScaleParams::default()
        };
        let s = estimate_rbc_diameter_with(&f, &unchecked).unwrap();
        assert!(s.diameter_px < 20.0, "{s:?}");
        let e = estimate_rbc_diameter(&f).unwrap_err();
        assert!(matches!(e, ScaleError::Implausible { .. }), "{e}");
        assert!(e.to_string().contains("no red cell can be measured"), "{e}");
        assert!(e.to_string().contains("nucleus"), "{e}");
    }

    #[test]
    fn ring_shaped_red_cells_are_filled() {
        // Biconcave cells with a centre as pale as the plasma.
        let mut discs = Vec::new();
        for (x, y) in [
            (50.0, 50.0),
            (150.0, 60.0),
            (250.0, 70.0),
            (100.0, 170.0),
            (220.0, 180.0),
        ] {
            discs.push((x, y, 44.0, RED));
            discs.push((x, y, 16.0, PLASMA));
        }
        let s = estimate_rbc_diameter(&frame(320, 240, &discs)).unwrap();
        assert_within(s.diameter_px, 44.0, 0.1);
    }

    #[test]
    fn a_blank_field_has_no_red_cell() {
        let f = Frame::filled(320, 240, PLASMA).unwrap();
        let e = estimate_rbc_diameter(&f).unwrap_err();
        assert!(matches!(e, ScaleError::NoContrast { .. }), "{e}");
        assert!(e.to_string().contains("no red cell"), "{e}");
    }

    #[test]
    fn a_crop_that_is_all_white_cell_has_no_red_cell() {
        // The second lab's kind of crop: one white cell filling it, no red cell.
        let f = frame(
            120,
            120,
            &[(60.0, 60.0, 110.0, CYTOPLASM), (60.0, 60.0, 60.0, NUCLEUS)],
        );
        let e = estimate_rbc_diameter(&f).unwrap_err();
        assert!(e.to_string().contains("no red cell"), "{e}");
    }

    #[test]
    fn one_pixel_and_black_frames_are_errors_not_panics() {
        for f in [
            Frame::filled(1, 1, RED).unwrap(),
            Frame::filled(3, 200, RED).unwrap(),
            Frame::filled(320, 240, [0, 0, 0]).unwrap(),
        ] {
            assert!(estimate_rbc_diameter(&f).is_err());
        }
    }

    proptest::proptest! {
        /// Any pixels give a measurement or an error, never a panic; a measurement rests on at least
        /// `min_cells` discs and is a positive number.
        #[test]
        fn any_frame_is_measured_or_refused(w in 1u32..90, h in 1u32..90, seed in proptest::prelude::any::<u64>()) {
            let mut x = seed | 1;
            let data = (0..w * h * 3)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            if let Ok(s) = estimate_rbc_diameter(&Frame::new(w, h, data).unwrap()) {
                proptest::prop_assert!(s.cells >= ScaleParams::default().min_cells);
                proptest::prop_assert!(s.diameter_px.is_finite() && s.diameter_px > 0.0);
            }
        }
    }

    #[test]
    fn edt_matches_brute_force() {
        let (w, h) = (13, 9);
        let src: Vec<bool> = (0..w * h).map(|i| i % 17 == 3 || i == 50).collect();
        let d = edt(&src, w, h);
        for y in 0..h {
            for x in 0..w {
                let best = (0..w * h)
                    .filter(|&j| src[j])
                    .map(|j| {
                        let (dx, dy) = ((j % w) as f32 - x as f32, (j / w) as f32 - y as f32);
                        dx * dx + dy * dy
                    })
                    .fold(f32::MAX, f32::min);
                assert_eq!(d[y * w + x], best, "({x}, {y})");
            }
        }
    }
}
