//! Maximum flow / minimum cut with integer capacities: the Boykov–Kolmogorov solver the graph-cut refiner
//! ([`super::graphcut`]) runs, and the [`FlowNetwork`] interface it shares with the test oracle
//! (`leukoscope::testing::dinic`, compiled only for tests and with the `testing` feature).
//!
//! This module knows graphs only: no pixels, no models.

use super::heap_bytes;

/// No arc (end of an adjacency list).
pub(crate) const NONE: u32 = u32::MAX;

/// A flow network with integer capacities: nodes `0..n` are ordinary, `n` is the source, `n + 1` the sink.
/// [`MaxFlow`] is the solver the device runs; the test oracle implements the same interface so that both can
/// be given the same graph (e.g. by [`super::graphcut::GridGraph::load`]).
pub trait FlowNetwork {
    /// Number of nodes including the two terminals (0 before the first [`FlowNetwork::reset`]).
    fn node_count(&self) -> usize;

    /// Clears the network to `n` ordinary nodes `0..n` plus the terminals [`FlowNetwork::source`] (`n`) and
    /// [`FlowNetwork::sink`] (`n + 1`).
    fn reset(&mut self, n: usize);

    /// Adds an arc `u → v` of capacity `cap` and `v → u` of capacity `rev` (negative values count as 0).
    fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64);

    /// Terminal links of node `u`: `to_source` from the source, `to_sink` to the sink. The common part is
    /// counted as flow straight away (every cut pays it).
    fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64);

    /// Computes the maximum flow from source to sink (including the common terminal parts).
    fn solve(&mut self) -> i64;

    /// After [`FlowNetwork::solve`]: whether `u` lies on the source side of the minimum cut (the nodes the
    /// source still reaches in the residual network).
    fn is_source_side(&self, u: usize) -> bool;

    /// The source terminal.
    fn source(&self) -> usize {
        self.node_count() - 2
    }

    /// The sink terminal.
    fn sink(&self) -> usize {
        self.node_count() - 1
    }
}

/// Arcs in adjacency lists (`head[u]`, then `next`), each stored next to its reverse (`a ^ 1`): the storage
/// [`MaxFlow`] and the test oracle share.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arcs {
    pub(crate) head: Vec<u32>,
    pub(crate) next: Vec<u32>,
    pub(crate) to: Vec<u32>,
    pub(crate) cap: Vec<i64>,
}

impl Arcs {
    fn heap_bytes(&self) -> usize {
        heap_bytes(&self.head)
            + heap_bytes(&self.next)
            + heap_bytes(&self.to)
            + heap_bytes(&self.cap)
    }

    /// No arcs, `nodes` empty adjacency lists.
    pub(crate) fn clear(&mut self, nodes: usize) {
        self.head.clear();
        self.head.resize(nodes, NONE);
        self.next.clear();
        self.to.clear();
        self.cap.clear();
    }

    /// Adds the arc `u → v` of capacity `c`.
    pub(crate) fn push(&mut self, u: usize, v: usize, c: i64) {
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
/// overflow the stack. Checked against Dinic's algorithm (the test oracle) and Edmonds–Karp.
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
    pub(crate) fn heap_bytes(&self) -> usize {
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
}

impl FlowNetwork for MaxFlow {
    fn node_count(&self) -> usize {
        self.nodes
    }

    fn reset(&mut self, n: usize) {
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
    fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64) {
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

    /// Only the difference of the two links is stored.
    fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64) {
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
    /// Computes the maximum flow from source to sink (including the common terminal parts) and leaves the
    /// search trees for [`FlowNetwork::is_source_side`].
    fn solve(&mut self) -> i64 {
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

    /// The nodes in the source's search tree.
    fn is_source_side(&self, u: usize) -> bool {
        if u + 2 == self.nodes {
            return true;
        }
        self.parent.get(u).is_some_and(|&p| p != FREE)
            && !self.in_sink.get(u).copied().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dinic::Dinic;
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

    /// Loads [`textbook`] into a solver and solves it.
    fn solve_textbook(g: &mut impl FlowNetwork) -> i64 {
        g.reset(4);
        let (s, t) = (g.source(), g.sink());
        for (u, v, c) in textbook(s, t) {
            g.add_edge(u, v, c, 0);
        }
        g.solve()
    }

    #[test]
    fn textbook_network() {
        let mut g = MaxFlow::new();
        assert_eq!(solve_textbook(&mut g), 23);
        assert!(g.is_source_side(g.source()) && !g.is_source_side(g.sink()));
        assert_eq!(solve_textbook(&mut Dinic::new()), 23);
    }

    #[test]
    fn tweights_count_common_part() {
        let mut g = MaxFlow::new();
        g.reset(1);
        g.add_tweights(0, 5, 3);
        assert_eq!(g.solve(), 3);
        assert!(g.is_source_side(0));
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
