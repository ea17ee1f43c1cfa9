//! Integer K-means on colour: splits a smear frame's colours into K clusters (default 3: background, red
//! cells and cytoplasm, stained nuclei) and names the nucleus cluster.
//!
//! It runs on a colour histogram (RGB quantised to 5-5-5 bits, a count per bin), never on every pixel, so one
//! iteration costs at most 32,768 bin visits whatever the frame size, and the result depends only on the
//! histogram: the same pixels in any order give the same centroids. All arithmetic is integer (centroids
//! in 8-bit units × 16); seeding is a deterministic count-weighted farthest-point rule, so the same
//! input always gives the same result. This module knows colours only: no geometry, no models.

use crate::frame::Frame;

/// Number of histogram bins (5 bits per channel).
const BINS: usize = 1 << 15;
/// Largest supported K.
pub const MAX_K: usize = 8;
/// Fixed-point scale of centroid coordinates: a centroid channel of `v` means `v / ONE` in 8-bit units.
const ONE: i32 = 16;

/// The 5-5-5 bin of an RGB pixel.
#[inline]
fn bin_of([r, g, b]: [u8; 3]) -> usize {
    ((r as usize >> 3) << 10) | ((g as usize >> 3) << 5) | (b as usize >> 3)
}

/// The centre of a bin in fixed point (8-bit units × [`ONE`]).
#[inline]
fn bin_centre(bin: usize) -> [i32; 3] {
    let c = |v5: usize| ((v5 as i32) * 8 + 4) * ONE;
    [c(bin >> 10), c((bin >> 5) & 31), c(bin & 31)]
}

/// A colour histogram: one count per 5-5-5 bin. Reuse it across frames with [`Histogram::clear`].
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u32>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BINS],
        }
    }

    /// Heap bytes its bins hold.
    pub(crate) fn heap_bytes(&self) -> usize {
        super::heap_bytes(&self.counts)
    }

    /// Empties it, keeping the buffer.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
    }

    /// Adds one pixel.
    #[inline]
    fn add(&mut self, rgb: [u8; 3]) {
        let c = &mut self.counts[bin_of(rgb)];
        *c = c.saturating_add(1);
    }

    /// Adds every pixel of a frame.
    pub fn add_frame(&mut self, frame: &Frame) {
        for px in frame.data().chunks_exact(3) {
            self.add([px[0], px[1], px[2]]);
        }
    }

    /// The histogram of a frame.
    #[cfg(test)]
    pub(crate) fn of_frame(frame: &Frame) -> Self {
        let mut h = Histogram::new();
        h.add_frame(frame);
        h
    }
}

/// K-means settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KMeansConfig {
    /// Number of clusters, 1..=[`MAX_K`] (clamped).
    pub k: usize,
    /// Lloyd iterations at most (stops earlier when no centroid moves).
    pub max_iter: u32,
    /// Weigh each colour bin by the integer square root of its count instead of the count. A smear is
    /// mostly background and red cells; with plain counts K-means spends its clusters on their shades and
    /// the rare, distinct nucleus violet gets none. Compressed weights let rare colours hold a cluster.
    pub sqrt_weights: bool,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 3,
            max_iter: 20,
            sqrt_weights: true,
        }
    }
}

/// The result: centroids, a label for every histogram bin, and which cluster holds the stained nuclei.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clustering {
    centroids: Vec<[i32; 3]>,
    lut: Vec<u8>,
    nucleus: usize,
}

impl Clustering {
    /// Centroids in 8-bit RGB (rounded).
    pub(crate) fn centroids(&self) -> Vec<[u8; 3]> {
        self.centroids
            .iter()
            .map(|c| c.map(|v| ((v + ONE / 2) / ONE).clamp(0, 255) as u8))
            .collect()
    }

    /// Number of clusters.
    pub(crate) fn k(&self) -> usize {
        self.centroids.len()
    }

    /// The cluster of a pixel.
    #[inline]
    pub fn label(&self, rgb: [u8; 3]) -> u8 {
        self.lut[bin_of(rgb)]
    }

    /// The stained-nucleus cluster: largest blue-minus-green, then darkest.
    pub fn nucleus(&self) -> usize {
        self.nucleus
    }

    /// The nucleus centroid's blue minus green, in 8-bit units (negative: no violet cluster at all).
    pub(crate) fn nucleus_contrast(&self) -> i32 {
        let c = self.centroids[self.nucleus];
        (c[2] - c[1]) / ONE
    }

    /// The largest blue-minus-green (8-bit units) among the other clusters (0 when K = 1).
    pub(crate) fn runner_up_contrast(&self) -> i32 {
        self.centroids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.nucleus)
            .map(|(_, c)| (c[2] - c[1]) / ONE)
            .max()
            .unwrap_or(0)
    }

    /// How much darker (in green, 8-bit units) the nucleus centroid is than the runner-up's, the other
    /// cluster of largest blue-minus-green (0 when K = 1).
    pub(crate) fn runner_up_darkness_gap(&self) -> i32 {
        let green = |c: &[i32; 3]| c[1] / ONE;
        self.centroids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.nucleus)
            .max_by_key(|(_, c)| (c[2] - c[1]) / ONE)
            .map_or(0, |(_, c)| green(c) - green(&self.centroids[self.nucleus]))
    }
}

/// Integer square root, rounded to nearest, at least 1 for a non-zero input.
fn isqrt(v: u64) -> u64 {
    if v == 0 {
        return 0;
    }
    // Integer Newton iteration for the floor square root.
    let (mut x, mut y) = (v, v.div_ceil(2));
    while y < x {
        x = y;
        y = (x + v / x) / 2;
    }
    // Round: x or x + 1, whichever square is nearer.
    if v - x * x > (x + 1) * (x + 1) - v {
        x + 1
    } else {
        x.max(1)
    }
}

#[inline]
fn dist2(a: [i32; 3], b: [i32; 3]) -> u64 {
    let d = |i: usize| {
        let v = (a[i] - b[i]) as i64;
        (v * v) as u64
    };
    d(0) + d(1) + d(2)
}

fn nearest(c: &[[i32; 3]], p: [i32; 3]) -> usize {
    let mut best = (u64::MAX, 0);
    for (i, &q) in c.iter().enumerate() {
        let d = dist2(p, q);
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

/// Which centroid is the nucleus: largest B − G, ties to the darkest (smallest R + G + B), then lowest index.
fn nucleus_of(centroids: &[[i32; 3]]) -> usize {
    let mut best = 0;
    for (i, c) in centroids.iter().enumerate() {
        let b = centroids[best];
        let key = (c[2] - c[1], -(c[0] + c[1] + c[2]));
        if key > (b[2] - b[1], -(b[0] + b[1] + b[2])) {
            best = i;
        }
    }
    best
}

/// Clusters a histogram. Empty histograms give K copies of mid-grey with every bin in cluster 0.
///
/// Seeding: the most populous bin, then repeatedly the bin with the largest `count × distance²` to its
/// nearest seed (a deterministic, greedy form of k-means++). A cluster that empties keeps its centroid.
pub fn kmeans(hist: &Histogram, config: &KMeansConfig) -> Clustering {
    let k = config.k.clamp(1, MAX_K);
    // The occupied bins, in bin order: at most BINS, usually a few thousand.
    let occupied: Vec<(usize, u64)> = hist
        .counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(b, &c)| {
            (
                b,
                if config.sqrt_weights {
                    isqrt(c as u64)
                } else {
                    c as u64
                },
            )
        })
        .collect();
    let mut centroids: Vec<[i32; 3]> = Vec::with_capacity(k);
    if occupied.is_empty() {
        centroids.resize(k, [128 * ONE; 3]);
    } else {
        let first = occupied.iter().fold(
            occupied[0],
            |best, &cur| if cur.1 > best.1 { cur } else { best },
        );
        centroids.push(bin_centre(first.0));
        let mut d2: Vec<u64> = occupied
            .iter()
            .map(|&(b, _)| dist2(bin_centre(b), centroids[0]))
            .collect();
        while centroids.len() < k {
            let mut best = (0u64, usize::MAX);
            for (i, &(_, c)) in occupied.iter().enumerate() {
                let w = c.saturating_mul(d2[i]);
                if w > best.0 {
                    best = (w, i);
                }
            }
            if best.1 == usize::MAX {
                // Fewer distinct colours than K: duplicate the last seed (it stays empty).
                let last = *centroids.last().expect("one seed exists");
                centroids.push(last);
                continue;
            }
            let seed = bin_centre(occupied[best.1].0);
            centroids.push(seed);
            for (i, &(b, _)) in occupied.iter().enumerate() {
                d2[i] = d2[i].min(dist2(bin_centre(b), seed));
            }
        }
    }

    let mut counts = vec![0u64; k];
    for _ in 0..config.max_iter.max(1) {
        let mut sums = [[0i64; 3]; MAX_K];
        counts.iter_mut().for_each(|c| *c = 0);
        for &(b, c) in &occupied {
            let p = bin_centre(b);
            let l = nearest(&centroids, p);
            counts[l] += c;
            for ch in 0..3 {
                sums[l][ch] += p[ch] as i64 * c as i64;
            }
        }
        let mut moved = false;
        for l in 0..k {
            if counts[l] == 0 {
                continue;
            }
            let n = counts[l] as i64;
            let new = [0, 1, 2].map(|ch| ((sums[l][ch] + n / 2) / n) as i32);
            if new != centroids[l] {
                moved = true;
                centroids[l] = new;
            }
        }
        if !moved {
            break;
        }
    }
    // Final assignment for every bin, so any pixel, seen or not, has a label.
    let mut lut = vec![0u8; BINS];
    for (bin, l) in lut.iter_mut().enumerate() {
        *l = nearest(&centroids, bin_centre(bin)) as u8;
    }
    let nucleus = nucleus_of(&centroids);
    Clustering {
        centroids,
        lut,
        nucleus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hist_of(px: &[[u8; 3]]) -> Histogram {
        let mut h = Histogram::new();
        px.iter().for_each(|&p| h.add(p));
        h
    }

    #[test]
    fn finds_three_smear_colours_and_the_nucleus() {
        let mut px = vec![[200u8, 198, 198]; 5000];
        px.extend(std::iter::repeat_n([182, 150, 158], 3000));
        px.extend(std::iter::repeat_n([110, 80, 180], 200));
        let c = kmeans(&hist_of(&px), &KMeansConfig::default());
        assert_eq!(c.k(), 3);
        let n = c.nucleus();
        assert_eq!(c.label([110, 80, 180]) as usize, n);
        assert_ne!(c.label([200, 198, 198]) as usize, n);
        assert_ne!(c.label([182, 150, 158]) as usize, n);
        assert_eq!(
            px.iter().filter(|&&p| c.label(p) as usize == n).count(),
            200
        );
        assert!(c.nucleus_contrast() > 80);
    }

    #[test]
    fn empty_histogram_is_defined() {
        let c = kmeans(&Histogram::new(), &KMeansConfig::default());
        assert_eq!(c.k(), 3);
        assert_eq!(c.label([1, 2, 3]), 0);
    }

    #[test]
    fn one_colour_with_k_three_is_defined() {
        let c = kmeans(&hist_of(&[[0, 0, 0]; 10]), &KMeansConfig::default());
        assert_eq!(c.k(), 3);
        assert!((c.label([0, 0, 0]) as usize) < 3);
    }

    fn pixels() -> impl Strategy<Value = Vec<[u8; 3]>> {
        prop::collection::vec(any::<[u8; 3]>(), 1..400)
    }

    proptest! {
        #[test]
        fn every_label_below_k_and_every_pixel_assigned(px in pixels(), k in 1usize..=MAX_K) {
            let c = kmeans(&hist_of(&px), &KMeansConfig { k, max_iter: 20, sqrt_weights: k % 2 == 0 });
            prop_assert_eq!(c.k(), k);
            // Every pixel has a cluster: its label.
            for &p in &px {
                prop_assert!((c.label(p) as usize) < k);
            }
            prop_assert!(c.nucleus() < k);
        }

        #[test]
        fn same_input_same_result(px in pixels(), k in 1usize..=5) {
            let cfg = KMeansConfig { k, max_iter: 20, sqrt_weights: k % 2 == 0 };
            prop_assert_eq!(kmeans(&hist_of(&px), &cfg), kmeans(&hist_of(&px), &cfg));
        }

        #[test]
        fn pixel_order_does_not_matter(px in pixels(), k in 1usize..=5, rot in 0usize..400) {
            let cfg = KMeansConfig { k, max_iter: 20, sqrt_weights: k % 2 == 0 };
            let mut shuffled = px.clone();
            shuffled.reverse();
            let n = shuffled.len();
            shuffled.rotate_left(rot % n);
            let a = kmeans(&hist_of(&px), &cfg);
            let b = kmeans(&hist_of(&shuffled), &cfg);
            prop_assert_eq!(a.centroids(), b.centroids());
            prop_assert_eq!(a.nucleus(), b.nucleus());
        }
    }
}
