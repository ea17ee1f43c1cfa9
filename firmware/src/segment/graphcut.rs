//! Graph-cut refinement of a nucleus mask: a max-flow/min-cut solver (Boykov–Kolmogorov, integer capacities;
//! Dinic kept as its reference) and its
//! use on a 4-connected pixel grid around one candidate cell.
//!
//! The grid is seeded automatically from the K-means result: pixels of the nucleus cluster at least as violet
//! as its centroid are sure nucleus (infinite source links), the crop's border is sure background (infinite
//! sink links), and every other pixel pulls towards the side its blue-minus-green lies on. Neighbours are
//! tied by contrast-sensitive links, so the cut follows colour edges. All capacities are integers; the one
//! float step (the link-weight table) runs once per [`Refiner`], never in the loop. This module knows pixels
//! and graphs only: no models, no cell types.

use super::heap_bytes;
use super::kmeans::Clustering;
use crate::frame::Frame;
use crate::preprocess::nucleus_score;

const NONE: u32 = u32::MAX;

/// Arcs in adjacency lists (`head[u]`, then `next`), each stored next to its reverse (`a ^ 1`): the storage
/// [`MaxFlow`] and [`Dinic`] share.
#[derive(Clone, Debug, Default)]
struct Arcs {
    head: Vec<u32>,
    next: Vec<u32>,
    to: Vec<u32>,
    cap: Vec<i64>,
}

impl Arcs {
    fn heap_bytes(&self) -> usize {
        heap_bytes(&self.head)
            + heap_bytes(&self.next)
            + heap_bytes(&self.to)
            + heap_bytes(&self.cap)
    }

    /// No arcs, `nodes` empty adjacency lists.
    fn clear(&mut self, nodes: usize) {
        self.head.clear();
        self.head.resize(nodes, NONE);
        self.next.clear();
        self.to.clear();
        self.cap.clear();
    }

    /// Adds the arc `u → v` of capacity `c`.
    fn push(&mut self, u: usize, v: usize, c: i64) {
        self.to.push(v as u32);
        self.cap.push(c);
        self.next.push(self.head[u]);
        self.head[u] = (self.to.len() - 1) as u32;
    }
}

/// Parent marks of [`MaxFlow`]'s search trees (other values are arc indices).
const FREE: u32 = u32::MAX;
const TERMINAL: u32 = u32::MAX - 1;
const ORPHAN: u32 = u32::MAX - 2;

/// A flow network with integer capacities, solved by the Boykov–Kolmogorov algorithm (two search trees grown
/// from the terminals, augment, adopt orphans; "An Experimental Comparison of Min-Cut/Max-Flow Algorithms for
/// Energy Minimization in Vision", PAMI 2004), the algorithm PyMaxflow wraps, written here from the paper.
/// Terminal links are kept per node (`tr`: positive = residual from the source, negative = to the sink), so a
/// grid's data terms cost no arcs. Buffers are kept across [`MaxFlow::reset`]; the iterative loops cannot
/// overflow the stack. Checked against [`Dinic`] and Edmonds–Karp.
#[derive(Clone, Debug, Default)]
pub struct MaxFlow {
    /// Ordinary nodes plus the two terminals.
    nodes: usize,
    arcs: Arcs,
    tr: Vec<i64>,
    parent: Vec<u32>,
    in_sink: Vec<bool>,
    stamp: Vec<u32>,
    dist: Vec<u32>,
    queued: Vec<bool>,
    active: std::collections::VecDeque<u32>,
    orphans: std::collections::VecDeque<u32>,
    time: u32,
    constant: i64,
}

impl MaxFlow {
    /// An empty network.
    pub fn new() -> Self {
        MaxFlow::default()
    }

    /// Heap bytes its buffers hold (capacity; they are kept between solves).
    pub fn heap_bytes(&self) -> usize {
        self.arcs.heap_bytes()
            + heap_bytes(&self.tr)
            + heap_bytes(&self.parent)
            + heap_bytes(&self.in_sink)
            + heap_bytes(&self.stamp)
            + heap_bytes(&self.dist)
            + heap_bytes(&self.queued)
            + self.active.capacity() * std::mem::size_of::<u32>()
            + self.orphans.capacity() * std::mem::size_of::<u32>()
    }

    /// Clears the network to `n` ordinary nodes `0..n` plus the terminals [`MaxFlow::source`] (`n`) and
    /// [`MaxFlow::sink`] (`n + 1`).
    pub fn reset(&mut self, n: usize) {
        self.nodes = n + 2;
        self.arcs.clear(n);
        self.tr.clear();
        self.tr.resize(n, 0);
        self.parent.clear();
        self.parent.resize(n, FREE);
        self.constant = 0;
    }

    /// Adds an arc `u → v` of capacity `cap` and `v → u` of capacity `rev` (negative values count as 0). Arcs
    /// from the source or to the sink become terminal links; arcs into the source or out of the sink can
    /// carry no flow and are dropped.
    pub fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64) {
        let (s, t) = (self.source(), self.sink());
        let (cap, rev) = (cap.max(0), rev.max(0));
        match (u, v) {
            (u, v) if u == v => {}
            (u, v) if u == s && v == t => self.constant += cap,
            (u, v) if u == t && v == s => self.constant += rev,
            (u, v) if u == s => self.add_tweights(v, cap, 0),
            (u, v) if v == s => self.add_tweights(u, rev, 0),
            (u, v) if u == t => self.add_tweights(v, 0, rev),
            (u, v) if v == t => self.add_tweights(u, 0, cap),
            (u, v) => {
                self.arcs.push(u, v, cap);
                self.arcs.push(v, u, rev);
            }
        }
    }

    /// Terminal links of node `u`: `to_source` from the source, `to_sink` to the sink. The common part is
    /// counted as flow straight away (every cut pays it), so only the difference is stored.
    pub fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64) {
        let (mut a, mut b) = (to_source.max(0), to_sink.max(0));
        let d = self.tr[u];
        if d > 0 {
            a += d;
        } else {
            b -= d;
        }
        self.constant += a.min(b);
        self.tr[u] = a - b;
    }

    fn activate(&mut self, i: usize) {
        if !self.queued[i] {
            self.queued[i] = true;
            self.active.push_back(i as u32);
        }
    }

    fn orphan(&mut self, i: usize) {
        self.parent[i] = ORPHAN;
        self.orphans.push_back(i as u32);
    }

    /// Grows the tree of active node `i` by one layer; returns an arc from the source tree to the sink tree
    /// if the trees touch.
    fn grow(&mut self, i: usize) -> Option<usize> {
        let sink_tree = self.in_sink[i];
        let mut e = self.arcs.head[i];
        while e != NONE {
            let a = e as usize;
            // Residual capacity in the tree's direction: away from the source, towards the sink.
            let (toward, residual) = if sink_tree {
                (a ^ 1, self.arcs.cap[a ^ 1])
            } else {
                (a, self.arcs.cap[a])
            };
            if residual > 0 {
                let j = self.arcs.to[a] as usize;
                if self.parent[j] == FREE {
                    self.in_sink[j] = sink_tree;
                    self.parent[j] = (a ^ 1) as u32;
                    self.stamp[j] = self.stamp[i];
                    self.dist[j] = self.dist[i] + 1;
                    self.activate(j);
                } else if self.in_sink[j] != sink_tree {
                    return Some(toward);
                } else if self.stamp[j] <= self.stamp[i] && self.dist[j] > self.dist[i] {
                    // A shorter way to j's terminal: rehang it (keeps the trees shallow).
                    self.parent[j] = (a ^ 1) as u32;
                    self.stamp[j] = self.stamp[i];
                    self.dist[j] = self.dist[i] + 1;
                }
            }
            e = self.arcs.next[a];
        }
        None
    }

    /// Pushes the bottleneck along source root → `middle` → sink root; nodes whose parent arc or terminal
    /// link saturates become orphans. Returns the amount.
    fn augment(&mut self, middle: usize) -> i64 {
        let (u, v) = (
            self.arcs.to[middle ^ 1] as usize,
            self.arcs.to[middle] as usize,
        );
        let mut f = self.arcs.cap[middle];
        let mut x = u;
        while self.parent[x] != TERMINAL {
            let a = self.parent[x] as usize;
            f = f.min(self.arcs.cap[a ^ 1]);
            x = self.arcs.to[a] as usize;
        }
        f = f.min(self.tr[x]);
        x = v;
        while self.parent[x] != TERMINAL {
            let a = self.parent[x] as usize;
            f = f.min(self.arcs.cap[a]);
            x = self.arcs.to[a] as usize;
        }
        f = f.min(-self.tr[x]);

        self.arcs.cap[middle] -= f;
        self.arcs.cap[middle ^ 1] += f;
        x = u;
        while self.parent[x] != TERMINAL {
            let a = self.parent[x] as usize;
            self.arcs.cap[a ^ 1] -= f;
            self.arcs.cap[a] += f;
            if self.arcs.cap[a ^ 1] == 0 {
                self.orphan(x);
            }
            x = self.arcs.to[a] as usize;
        }
        self.tr[x] -= f;
        if self.tr[x] == 0 {
            self.orphan(x);
        }
        x = v;
        while self.parent[x] != TERMINAL {
            let a = self.parent[x] as usize;
            self.arcs.cap[a] -= f;
            self.arcs.cap[a ^ 1] += f;
            if self.arcs.cap[a] == 0 {
                self.orphan(x);
            }
            x = self.arcs.to[a] as usize;
        }
        self.tr[x] += f;
        if self.tr[x] == 0 {
            self.orphan(x);
        }
        f
    }

    /// Distance from `j` to its tree's terminal, or `None` if its way there passes an orphan; caches what it
    /// learns in `stamp` / `dist` for this round.
    fn origin(&mut self, j: usize) -> Option<u32> {
        let mut d = 0u32;
        let mut k = j;
        loop {
            if self.stamp[k] == self.time {
                d += self.dist[k];
                break;
            }
            let p = self.parent[k];
            d += 1;
            if p == TERMINAL {
                self.stamp[k] = self.time;
                self.dist[k] = 1;
                break;
            }
            if p == ORPHAN || p == FREE {
                return None;
            }
            k = self.arcs.to[p as usize] as usize;
        }
        let (mut k, mut dk) = (j, d);
        while self.stamp[k] != self.time {
            self.stamp[k] = self.time;
            self.dist[k] = dk;
            dk -= 1;
            k = self.arcs.to[self.parent[k] as usize] as usize;
        }
        Some(d)
    }

    /// Finds orphan `i` a new parent in its own tree, or frees it (and orphans its children).
    fn adopt(&mut self, i: usize) {
        let sink_tree = self.in_sink[i];
        let mut best: Option<(usize, u32)> = None;
        let mut e = self.arcs.head[i];
        while e != NONE {
            let a = e as usize;
            e = self.arcs.next[a];
            // The arc that would carry flow from j to i (source tree) or from i to j (sink tree).
            let residual = if sink_tree {
                self.arcs.cap[a]
            } else {
                self.arcs.cap[a ^ 1]
            };
            let j = self.arcs.to[a] as usize;
            if residual <= 0 || self.parent[j] == FREE || self.in_sink[j] != sink_tree {
                continue;
            }
            if let Some(d) = self.origin(j) {
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((a, d));
                }
            }
        }
        if let Some((a, d)) = best {
            self.parent[i] = a as u32;
            self.stamp[i] = self.time;
            self.dist[i] = d + 1;
            return;
        }
        let mut e = self.arcs.head[i];
        while e != NONE {
            let a = e as usize;
            e = self.arcs.next[a];
            let j = self.arcs.to[a] as usize;
            let p = self.parent[j];
            if p == FREE || self.in_sink[j] != sink_tree {
                continue;
            }
            let toward_i = if sink_tree {
                self.arcs.cap[a]
            } else {
                self.arcs.cap[a ^ 1]
            };
            if toward_i > 0 {
                self.activate(j);
            }
            if p != TERMINAL && p != ORPHAN && self.arcs.to[p as usize] as usize == i {
                self.orphan(j);
            }
        }
        self.parent[i] = FREE;
    }

    /// Computes the maximum flow from source to sink (including the common terminal parts) and leaves the
    /// search trees for [`MaxFlow::is_source_side`].
    pub fn solve(&mut self) -> i64 {
        if self.nodes < 2 {
            return 0;
        }
        let n = self.nodes - 2;
        self.in_sink.clear();
        self.in_sink.resize(n, false);
        self.stamp.clear();
        self.stamp.resize(n, 0);
        self.dist.clear();
        self.dist.resize(n, 0);
        self.queued.clear();
        self.queued.resize(n, false);
        self.active.clear();
        self.orphans.clear();
        self.time = 0;
        for i in 0..n {
            self.parent[i] = FREE;
            if self.tr[i] != 0 {
                self.parent[i] = TERMINAL;
                self.in_sink[i] = self.tr[i] < 0;
                self.dist[i] = 1;
                self.activate(i);
            }
        }
        let mut flow = self.constant;
        let mut current: Option<usize> = None;
        loop {
            let i = match current.take().filter(|&i| self.parent[i] != FREE) {
                Some(i) => i,
                None => {
                    let mut found = None;
                    while let Some(i) = self.active.pop_front() {
                        let i = i as usize;
                        self.queued[i] = false;
                        if self.parent[i] != FREE {
                            found = Some(i);
                            break;
                        }
                    }
                    match found {
                        Some(i) => i,
                        None => break,
                    }
                }
            };
            let Some(middle) = self.grow(i) else {
                continue;
            };
            // The trees touch: keep i as the current node, augment, and repair the trees.
            current = Some(i);
            self.time = self.time.wrapping_add(1).max(1);
            flow += self.augment(middle);
            while let Some(o) = self.orphans.pop_front() {
                self.adopt(o as usize);
            }
        }
        flow
    }

    /// After [`MaxFlow::solve`]: whether `u` lies on the source side of the minimum cut (the nodes the source
    /// still reaches in the residual network, as for [`Dinic`]).
    pub fn is_source_side(&self, u: usize) -> bool {
        if u + 2 == self.nodes {
            return true;
        }
        self.parent.get(u).is_some_and(|&p| p != FREE)
            && !self.in_sink.get(u).copied().unwrap_or(true)
    }
}

/// A flow network with integer capacities, solved by Dinic's algorithm (BFS levels, iterative DFS blocking
/// flows, so deep paths cannot overflow the stack). Buffers are kept across [`Dinic::reset`]. The reference the
/// faster [`MaxFlow`] (Boykov–Kolmogorov) is checked against; same interface.
#[derive(Clone, Debug, Default)]
pub struct Dinic {
    nodes: usize,
    arcs: Arcs,
    level: Vec<i32>,
    iter: Vec<u32>,
    queue: Vec<u32>,
    path: Vec<u32>,
    constant: i64,
}

impl Dinic {
    /// An empty network.
    pub fn new() -> Self {
        Dinic::default()
    }

    /// Clears the network to `n` ordinary nodes `0..n` plus the terminals [`Dinic::source`] (`n`) and
    /// [`Dinic::sink`] (`n + 1`).
    pub fn reset(&mut self, n: usize) {
        self.nodes = n + 2;
        self.arcs.clear(n + 2);
        self.constant = 0;
    }

    /// Adds an arc `u → v` of capacity `cap` and `v → u` of capacity `rev` (negative values count as 0).
    pub fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64) {
        self.arcs.push(u, v, cap.max(0));
        self.arcs.push(v, u, rev.max(0));
    }

    /// Terminal links of node `u`: `to_source` from the source, `to_sink` to the sink. The common part is
    /// counted as flow straight away (every cut pays it), so at most one terminal arc is stored.
    pub fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64) {
        let (a, b) = (to_source.max(0), to_sink.max(0));
        let common = a.min(b);
        self.constant += common;
        let (s, t) = (self.source(), self.sink());
        if a > common {
            self.add_edge(s, u, a - common, 0);
        }
        if b > common {
            self.add_edge(u, t, b - common, 0);
        }
    }

    fn bfs(&mut self) -> bool {
        let (s, t) = (self.source(), self.sink());
        self.level.clear();
        self.level.resize(self.nodes, -1);
        self.queue.clear();
        self.level[s] = 0;
        self.queue.push(s as u32);
        let mut qi = 0;
        while qi < self.queue.len() {
            let u = self.queue[qi] as usize;
            qi += 1;
            let mut e = self.arcs.head[u];
            while e != NONE {
                let v = self.arcs.to[e as usize] as usize;
                if self.arcs.cap[e as usize] > 0 && self.level[v] < 0 {
                    self.level[v] = self.level[u] + 1;
                    self.queue.push(v as u32);
                }
                e = self.arcs.next[e as usize];
            }
        }
        self.level[t] >= 0
    }

    /// Computes the maximum flow from source to sink (including the common terminal parts) and leaves the
    /// residual network for [`Dinic::is_source_side`].
    pub fn solve(&mut self) -> i64 {
        if self.nodes == 0 {
            return 0;
        }
        let (s, t) = (self.source(), self.sink());
        let mut flow = self.constant;
        while self.bfs() {
            self.iter.clear();
            self.iter.extend_from_slice(&self.arcs.head);
            self.path.clear();
            let mut u = s;
            loop {
                if u == t {
                    let f = self
                        .path
                        .iter()
                        .map(|&e| self.arcs.cap[e as usize])
                        .min()
                        .unwrap_or(0);
                    for &e in &self.path {
                        self.arcs.cap[e as usize] -= f;
                        self.arcs.cap[(e ^ 1) as usize] += f;
                    }
                    flow += f;
                    self.path.clear();
                    u = s;
                    continue;
                }
                let mut advanced = false;
                while self.iter[u] != NONE {
                    let e = self.iter[u] as usize;
                    let v = self.arcs.to[e] as usize;
                    if self.arcs.cap[e] > 0 && self.level[v] == self.level[u] + 1 {
                        self.path.push(e as u32);
                        u = v;
                        advanced = true;
                        break;
                    }
                    self.iter[u] = self.arcs.next[e];
                }
                if !advanced {
                    // Dead end: never visit u again in this phase, step back.
                    self.level[u] = -1;
                    match self.path.pop() {
                        None => break,
                        Some(e) => {
                            u = self.arcs.to[(e ^ 1) as usize] as usize;
                            self.iter[u] = self.arcs.next[e as usize];
                        }
                    }
                }
            }
        }
        // The last BFS failed to reach the sink; its levels mark what the source still reaches.
        flow
    }

    /// After [`Dinic::solve`]: whether `u` lies on the source side of the minimum cut.
    pub fn is_source_side(&self, u: usize) -> bool {
        self.level.get(u).is_some_and(|&l| l >= 0)
    }
}

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
    config: GraphCutConfig,
    scratch: Vec<GridEdge>,
}

impl Refiner {
    /// Heap bytes its graph, tables and scratch hold.
    pub fn heap_bytes(&self) -> usize {
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
            config,
            scratch: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GraphCutConfig {
        &self.config
    }

    /// Cuts the crop `roi = [x0, y0, x1, y1]` (exclusive ends, clamped to the frame) of a training-scale
    /// frame into nucleus / not nucleus, writing one byte per crop pixel (row-major, 1 = nucleus) into `out`.
    /// Returns the flow value (the cut's cost).
    pub fn refine(
        &mut self,
        frame: &Frame,
        clustering: &Clustering,
        roi: [u32; 4],
        out: &mut Vec<u8>,
    ) -> i64 {
        let roi = clamp_roi(frame, roi);
        let (w, h) = ((roi[2] - roi[0]) as usize, (roi[3] - roi[1]) as usize);
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
    pub fn graph(&self, frame: &Frame, clustering: &Clustering, roi: [u32; 4]) -> GridGraph {
        let roi = clamp_roi(frame, roi);
        let mut edges = Vec::new();
        build_grid(&self.weights, frame, clustering, roi, |e| edges.push(e));
        GridGraph {
            width: roi[2] - roi[0],
            height: roi[3] - roi[1],
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

/// What [`GridGraph::load`] needs of a solver: both [`MaxFlow`] and [`Dinic`] take the same graph.
pub trait FlowNetwork {
    /// See [`MaxFlow::reset`].
    fn reset(&mut self, n: usize);
    /// See [`MaxFlow::add_edge`].
    fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64);
    /// See [`MaxFlow::add_tweights`].
    fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64);
}

/// The terminal accessors both solvers share: nodes `0..n` are ordinary, `n` is the source, `n + 1` the sink.
macro_rules! terminals {
    ($t:ty) => {
        impl $t {
            /// The source terminal.
            pub fn source(&self) -> usize {
                self.nodes - 2
            }

            /// The sink terminal.
            pub fn sink(&self) -> usize {
                self.nodes - 1
            }

            /// Number of nodes including the terminals.
            pub fn len(&self) -> usize {
                self.nodes
            }

            /// True when there are no nodes at all (not even terminals, i.e. before `reset`).
            pub fn is_empty(&self) -> bool {
                self.nodes == 0
            }
        }
    };
}
terminals!(MaxFlow);
terminals!(Dinic);

macro_rules! flow_network {
    ($t:ty) => {
        impl FlowNetwork for $t {
            fn reset(&mut self, n: usize) {
                <$t>::reset(self, n)
            }
            fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64) {
                <$t>::add_edge(self, u, v, cap, rev)
            }
            fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64) {
                <$t>::add_tweights(self, u, to_source, to_sink)
            }
        }
    };
}
flow_network!(MaxFlow);
flow_network!(Dinic);

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

fn clamp_roi(frame: &Frame, roi: [u32; 4]) -> [u32; 4] {
    let x0 = roi[0].min(frame.width());
    let y0 = roi[1].min(frame.height());
    [
        x0,
        y0,
        roi[2].clamp(x0, frame.width()),
        roi[3].clamp(y0, frame.height()),
    ]
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
    roi: [u32; 4],
    mut emit: impl FnMut(GridEdge),
) {
    let [x0, y0, x1, y1] = roi;
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
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Reference: Edmonds–Karp on a dense capacity matrix.
    fn edmonds_karp(n: usize, edges: &[(usize, usize, i64)], s: usize, t: usize) -> i64 {
        let mut c = vec![vec![0i64; n]; n];
        for &(u, v, w) in edges {
            c[u][v] += w;
        }
        let mut flow = 0;
        loop {
            let mut prev = vec![usize::MAX; n];
            prev[s] = s;
            let mut q = VecDeque::from([s]);
            while let Some(u) = q.pop_front() {
                for v in 0..n {
                    if c[u][v] > 0 && prev[v] == usize::MAX {
                        prev[v] = u;
                        q.push_back(v);
                    }
                }
            }
            if prev[t] == usize::MAX {
                return flow;
            }
            let mut f = i64::MAX;
            let mut v = t;
            while v != s {
                f = f.min(c[prev[v]][v]);
                v = prev[v];
            }
            let mut v = t;
            while v != s {
                c[prev[v]][v] -= f;
                c[v][prev[v]] += f;
                v = prev[v];
            }
            flow += f;
        }
    }

    /// CLRS figure 26.1 on 4 ordinary nodes with source `s` and sink `t` (max flow 23).
    fn textbook(s: usize, t: usize) -> [(usize, usize, i64); 9] {
        [
            (s, 0, 16),
            (s, 1, 13),
            (0, 2, 12),
            (1, 0, 4),
            (1, 3, 14),
            (2, 1, 9),
            (2, t, 20),
            (3, 2, 7),
            (3, t, 4),
        ]
    }

    #[test]
    fn textbook_network() {
        let mut g = MaxFlow::new();
        g.reset(4);
        let (s, t) = (g.source(), g.sink());
        for (u, v, c) in textbook(s, t) {
            g.add_edge(u, v, c, 0);
        }
        assert_eq!(g.solve(), 23);
        assert!(g.is_source_side(s) && !g.is_source_side(t));
    }

    #[test]
    fn dinic_solves_the_textbook_network() {
        let mut g = Dinic::new();
        g.reset(4);
        let (s, t) = (g.source(), g.sink());
        for (u, v, c) in textbook(s, t) {
            g.add_edge(u, v, c, 0);
        }
        assert_eq!(g.solve(), 23);
    }

    #[test]
    fn tweights_count_common_part() {
        let mut g = MaxFlow::new();
        g.reset(1);
        g.add_tweights(0, 5, 3);
        assert_eq!(g.solve(), 3);
        assert!(g.is_source_side(0));
    }

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
        let c = super::super::kmeans::kmeans(
            &super::super::kmeans::Histogram::of_frame(&f),
            &super::super::kmeans::KMeansConfig {
                k: 2,
                max_iter: 10,
                sqrt_weights: false,
            },
        );
        let mut r = Refiner::new(GraphCutConfig::default());
        let mut out = Vec::new();
        r.refine(&f, &c, [0, 0, 40, 40], &mut out);
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
        let c = super::super::kmeans::kmeans(
            &super::super::kmeans::Histogram::of_frame(&f),
            &super::super::kmeans::KMeansConfig::default(),
        );
        let mut r = Refiner::new(GraphCutConfig::default());
        let mut out = Vec::new();
        let v = r.refine(&f, &c, [2, 2, 28, 28], &mut out);
        let mut g = MaxFlow::new();
        r.graph(&f, &c, [2, 2, 28, 28]).load(&mut g);
        assert_eq!(g.solve(), v);
    }

    proptest! {
        #[test]
        fn flow_equals_cut_and_reference(
            n in 2usize..9,
            raw in prop::collection::vec((0usize..11, 0usize..11, 0i64..20), 0..40),
        ) {
            let mut g = MaxFlow::new();
            g.reset(n);
            let (s, t) = (g.source(), g.sink());
            let total = n + 2;
            let edges: Vec<(usize, usize, i64)> = raw
                .into_iter()
                .map(|(u, v, c)| (u % total, v % total, c))
                .filter(|&(u, v, _)| u != v)
                .collect();
            for &(u, v, c) in &edges {
                g.add_edge(u, v, c, 0);
            }
            let flow = g.solve();
            let cut: i64 = edges
                .iter()
                .filter(|&&(u, v, _)| g.is_source_side(u) && !g.is_source_side(v))
                .map(|&(_, _, c)| c)
                .sum();
            prop_assert_eq!(flow, cut);
            prop_assert_eq!(flow, edmonds_karp(total, &edges, s, t));
        }

        #[test]
        fn boykov_kolmogorov_matches_dinic_on_grids(
            w in 1usize..12,
            h in 1usize..12,
            seed in any::<u64>(),
        ) {
            // A grid like the refiner's: terminal weights on every node, symmetric neighbour links.
            let mut x = seed | 1;
            let mut rnd = |m: i64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % m as u64) as i64
            };
            let n = w * h;
            let mut bk = MaxFlow::new();
            let mut dinic = Dinic::new();
            bk.reset(n);
            dinic.reset(n);
            for i in 0..n {
                let (a, b) = (rnd(40), rnd(40));
                bk.add_tweights(i, a, b);
                dinic.add_tweights(i, a, b);
                for j in [i + 1, i + w] {
                    let same_row = j != i + 1 || j % w != 0;
                    if j < n && same_row {
                        let c = rnd(25);
                        bk.add_edge(i, j, c, c);
                        dinic.add_edge(i, j, c, c);
                    }
                }
            }
            prop_assert_eq!(bk.solve(), dinic.solve());
            for i in 0..n {
                prop_assert_eq!(bk.is_source_side(i), dinic.is_source_side(i), "node {}", i);
            }
        }

        #[test]
        fn tweights_match_plain_terminal_edges(
            tw in prop::collection::vec((0i64..30, 0i64..30), 1..8),
            links in prop::collection::vec((0usize..8, 0usize..8, 0i64..15), 0..16),
        ) {
            let n = tw.len();
            let mut a = MaxFlow::new();
            a.reset(n);
            let mut edges = Vec::new();
            let (s, t) = (a.source(), a.sink());
            for (i, &(src, snk)) in tw.iter().enumerate() {
                a.add_tweights(i, src, snk);
                edges.push((s, i, src));
                edges.push((i, t, snk));
            }
            for &(u, v, c) in &links {
                let (u, v) = (u % n, v % n);
                if u != v {
                    a.add_edge(u, v, c, c);
                    edges.push((u, v, c));
                    edges.push((v, u, c));
                }
            }
            prop_assert_eq!(a.solve(), edmonds_karp(n + 2, &edges, s, t));
        }
    }
}
