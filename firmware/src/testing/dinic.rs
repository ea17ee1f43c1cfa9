//! Dinic's maximum-flow algorithm: the reference the device's Boykov–Kolmogorov solver
//! ([`crate::segment::maxflow::MaxFlow`]) is checked against, by the solver's property tests and by the
//! `segment_dump` example and the `segment` bench (its baseline). A test oracle: not part of the shipped API.

use crate::segment::maxflow::{Arcs, FlowNetwork, NONE};

/// A flow network with integer capacities, solved by Dinic's algorithm (BFS levels, iterative DFS blocking
/// flows, so deep paths cannot overflow the stack). Buffers are kept across [`FlowNetwork::reset`]. Slower
/// than [`MaxFlow`](crate::segment::maxflow::MaxFlow) and simpler, which is what makes it the reference; same interface.
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
}

impl FlowNetwork for Dinic {
    fn node_count(&self) -> usize {
        self.nodes
    }

    fn reset(&mut self, n: usize) {
        self.nodes = n + 2;
        self.arcs.clear(n + 2);
        self.constant = 0;
    }

    fn add_edge(&mut self, u: usize, v: usize, cap: i64, rev: i64) {
        self.arcs.push(u, v, cap.max(0));
        self.arcs.push(v, u, rev.max(0));
    }

    /// At most one terminal arc is stored.
    fn add_tweights(&mut self, u: usize, to_source: i64, to_sink: i64) {
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
    fn solve(&mut self) -> i64 {
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

    /// The nodes the last breadth-first search reached.
    fn is_source_side(&self, u: usize) -> bool {
        self.level.get(u).is_some_and(|&l| l >= 0)
    }
}
