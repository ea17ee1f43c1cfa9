//! Summed-area table (integral image) of a per-pixel score: the sum over any rectangle in four look-ups.
//!
//! The one implementation behind [`crate::preprocess::locate`] (the nucleus window of a whole frame) and the
//! segmenter's classifier centre of each cell. Sums are `u64`: the largest frame the device accepts,
//! [`crate::frame::MAX_SIDE`]² pixels of score up to 255, sums to about 6.8 × 10¹⁰, past `u32`, and a sum
//! never saturates. It knows pixels only through the score it is given.

use crate::frame::Frame;
use crate::rect::Rect;

/// The integral image of a frame's per-pixel score, `(w + 1) × (h + 1)` sums. Rebuild it for each frame
/// with [`Integral::build`] to reuse its buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Integral {
    sums: Vec<u64>,
    width: u32,
    height: u32,
}

impl Integral {
    /// The integral image of `score` over `frame`.
    pub(crate) fn new(frame: &Frame, score: impl Fn([u8; 3]) -> u32) -> Self {
        let mut integral = Integral::default();
        integral.build(frame, score);
        integral
    }

    /// Rebuilds it for `frame`, keeping the buffer.
    pub(crate) fn build(&mut self, frame: &Frame, score: impl Fn([u8; 3]) -> u32) {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        (self.width, self.height) = (frame.width(), frame.height());
        self.sums.clear();
        self.sums.resize((w + 1) * (h + 1), 0);
        for y in 0..h {
            let mut row = 0u64;
            for x in 0..w {
                row += u64::from(score(frame.pixel(x as u32, y as u32)));
                self.sums[(y + 1) * (w + 1) + x + 1] = self.sums[y * (w + 1) + x + 1] + row;
            }
        }
    }

    /// The score summed over the part of `r` inside the frame (0 when none is).
    pub(crate) fn sum(&self, r: Rect) -> u64 {
        let (x0, x1) = (r.x0.min(self.width), r.x1.min(self.width));
        let (y0, y1) = (r.y0.min(self.height), r.y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return 0;
        }
        let stride = self.width as usize + 1;
        let at = |x: u32, y: u32| self.sums[y as usize * stride + x as usize];
        // Both sides of the subtraction cover the rectangle's top and left strips; no wrap-around.
        (at(x1, y1) + at(x0, y0)) - (at(x1, y0) + at(x0, y1))
    }

    /// Heap bytes its sums hold.
    pub(crate) fn heap_bytes(&self) -> usize {
        super::heap_bytes(&self.sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{locate, nucleus_score, LOCATE_BOX};
    use proptest::prelude::*;

    fn frame(w: u32, h: u32, bytes: &[u8]) -> Frame {
        let data = (0..(w * h * 3) as usize)
            .map(|i| bytes[i % bytes.len()])
            .collect();
        Frame::new(w, h, data).unwrap()
    }

    fn brute_sum(f: &Frame, r: Rect) -> u64 {
        let inside = r.intersection(&Rect::new(0, 0, f.width(), f.height()));
        let mut s = 0;
        for y in inside.y0..inside.y1 {
            for x in inside.x0..inside.x1 {
                s += u64::from(nucleus_score(f.pixel(x, y)));
            }
        }
        s
    }

    /// What `locate` did before it shared this table: every full window, raster order, first maximum.
    fn brute_locate(f: &Frame) -> (u32, u32) {
        let (bw, bh) = (LOCATE_BOX.min(f.width()), LOCATE_BOX.min(f.height()));
        let mut best = (0u64, 0, 0);
        for y in 0..=f.height() - bh {
            for x in 0..=f.width() - bw {
                let s = brute_sum(f, Rect::new(x, y, x + bw, y + bh));
                if s > best.0 {
                    best = (s, x, y);
                }
            }
        }
        if best.0 == 0 {
            return (f.width() / 2, f.height() / 2);
        }
        (best.1 + bw / 2, best.2 + bh / 2)
    }

    #[test]
    fn sums_past_u32_do_not_saturate() {
        let f = Frame::filled(300, 300, [0, 0, 0]).unwrap();
        let i = Integral::new(&f, |_| u32::MAX);
        assert_eq!(
            i.sum(Rect::new(0, 0, 300, 300)),
            90_000 * u64::from(u32::MAX)
        );
    }

    proptest! {
        #[test]
        fn window_sums_equal_brute_force(
            w in 1u32..40,
            h in 1u32..40,
            bytes in prop::collection::vec(any::<u8>(), 1..200),
            r in (0u32..50, 0u32..50, 0u32..50, 0u32..50),
        ) {
            let f = frame(w, h, &bytes);
            let i = Integral::new(&f, nucleus_score);
            let r = Rect::new(r.0, r.1, r.2, r.3);
            prop_assert_eq!(i.sum(r), brute_sum(&f, r));
            prop_assert_eq!(i.sum(Rect::new(0, 0, w, h)), brute_sum(&f, Rect::new(0, 0, w, h)));
        }

        #[test]
        fn locate_equals_the_brute_force_window_search(
            w in 1u32..90,
            h in 1u32..70,
            bytes in prop::collection::vec(any::<u8>(), 1..300),
        ) {
            let f = frame(w, h, &bytes);
            prop_assert_eq!(locate(&f), brute_locate(&f));
        }
    }
}
