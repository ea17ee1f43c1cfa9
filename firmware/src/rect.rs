//! The one rectangle type: boxes of cells, nuclei and annotations, in pixels.
//!
//! `x1` and `y1` are exclusive, so an empty rectangle has `x0 == x1` or `y0 == y1`. Serialises as the
//! array `[x0, y0, x1, y1]`, the form the journal and reports have always used.

use serde::{Deserialize, Serialize};

/// An axis-aligned rectangle in pixels, `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 4]", into = "[u32; 4]")]
pub struct Rect {
    /// Left edge (inclusive).
    pub x0: u32,
    /// Top edge (inclusive).
    pub y0: u32,
    /// Right edge (exclusive).
    pub x1: u32,
    /// Bottom edge (exclusive).
    pub y1: u32,
}

impl Rect {
    /// A rectangle from its edges; edges given in the wrong order are swapped.
    pub fn new(x0: u32, y0: u32, x1: u32, y1: u32) -> Self {
        Rect {
            x0: x0.min(x1),
            y0: y0.min(y1),
            x1: x0.max(x1),
            y1: y0.max(y1),
        }
    }

    /// The rectangle that, when grown by [`Rect::include`], becomes the first point's 1×1 box.
    pub const EMPTY_BOUNDS: Rect = Rect {
        x0: u32::MAX,
        y0: u32::MAX,
        x1: 0,
        y1: 0,
    };

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    /// Pixels covered.
    pub fn area(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    /// No pixel inside.
    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    /// The centre, rounded down.
    pub fn centre(&self) -> (u32, u32) {
        (self.x0 + self.width() / 2, self.y0 + self.height() / 2)
    }

    /// Grows the rectangle to cover pixel `(x, y)`.
    pub fn include(&mut self, x: u32, y: u32) {
        self.x0 = self.x0.min(x);
        self.y0 = self.y0.min(y);
        self.x1 = self.x1.max(x.saturating_add(1));
        self.y1 = self.y1.max(y.saturating_add(1));
    }

    /// The smallest rectangle covering both.
    pub fn union(&self, other: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    /// The overlap (empty when they do not overlap).
    pub fn intersection(&self, other: &Rect) -> Rect {
        let x0 = self.x0.max(other.x0);
        let y0 = self.y0.max(other.y0);
        Rect {
            x0,
            y0,
            x1: self.x1.min(other.x1).max(x0),
            y1: self.y1.min(other.y1).max(y0),
        }
    }

    /// Intersection over union (0 for two empty rectangles).
    pub fn iou(&self, other: &Rect) -> f32 {
        let inter = self.intersection(other).area();
        let union = self.area() + other.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }

    /// Grown by `margin` on every side, clipped to `[0, width) × [0, height)`.
    pub fn grown(&self, margin: u32, width: u32, height: u32) -> Rect {
        Rect {
            x0: self.x0.saturating_sub(margin),
            y0: self.y0.saturating_sub(margin),
            x1: self.x1.saturating_add(margin).min(width),
            y1: self.y1.saturating_add(margin).min(height),
        }
    }

    /// Every edge multiplied by `factor` (from a downscaled frame back to the original's pixels).
    pub fn scaled(&self, factor: u32) -> Rect {
        Rect {
            x0: self.x0.saturating_mul(factor),
            y0: self.y0.saturating_mul(factor),
            x1: self.x1.saturating_mul(factor),
            y1: self.y1.saturating_mul(factor),
        }
    }

    /// Whether pixel `(x, y)` is inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

impl From<[u32; 4]> for Rect {
    fn from([x0, y0, x1, y1]: [u32; 4]) -> Self {
        Rect { x0, y0, x1, y1 }
    }
}

impl From<Rect> for [u32; 4] {
    fn from(r: Rect) -> Self {
        [r.x0, r.y0, r.x1, r.y1]
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.x0, self.y0, self.x1, self.y1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 15, 15);
        assert_eq!(a.intersection(&b), Rect::new(5, 5, 10, 10));
        assert!((a.iou(&b) - 25.0 / 175.0).abs() < 1e-6);
        assert_eq!(a.iou(&Rect::new(20, 20, 30, 30)), 0.0);
        assert!(a.intersection(&Rect::new(20, 20, 30, 30)).is_empty());
        assert_eq!(a.union(&b), Rect::new(0, 0, 15, 15));
        assert_eq!(a.centre(), (5, 5));
        assert_eq!(b.grown(10, 12, 100), Rect::new(0, 0, 12, 25));
        assert_eq!(a.scaled(2), Rect::new(0, 0, 20, 20));
        let mut e = Rect::EMPTY_BOUNDS;
        e.include(3, 4);
        e.include(1, 9);
        assert_eq!(e, Rect::new(1, 4, 4, 10));
    }

    #[test]
    fn iou_of_touching_overlapping_and_empty_rectangles() {
        let a = Rect::new(0, 0, 10, 10);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&Rect::new(10, 10, 20, 20)), 0.0);
        assert!((a.iou(&Rect::new(5, 0, 15, 10)) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(Rect::default().iou(&Rect::default()), 0.0);
    }

    #[test]
    fn serialises_as_an_array() {
        let r = Rect::new(1, 2, 3, 4);
        assert_eq!(serde_json::to_string(&r).unwrap(), "[1,2,3,4]");
        assert_eq!(serde_json::from_str::<Rect>("[1,2,3,4]").unwrap(), r);
    }
}
