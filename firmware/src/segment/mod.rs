//! White-cell detection in a smear frame: where the stained nuclei are, which lobes belong together, and a
//! box per cell.
//!
//! Steps, all at the training scale ([`crate::preprocess::to_training_scale`]) for speed:
//! 1. [`kmeans`]: integer K-means on the colour histogram; the nucleus cluster gives a nucleus mask.
//! 2. `components`: connected components of the mask; lobes close together are one cell; small ones
//!    (platelets) and faint clusters are dropped.
//! 3. [`graphcut`] (optional, on by default): each candidate's nucleus is re-cut by max-flow
//!    ([`maxflow`]) on a crop around it, seeded from the K-means result.
//! 4. A [`Cell`] per cell: its box ([`Cell::rect`], the nucleus box grown to a cell's extent) in the
//!    *original* frame's pixels, and its [`Nucleus`] at the training scale: box, area and the classifier
//!    centre (the [`crate::preprocess::LOCATE_BOX`] window of largest nucleus score inside the nucleus, as
//!    the training crops were made).
//!
//! This module knows pixels and geometry, never models or cell types. Buffers live in [`Segmenter`] and are
//! reused from frame to frame; the cell list has a fixed capacity ([`MAX_CELLS`]) with an overflow flag.
//! The default [`SegmentConfig`] was tuned on the BCCD `train` smears only (`examples/bccd_quality.rs`); its
//! two stain-agnostic steps (the white balance on the plasma and the darker-nucleus rule) were chosen between
//! named settings on a second lab's crops (`examples/site_segment.rs`) and change no BCCD result.

pub(crate) mod components;
pub mod draw;
pub mod graphcut;
pub(crate) mod integral;
pub mod kmeans;
pub mod maxflow;

use crate::cell::{Cell, Nucleus};
use crate::frame::Frame;
use crate::preprocess::{self, nucleus_score, LOCATE_BOX};
use crate::rect::Rect;
use components::{group_lobes, Component, Labeller};
use graphcut::{GraphCutConfig, Refiner};
use integral::Integral;
use kmeans::{Clustering, Histogram, KMeansConfig};

/// Most cells reported per frame; more set [`Segmentation::overflow`].
pub const MAX_CELLS: usize = 64;

/// Detection settings (lengths and areas at the training scale, 320×240 for a 640×480 frame).
///
/// The defaults were tuned on the `train` side of BCCD (`examples/bccd_quality.rs`, `--set name=value`), so their
/// pixel sizes assume BCCD's magnification: a camera or objective that shows cells larger or smaller needs them
/// re-tuned on its own annotated frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentConfig {
    /// K-means settings.
    pub kmeans: KMeansConfig,
    /// The nucleus cluster's centroid must have B − G at least this, and this much above the next
    /// cluster, or the frame has no stained nuclei (blank, over-exposed or unstained frames).
    pub min_contrast: i32,
    /// Also accept a nucleus cluster whose blue-minus-green is not `min_contrast` above the next violet
    /// cluster's when it is at least `min_contrast` darker (in green) than it: a lab whose cytoplasm stains
    /// as violet as its nuclei, only paler.
    pub accept_darker_nucleus: bool,
    /// When no cluster passes the contrast test with `kmeans.k` clusters, cluster once more with one more
    /// (a pale smear's faint nuclei can share a cluster with cytoplasm at K = 3: BCCD 00072).
    pub retry_one_more_cluster: bool,
    /// Components smaller than this are ignored when grouping lobes (noise, specks).
    pub min_lobe: u32,
    /// Lobes whose boxes are at most this far apart are one cell.
    pub lobe_gap: u32,
    /// Lobes whose centroids are at most this far apart are one cell (about a cell radius).
    pub cell_radius: u32,
    /// A grouped nucleus may span at most this many pixels per side (keeps neighbouring cells apart).
    pub max_nucleus_side: u32,
    /// A cell's nucleus covers at least this many pixels at the training scale (platelets and the fragments
    /// of cells cut by the frame edge are smaller; on BCCD's `train` side even 1,100 loses no matched cell).
    pub min_area: u32,
    /// The cell box is the nucleus box grown by this many pixels on each side ...
    pub cell_margin: u32,
    /// ... and at least this many pixels per side (centred on the nucleus).
    pub min_cell_side: u32,
    /// Graph-cut refinement of each candidate (None: K-means mask only).
    pub graphcut: Option<GraphCutConfig>,
    /// Find nuclei on the frame white-balanced on its plasma ([`preprocess::white_balance`] with squares
    /// of this side), so that a yellow or tinted background (another lab's lamp, camera or stain) does not
    /// hide the nuclei's blue; crops are still cut from the frame as it was. `None`: the colours as they
    /// are.
    pub white_balance: Option<u32>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            kmeans: KMeansConfig::default(),
            min_contrast: 30,
            accept_darker_nucleus: true,
            retry_one_more_cluster: true,
            min_lobe: 12,
            lobe_gap: 8,
            cell_radius: 55,
            max_nucleus_side: 130,
            min_area: 800,
            cell_margin: 10,
            min_cell_side: 60,
            graphcut: Some(GraphCutConfig::default()),
            white_balance: Some(8),
        }
    }
}

/// The cells of one frame.
#[derive(Clone, Debug)]
pub struct Segmentation {
    /// The frame at the training scale (crops come from it).
    pub scaled: Frame,
    /// Original pixels per training-scale pixel (an integer when scaled by the frame's size).
    pub scale: f32,
    /// Detected cells, largest nucleus first: [`Cell::rect`] in the original frame's pixels,
    /// [`Cell::nucleus`] (always set) at the training scale; no crop or prediction yet.
    pub cells: heapless::Vec<Cell, MAX_CELLS>,
    /// More than [`MAX_CELLS`] cells were found; the smallest were dropped.
    pub overflow: bool,
    /// Colour clusters (centroids in 8-bit RGB) and the nucleus cluster's index.
    pub centroids: Vec<[u8; 3]>,
    /// Index of the nucleus cluster in `centroids`.
    pub nucleus_cluster: usize,
}

/// Detects white cells; owns every per-frame buffer so a stream of frames allocates little.
#[derive(Clone, Debug)]
pub struct Segmenter {
    config: SegmentConfig,
    hist: Histogram,
    mask: Vec<u8>,
    mask_size: (u32, u32),
    labeller: Labeller,
    components: Vec<Component>,
    groups: Vec<Component>,
    refiner: Option<Refiner>,
    cut: Vec<u8>,
    integral: Integral,
    /// The white-balanced training-scale frame's bytes ([`SegmentConfig::white_balance`]).
    balanced: Vec<u8>,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter::new(SegmentConfig::default())
    }
}

impl Segmenter {
    /// A segmenter with these settings.
    pub fn new(config: SegmentConfig) -> Self {
        Segmenter {
            config,
            hist: Histogram::new(),
            mask: Vec::new(),
            mask_size: (0, 0),
            labeller: Labeller::default(),
            components: Vec::new(),
            groups: Vec::new(),
            refiner: config.graphcut.map(Refiner::new),
            cut: Vec::new(),
            integral: Integral::default(),
            balanced: Vec::new(),
        }
    }

    /// Heap bytes its per-frame buffers hold now (capacities: histogram, mask, labels, component lists, the
    /// graph-cut network and cut, the integral image, the white-balanced frame). They grow to the largest
    /// frame seen and are reused, so after the first frame a frame costs a bounded number of allocations, none per pixel: the
    /// training-scale copy of the frame (at most 320×240 pixels for a 4:3 frame) and the returned
    /// [`Segmentation`]'s centroid list; cells are a fixed-capacity [`heapless::Vec`].
    pub fn working_set_bytes(&self) -> usize {
        self.hist.heap_bytes()
            + heap_bytes(&self.mask)
            + self.labeller.heap_bytes()
            + heap_bytes(&self.components)
            + heap_bytes(&self.groups)
            + self.refiner.as_ref().map_or(0, Refiner::heap_bytes)
            + heap_bytes(&self.cut)
            + self.integral.heap_bytes()
            + heap_bytes(&self.balanced)
    }

    /// The settings.
    pub fn config(&self) -> &SegmentConfig {
        &self.config
    }

    /// The last frame's nucleus mask at the training scale (`w × h` bytes, 1 = nucleus, after refinement).
    pub fn mask(&self) -> (&[u8], u32, u32) {
        (&self.mask, self.mask_size.0, self.mask_size.1)
    }

    /// Clusters a training-scale frame's colours (step 1 alone; used by benches and comparisons).
    pub fn cluster(&mut self, scaled: &Frame) -> Clustering {
        self.hist.clear();
        self.hist.add_frame(scaled);
        kmeans::kmeans(&self.hist, &self.config.kmeans)
    }

    /// Finds the white cells of a frame of any size.
    pub fn segment(&mut self, frame: &Frame) -> Segmentation {
        self.segment_with(frame, preprocess::Scaling::FrameSize)
    }

    /// [`Segmenter::segment`] with the frame brought to the training scale as `scaling` says (e.g. by its
    /// red cells, [`preprocess::Scaling::Rbc`]): everything scale-dependent (the nucleus sizes, the lobe
    /// gaps, the crop) then sees cells of the training size.
    pub fn segment_with(&mut self, frame: &Frame, scaling: preprocess::Scaling) -> Segmentation {
        let scaled = preprocess::scale_frame(frame, scaling);
        let scale = match scaling {
            // The block size, whatever the remainder of the frame's width.
            preprocess::Scaling::FrameSize => {
                preprocess::scale_factor(frame.width(), frame.height())
                    .min(frame.width())
                    .min(frame.height())
                    .max(1) as f32
            }
            preprocess::Scaling::Rbc { .. } => frame.width() as f32 / scaled.width() as f32,
        };
        let cfg = self.config;
        let contrast_ok = |c: &Clustering| {
            c.k() > 1
                && c.nucleus_contrast() >= cfg.min_contrast
                && (c.nucleus_contrast() - c.runner_up_contrast() >= cfg.min_contrast
                    || cfg.accept_darker_nucleus && c.runner_up_darkness_gap() >= cfg.min_contrast)
        };
        let balanced = cfg.white_balance.map(|block| {
            preprocess::white_balance_into(&scaled, block, std::mem::take(&mut self.balanced))
        });
        let seen = balanced.as_ref().unwrap_or(&scaled);
        let mut clustering = self.cluster(seen);
        if !contrast_ok(&clustering) && cfg.retry_one_more_cluster && cfg.kmeans.k < kmeans::MAX_K {
            // Same histogram, one more cluster.
            let more = KMeansConfig {
                k: cfg.kmeans.k + 1,
                ..cfg.kmeans
            };
            clustering = kmeans::kmeans(&self.hist, &more);
        }
        let contrast_ok = contrast_ok(&clustering);
        let (w, h) = (scaled.width(), scaled.height());
        self.mask_size = (w, h);
        self.mask.clear();
        let nucleus = clustering.nucleus() as u8;
        self.mask.extend(
            seen.data()
                .chunks_exact(3)
                .map(|p| (contrast_ok && clustering.label([p[0], p[1], p[2]]) == nucleus) as u8),
        );
        self.labeller.label(&self.mask, w, h, &mut self.components);
        group_lobes(
            &self.components,
            cfg.min_lobe,
            cfg.lobe_gap,
            cfg.cell_radius,
            cfg.max_nucleus_side,
            &mut self.groups,
        );
        self.groups.retain(|g| g.area >= cfg.min_area);
        if let Some(refiner) = self.refiner.as_mut() {
            refine_groups(
                refiner,
                seen,
                &clustering,
                &cfg,
                &mut self.groups,
                &mut self.mask,
                &mut self.cut,
            );
        }
        self.integral.build(seen, nucleus_score);
        if let Some(b) = balanced {
            self.balanced = b.into_data();
        }
        let mut cells = heapless::Vec::new();
        let mut overflow = false;
        for g in &self.groups {
            if cells
                .push(cell(g, &cfg, scale, frame, &scaled, &self.integral))
                .is_err()
            {
                overflow = true;
                break;
            }
        }
        Segmentation {
            centroids: clustering.centroids(),
            nucleus_cluster: clustering.nucleus(),
            scaled,
            scale,
            cells,
            overflow,
        }
    }
}

/// Bytes a vector holds on the heap (its capacity, not its length).
#[allow(clippy::ptr_arg)] // capacity is a `Vec`'s, not a slice's
pub(crate) fn heap_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Re-cuts each group on a crop around it and replaces its nucleus box and area by the cut's.
fn refine_groups(
    refiner: &mut Refiner,
    scaled: &Frame,
    clustering: &Clustering,
    cfg: &SegmentConfig,
    groups: &mut Vec<Component>,
    mask: &mut [u8],
    cut: &mut Vec<u8>,
) {
    let (w, h) = (scaled.width(), scaled.height());
    let pad = cfg.lobe_gap + 4;
    for g in groups.iter_mut() {
        let roi = g.bbox.grown(pad, w, h);
        refiner.refine(scaled, clustering, roi, cut);
        let rw = roi.width() as usize;
        let mut out = Component {
            area: 0,
            bbox: Rect::EMPTY_BOUNDS,
            sum_x: 0,
            sum_y: 0,
        };
        for (i, &v) in cut.iter().enumerate() {
            let (x, y) = (roi.x0 + (i % rw) as u32, roi.y0 + (i / rw) as u32);
            mask[(y * w + x) as usize] = v;
            if v != 0 {
                out.area += 1;
                out.sum_x += x as u64;
                out.sum_y += y as u64;
                out.bbox.include(x, y);
            }
        }
        if out.area > 0 {
            *g = out;
        }
    }
    groups.retain(|g| g.area >= cfg.min_area);
}

/// The centre of the [`LOCATE_BOX`] window with the largest nucleus score among windows centred inside `b`
/// (the rule [`crate::preprocess::locate`] uses on whole frames, restricted to one cell).
fn locate_in(integral: &Integral, b: Rect) -> (u32, u32) {
    let half = LOCATE_BOX / 2;
    // Ties (a nucleus smaller than the window) go to the window nearest the nucleus box centre.
    let (mx, my) = b.centre();
    let (mx, my) = (mx as i64, my as i64);
    let mut best = (0u64, i64::MIN, mx as u32, my as u32);
    for cy in b.y0..b.y1.max(b.y0 + 1) {
        for cx in b.x0..b.x1.max(b.x0 + 1) {
            let s = integral.sum(Rect {
                x0: cx.saturating_sub(half),
                y0: cy.saturating_sub(half),
                x1: cx + half,
                y1: cy + half,
            });
            let (x, y) = (cx as i64, cy as i64);
            let near = -((x - mx).pow(2) + (y - my).pow(2));
            if (s, near) > (best.0, best.1) {
                best = (s, near, cx, cy);
            }
        }
    }
    (best.2, best.3)
}

/// The cell of a nucleus group: its box in the original frame's pixels and its nucleus.
fn cell(
    g: &Component,
    cfg: &SegmentConfig,
    scale: f32,
    frame: &Frame,
    scaled: &Frame,
    integral: &Integral,
) -> Cell {
    let (w, h) = (scaled.width() as i64, scaled.height() as i64);
    let b = g.bbox;
    let cx2 = (b.x0 + b.x1) as i64; // twice the centre
    let cy2 = (b.y0 + b.y1) as i64;
    let side = |lo: u32, hi: u32| ((hi - lo + 2 * cfg.cell_margin).max(cfg.min_cell_side)) as i64;
    let (sw, sh) = (side(b.x0, b.x1), side(b.y0, b.y1));
    let x0 = ((cx2 - sw) / 2).clamp(0, w);
    let y0 = ((cy2 - sh) / 2).clamp(0, h);
    let x1 = ((cx2 + sw) / 2).clamp(0, w);
    let y1 = ((cy2 + sh) / 2).clamp(0, h);
    // Outward to whole original pixels (exact for an integer scale).
    let back =
        |v: i64, round: fn(f32) -> f32, limit: u32| (round(v as f32 * scale) as u32).min(limit);
    let rect = Rect {
        x0: back(x0, f32::floor, frame.width()),
        y0: back(y0, f32::floor, frame.height()),
        x1: back(x1, f32::ceil, frame.width()),
        y1: back(y1, f32::ceil, frame.height()),
    };
    Cell {
        nucleus: Some(Nucleus {
            rect: b,
            area: g.area,
            centre: locate_in(integral, b),
        }),
        ..Cell::new(rect)
    }
}

#[cfg(test)]
mod tests;
