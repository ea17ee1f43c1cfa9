//! Graph-cut refinement of a nucleus mask: a minimum cut ([`super::maxflow::MaxFlow`], Boykov–Kolmogorov,
//! integer capacities) on a 4-connected pixel grid around one candidate cell.
//!
//! The grid is seeded automatically from the K-means result: pixels of the nucleus cluster at least as violet
//! as its centroid are sure nucleus (infinite source links), the crop's border is sure background (infinite
//! sink links), and every other pixel pulls towards the side its blue-minus-green lies on. Neighbours are
//! tied by contrast-sensitive links, so the cut follows colour edges. All capacities are integers; the one
//! float step (the link-weight table) runs once per [`Refiner`], never in the loop. This module knows pixels
//! and graphs only: no models, no cell types.

use super::heap_bytes;
use super::kmeans::Clustering;
use super::maxflow::{FlowNetwork, MaxFlow};
use crate::frame::Frame;
use crate::preprocess::nucleus_score;
use crate::rect::Rect;

/// Graph-cut settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphCutConfig {
    /// Largest neighbour-link capacity (equal colours); data terms are one unit per level of B − G.
    pub lambda: i64,
    /// Colour-difference scale σ (8-bit RGB units) of the neighbour links `λ·exp(−|ΔI|²/2σ²)`.
    pub sigma: f32,
}

impl Default for GraphCutConfig {
    fn default() -> Self {
        GraphCutConfig {
            lambda: 24,
            sigma: 12.0,
        }
    }
}

/// Squared colour differences are bucketed by this shift for the weight table.
const DIFF_SHIFT: u32 = 4;
const TABLE: usize = ((3 * 255 * 255) >> DIFF_SHIFT) + 1;
const HARD: i64 = 1 << 24;

/// Refines nucleus masks by graph cut on crops; keeps its graph and tables between crops.
#[derive(Clone, Debug)]
pub struct Refiner {
    flow: MaxFlow,
    weights: Vec<i64>,
    scratch: Vec<GridEdge>,
}

impl Refiner {
    /// Heap bytes its graph, tables and scratch hold.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.flow.heap_bytes() + heap_bytes(&self.weights) + heap_bytes(&self.scratch)
    }

    /// A refiner with its neighbour-weight table.
    pub fn new(config: GraphCutConfig) -> Self {
        let two_s2 = 2.0 * config.sigma.max(0.5) * config.sigma.max(0.5);
        let weights = (0..TABLE)
            .map(|i| {
                let d2 = ((i << DIFF_SHIFT) + (1 << (DIFF_SHIFT - 1))) as f32;
                (config.lambda as f32 * (-d2 / two_s2).exp()).round() as i64
            })
            .collect();
        Refiner {
            flow: MaxFlow::new(),
            weights,
            scratch: Vec::new(),
        }
    }

    /// Cuts the crop `roi` (clamped to the frame) of a training-scale
    /// frame into nucleus / not nucleus, writing one byte per crop pixel (row-major, 1 = nucleus) into `out`.
    /// Returns the flow value (the cut's cost).
    pub fn refine(
        &mut self,
        frame: &Frame,
        clustering: &Clustering,
        roi: Rect,
        out: &mut Vec<u8>,
    ) -> i64 {
        let roi = clamp_roi(frame, roi);
        let (w, h) = (roi.width() as usize, roi.height() as usize);
        out.clear();
        out.resize(w * h, 0);
        if w == 0 || h == 0 {
            return 0;
        }
        let flow = &mut self.flow;
        flow.reset(w * h);
        // Split borrows: the graph is filled while the weight table is read.
        let mut tw = Vec::new();
        std::mem::swap(&mut tw, &mut self.scratch);
        tw.clear();
        build_grid(&self.weights, frame, clustering, roi, |e| tw.push(e));
        for e in &tw {
            match *e {
                GridEdge::Terminal(i, s, t) => flow.add_tweights(i as usize, s, t),
                GridEdge::Link(i, j, c) => flow.add_edge(i as usize, j as usize, c, c),
            }
        }
        std::mem::swap(&mut tw, &mut self.scratch);
        let value = flow.solve();
        for (i, o) in out.iter_mut().enumerate() {
            *o = flow.is_source_side(i) as u8;
        }
        value
    }

    /// The graph [`Refiner::refine`] would cut, as a list (for comparisons with other solvers).
    pub fn graph(&self, frame: &Frame, clustering: &Clustering, roi: Rect) -> GridGraph {
        let roi = clamp_roi(frame, roi);
        let mut edges = Vec::new();
        build_grid(&self.weights, frame, clustering, roi, |e| edges.push(e));
        GridGraph {
            width: roi.width(),
            height: roi.height(),
            edges,
        }
    }
}

/// One element of a grid graph: terminal weights `(node, from source, to sink)` or a symmetric neighbour
/// link `(node, node, capacity)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridEdge {
    /// `(node, from source, to sink)`.
    Terminal(u32, i64, i64),
    /// `(node, node, capacity both ways)`.
    Link(u32, u32, i64),
}

/// A crop's graph as built for the cut (nodes numbered row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridGraph {
    /// Crop width.
    pub width: u32,
    /// Crop height.
    pub height: u32,
    /// Terminal weights and neighbour links.
    pub edges: Vec<GridEdge>,
}

impl GridGraph {
    /// Loads it into a solver (reset first).
    pub fn load(&self, flow: &mut impl FlowNetwork) {
        flow.reset(self.width as usize * self.height as usize);
        for e in &self.edges {
            match *e {
                GridEdge::Terminal(i, s, t) => flow.add_tweights(i as usize, s, t),
                GridEdge::Link(i, j, c) => flow.add_edge(i as usize, j as usize, c, c),
            }
        }
    }
}

/// The part of `roi` inside the frame (empty, at the frame's edge, when none is).
fn clamp_roi(frame: &Frame, roi: Rect) -> Rect {
    let x0 = roi.x0.min(frame.width());
    let y0 = roi.y0.min(frame.height());
    Rect {
        x0,
        y0,
        x1: roi.x1.clamp(x0, frame.width()),
        y1: roi.y1.clamp(y0, frame.height()),
    }
}

#[inline]
fn link(weights: &[i64], a: [u8; 3], b: [u8; 3]) -> i64 {
    let d = |i: usize| {
        let v = a[i] as i32 - b[i] as i32;
        (v * v) as usize
    };
    weights[(d(0) + d(1) + d(2)) >> DIFF_SHIFT]
}

/// Emits the seeded grid graph of a (clamped) crop.
fn build_grid(
    weights: &[i64],
    frame: &Frame,
    clustering: &Clustering,
    roi: Rect,
    mut emit: impl FnMut(GridEdge),
) {
    let Rect { x0, y0, x1, y1 } = roi;
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let core = clustering.nucleus_contrast();
    let threshold = (core + clustering.runner_up_contrast()) / 2;
    let nucleus = clustering.nucleus() as u8;
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as u32;
            let p = frame.pixel(x0 + x as u32, y0 + y as u32);
            let s = nucleus_score(p) as i32;
            let border = x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            let (src, snk) = if border {
                (0, HARD)
            } else if clustering.label(p) == nucleus && s >= core {
                (HARD, 0)
            } else {
                let d = (s - threshold) as i64;
                (d.max(0), (-d).max(0))
            };
            emit(GridEdge::Terminal(i, src, snk));
            if x + 1 < w {
                let q = frame.pixel(x0 + x as u32 + 1, y0 + y as u32);
                emit(GridEdge::Link(i, i + 1, link(weights, p, q)));
            }
            if y + 1 < h {
                let q = frame.pixel(x0 + x as u32, y0 + y as u32 + 1);
                emit(GridEdge::Link(i, i + w as u32, link(weights, p, q)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::kmeans::{kmeans, Histogram, KMeansConfig};

    #[test]
    fn refine_finds_a_violet_disc() {
        let mut data = Vec::new();
        for y in 0..40i32 {
            for x in 0..40i32 {
                let inside = (x - 20).pow(2) + (y - 20).pow(2) < 64;
                data.extend_from_slice(if inside {
                    &[110, 80, 180]
                } else {
                    &[200, 170, 175]
                });
            }
        }
        let f = Frame::new(40, 40, data).unwrap();
        let c = kmeans(
            &Histogram::of_frame(&f),
            &KMeansConfig {
                k: 2,
                max_iter: 10,
                sqrt_weights: false,
            },
        );
        let mut r = Refiner::new(GraphCutConfig::default());
        let mut out = Vec::new();
        r.refine(&f, &c, Rect::new(0, 0, 40, 40), &mut out);
        let area: usize = out.iter().map(|&v| v as usize).sum();
        assert!((180..=220).contains(&area), "{area}");
        assert_eq!(out[20 * 40 + 20], 1);
        assert_eq!(out[0], 0);
    }

    #[test]
    fn exported_graph_has_the_same_flow_as_refine() {
        let mut data = Vec::new();
        for y in 0..30i32 {
            for x in 0..30i32 {
                let v = ((x * 7 + y * 13) % 40) as u8;
                let inside = (x - 15).pow(2) + (y - 14).pow(2) < 40;
                data.extend_from_slice(&if inside {
                    [100 + v, 70, 170 + v / 2]
                } else {
                    [190 + v / 2, 160, 165]
                });
            }
        }
        let f = Frame::new(30, 30, data).unwrap();
        let c = kmeans(&Histogram::of_frame(&f), &KMeansConfig::default());
        let mut r = Refiner::new(GraphCutConfig::default());
        let mut out = Vec::new();
        let roi = Rect::new(2, 2, 28, 28);
        let v = r.refine(&f, &c, roi, &mut out);
        let mut g = MaxFlow::new();
        r.graph(&f, &c, roi).load(&mut g);
        assert_eq!(g.solve(), v);
    }
}
