//! Connected components of a binary mask, and the grouping of nucleus lobes into cells.
//!
//! Works on a `w × h` mask of `0`/`1` bytes with caller-owned buffers (labels, stack), so labelling a frame
//! allocates nothing per pixel once the buffers have grown. It knows geometry only: no colours, no models.

use crate::rect::Rect;
use std::cmp::Ordering;

/// One 8-connected component of a mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// Pixels in it.
    pub area: u32,
    /// Bounding box.
    pub bbox: Rect,
    /// Sum of x over its pixels (centroid = sum / area).
    pub sum_x: u64,
    /// Sum of y over its pixels.
    pub sum_y: u64,
}

impl Component {
    /// Centroid, rounded.
    pub fn centroid(&self) -> (u32, u32) {
        let a = self.area.max(1) as u64;
        (
            ((self.sum_x + a / 2) / a) as u32,
            ((self.sum_y + a / 2) / a) as u32,
        )
    }

    /// The union of two components (as one group).
    pub fn merged(&self, o: &Component) -> Component {
        Component {
            area: self.area + o.area,
            bbox: self.bbox.union(&o.bbox),
            sum_x: self.sum_x + o.sum_x,
            sum_y: self.sum_y + o.sum_y,
        }
    }

    /// Gap in pixels between two boxes (0 when they touch or overlap), Chebyshev style.
    pub fn gap(&self, o: &Component) -> u32 {
        let (a, b) = (self.bbox, o.bbox);
        let gx = (b.x0.saturating_sub(a.x1)).max(a.x0.saturating_sub(b.x1));
        let gy = (b.y0.saturating_sub(a.y1)).max(a.y0.saturating_sub(b.y1));
        gx.max(gy)
    }

    /// Larger area first, then by box position (`[x0, y0, x1, y1]` in order): the order groups are
    /// grown and reported in.
    fn by_area_then_position(&self, o: &Component) -> Ordering {
        o.area
            .cmp(&self.area)
            .then_with(|| <[u32; 4]>::from(self.bbox).cmp(&o.bbox.into()))
    }
}

/// Reusable buffers for [`Labeller::label`].
#[derive(Clone, Debug, Default)]
pub struct Labeller {
    labels: Vec<u32>,
    stack: Vec<u32>,
}

impl Labeller {
    /// Heap bytes its label image and stack hold.
    pub fn heap_bytes(&self) -> usize {
        super::heap_bytes(&self.labels) + super::heap_bytes(&self.stack)
    }

    /// Labels the 8-connected components of `mask` (`w × h`, non-zero = set) into `out` (cleared first).
    pub fn label(&mut self, mask: &[u8], w: u32, h: u32, out: &mut Vec<Component>) {
        out.clear();
        let (w, h) = (w as usize, h as usize);
        let n = (w * h).min(mask.len());
        self.labels.clear();
        self.labels.resize(n, 0);
        for start in 0..n {
            if mask[start] == 0 || self.labels[start] != 0 {
                continue;
            }
            let id = out.len() as u32 + 1;
            let mut c = Component {
                area: 0,
                bbox: Rect::EMPTY_BOUNDS,
                sum_x: 0,
                sum_y: 0,
            };
            self.labels[start] = id;
            self.stack.clear();
            self.stack.push(start as u32);
            while let Some(i) = self.stack.pop() {
                let i = i as usize;
                let (x, y) = (i % w, i / w);
                c.area += 1;
                c.sum_x += x as u64;
                c.sum_y += y as u64;
                c.bbox.include(x as u32, y as u32);
                for dy in -1i32..=1 {
                    let ny = y as i32 + dy;
                    if ny < 0 || ny >= h as i32 {
                        continue;
                    }
                    for dx in -1i32..=1 {
                        let nx = x as i32 + dx;
                        if nx < 0 || nx >= w as i32 {
                            continue;
                        }
                        let j = ny as usize * w + nx as usize;
                        if j < n && mask[j] != 0 && self.labels[j] == 0 {
                            self.labels[j] = id;
                            self.stack.push(j as u32);
                        }
                    }
                }
            }
            out.push(c);
        }
    }
}

/// Groups lobes into cells: components of at least `min_lobe` pixels whose boxes lie within `gap` pixels of
/// each other, or whose centroids lie within `radius` pixels (lobes of one cell around its middle), are
/// merged (repeatedly) as long as the merged box stays within `max_side` pixels on each side. Returns the
/// groups, largest area first (ties by position), into `out`.
pub fn group_lobes(
    components: &[Component],
    min_lobe: u32,
    gap: u32,
    radius: u32,
    max_side: u32,
    out: &mut Vec<Component>,
) {
    out.clear();
    out.extend(components.iter().filter(|c| c.area >= min_lobe).copied());
    // Seeded growth, largest first: a seed absorbs the single components near it until none is left near,
    // and only then does the next-largest free component seed its own group. Groups never merge with each
    // other, so specks (platelets) cannot first club together into a wide box that then reaches a nucleus.
    out.sort_by(Component::by_area_then_position);
    let mut i = 0;
    while i < out.len() {
        let mut changed = true;
        while changed {
            changed = false;
            let mut j = i + 1;
            while j < out.len() {
                let m = out[i].merged(&out[j]);
                let fits = m.bbox.width() <= max_side && m.bbox.height() <= max_side;
                let (a, b) = (out[i].centroid(), out[j].centroid());
                let (dx, dy) = (a.0 as i64 - b.0 as i64, a.1 as i64 - b.1 as i64);
                let near = dx * dx + dy * dy <= radius as i64 * radius as i64;
                if (out[i].gap(&out[j]) <= gap || near) && fits {
                    out[i] = m;
                    out.remove(j);
                    changed = true;
                } else {
                    j += 1;
                }
            }
        }
        i += 1;
    }
    out.sort_by(Component::by_area_then_position);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_of(rows: &[&str]) -> (Vec<u8>, u32, u32) {
        let w = rows[0].len() as u32;
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| (b == b'#') as u8))
            .collect();
        (m, w, rows.len() as u32)
    }

    #[test]
    fn labels_eight_connected_blobs() {
        let (m, w, h) = mask_of(&["##....", "..#...", "......", "....##", "....##"]);
        let mut l = Labeller::default();
        let mut out = Vec::new();
        l.label(&m, w, h, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].area, 3);
        assert_eq!(out[0].bbox, Rect::new(0, 0, 3, 2));
        assert_eq!(out[1].bbox, Rect::new(4, 3, 6, 5));
        assert_eq!(out[1].centroid(), (5, 4));
    }

    #[test]
    fn empty_and_full_masks() {
        let mut l = Labeller::default();
        let mut out = Vec::new();
        l.label(&[0; 12], 4, 3, &mut out);
        assert!(out.is_empty());
        l.label(&[1; 12], 4, 3, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].area, 12);
    }

    #[test]
    fn lobes_close_together_merge_far_ones_do_not() {
        let c = |x0, x1, area| Component {
            area,
            bbox: Rect::new(x0, 0, x1, 10),
            sum_x: 0,
            sum_y: 0,
        };
        let comps = [c(0, 10, 80), c(13, 20, 50), c(100, 110, 90), c(200, 201, 2)];
        let mut out = Vec::new();
        group_lobes(&comps, 10, 5, 0, 60, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].area, 130);
        assert_eq!(out[0].bbox, Rect::new(0, 0, 20, 10));
        // The size cap keeps two nuclei apart even when they touch.
        group_lobes(&comps, 10, 5, 0, 15, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn specks_do_not_club_together_to_reach_a_nucleus() {
        let c = |b: [u32; 4], area: u32| Component {
            area,
            bbox: Rect::from(b),
            sum_x: (b[0] + b[2]) as u64 / 2 * area as u64,
            sum_y: (b[1] + b[3]) as u64 / 2 * area as u64,
        };
        // A nucleus, and two specks each more than `gap` (5) from it but within `gap` of each other: their
        // joint box [43, 38, 52, 51] is 3 px from the nucleus's, yet neither speck is part of it.
        let nucleus = c([0, 0, 40, 40], 1200);
        let comps = [nucleus, c([43, 47, 47, 51], 16), c([48, 38, 52, 42], 16)];
        let mut out = Vec::new();
        group_lobes(&comps, 10, 5, 0, 200, &mut out);
        assert_eq!(out[0], nucleus, "{out:?}");
        // The specks form their own group (too small for a cell: `min_area` drops it later).
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].area, 32);
        // A lobe within `gap` of the nucleus joins, and a speck within `gap` of that lobe follows it.
        let comps = [nucleus, c([44, 10, 50, 30], 100), c([53, 12, 56, 16], 12)];
        group_lobes(&comps, 10, 5, 0, 200, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox, Rect::new(0, 0, 56, 40));
    }
}
