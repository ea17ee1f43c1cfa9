//! The one preprocessing contract: how a frame becomes a classifier input.
//!
//! Host training, host evaluation and the device all call this module, so a model always sees exactly the
//! pixels it was trained on. It owns the input geometry and the normalisation; nothing else in the workspace
//! may hard-code them. (The class list is the model card's: [`crate::classes::Classes`].)
//!
//! The contract, in order:
//! 1. **Scale**: frames are brought to the training scale, the Kaggle `dataset2` scale of whole 640×480 smear
//!    frames halved (320×240), by integer block averaging ([`to_training_scale`]); or, for another
//!    microscope, by its red cells: resized so they measure the model's reference diameter
//!    ([`REFERENCE_RBC_PX`] unless the card says otherwise; [`Scaling::Rbc`], [`crate::scale`]).
//! 2. **Locate**: the stained nucleus is found as the [`LOCATE_BOX`]-square window with the largest sum of
//!    the integer nucleus score `max(0, B − G)` ([`locate`]). Counting passes its own detections instead.
//! 3. **Crop**: a [`CROP`]-square window centred there, edge pixels repeated beyond the frame ([`crop`]).
//! 4. **Resize**: bilinear, fixed point, to [`INPUT`]×[`INPUT`] ([`resize_bilinear`]).
//! 5. **Normalise**: `(v / 255 − MEAN[c]) / STD[c]`, NCHW `f32` ([`normalize`]).
//!
//! Steps 1–4 are integer-only and yield the `u8` input image that the trainer augments and stores; step 5 is
//! the only float step.

use crate::frame::Frame;

/// Width of a frame at the training scale (640×480 camera frames halved).
pub const FRAME_WIDTH: u32 = 320;
/// Height of a frame at the training scale.
pub const FRAME_HEIGHT: u32 = 240;
/// Side of the nucleus-search window at the training scale (about one nucleus).
pub const LOCATE_BOX: u32 = 40;
/// Side of the square cut around a cell at the training scale (BCCD WBC boxes: median ~100 px here).
pub const CROP: u32 = 160;
/// Side of the model input.
pub const INPUT: u32 = 128;
/// Per-channel mean of `v / 255` subtracted before the model.
pub const MEAN: [f32; 3] = [0.66, 0.62, 0.74];
/// Per-channel divisor after the mean.
pub const STD: [f32; 3] = [0.18, 0.20, 0.12];

/// The median red-cell diameter, in pixels, of the Kaggle `dataset2` TRAIN images (the training scale),
/// as [`crate::scale::estimate_rbc_diameter`] measures it: `models/results/rbc-scale.md`. A card's
/// `rbc_diameter_px` overrides it.
pub const REFERENCE_RBC_PX: f32 = 41.4;

/// The input tensor shape `[N, C, H, W]` for one image.
pub const INPUT_SHAPE: [usize; 4] = [1, 3, INPUT as usize, INPUT as usize];

/// Integer factor that brings a frame of `width` pixels to the training scale (at least 1).
pub fn scale_factor(width: u32, height: u32) -> u32 {
    let fx = (width + FRAME_WIDTH / 2) / FRAME_WIDTH;
    let fy = (height + FRAME_HEIGHT / 2) / FRAME_HEIGHT;
    fx.min(fy).max(1)
}

/// Step 1: brings a frame to the training scale by integer block averaging.
pub fn to_training_scale(frame: &Frame) -> Frame {
    frame.downscale(scale_factor(frame.width(), frame.height()))
}

/// How step 1 brings a frame to the training scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling {
    /// By the frame's size ([`to_training_scale`]): right for Kaggle/BCCD-like microscopes.
    FrameSize,
    /// By the slide's red cells: the frame is resized by `reference_px / rbc_px`, so that its red cells of
    /// `rbc_px` pixels measure the model's `reference_px`.
    Rbc {
        /// The red-cell diameter in this frame's pixels (measured or given by a calibrated microscope).
        rbc_px: f32,
        /// The red-cell diameter at the training scale (the card's, or [`REFERENCE_RBC_PX`]).
        reference_px: f32,
    },
}

/// Step 1 either way ([`Scaling`]). A red-cell resize is block averaging by the integer part of a
/// shrink, then bilinear ([`resize_bilinear`]); the result is at least 1×1 and at most
/// [`crate::frame::MAX_SIDE`] a side (a ratio that is not a positive number leaves the frame as it is).
pub fn scale_frame(frame: &Frame, scaling: Scaling) -> Frame {
    let Scaling::Rbc {
        rbc_px,
        reference_px,
    } = scaling
    else {
        return to_training_scale(frame);
    };
    let mut s = reference_px / rbc_px;
    if !s.is_finite() || s <= 0.0 {
        return frame.clone();
    }
    // Never more than the pixels a decoded file may have: a tiny given diameter on a large frame would
    // otherwise ask for gigabytes.
    let pixels = f64::from(frame.width()) * f64::from(frame.height()) * f64::from(s) * f64::from(s);
    if pixels > crate::frame::MAX_PIXELS as f64 {
        s *= (crate::frame::MAX_PIXELS as f64 / pixels).sqrt() as f32;
    }
    let side = |v: u32| ((v as f32 * s).round() as u32).clamp(1, crate::frame::MAX_SIDE);
    let (ow, oh) = (side(frame.width()), side(frame.height()));
    let k = if s < 1.0 { (1.0 / s).floor() as u32 } else { 1 };
    let blocked = frame.downscale(k);
    resize_bilinear(&blocked, ow, oh)
}

/// Each channel divided by the frame's white point, the brightest `block`-square average of that channel
/// (the plasma between the cells; the whole frame when it is smaller than one square), and brought back to
/// 0–255 (clipped): a lamp's or a camera's white balance, or a yellow background, becomes white. The
/// integer twin of the nets' `WhitePoint` colour standardisation; a channel that is black throughout stays
/// black.
pub fn white_balance(frame: &Frame, block: u32) -> Frame {
    white_balance_into(frame, block, Vec::new())
}

/// [`white_balance`] written into `buf` (cleared first; its allocation is reused).
pub fn white_balance_into(frame: &Frame, block: u32, mut buf: Vec<u8>) -> Frame {
    let (brightest, n) = brightest_block_sums(frame, block);
    let data = frame.data();
    buf.clear();
    buf.extend(data.chunks_exact(3).flat_map(|px| {
        std::array::from_fn::<u8, 3, _>(|c| {
            if brightest[c] == 0 {
                return 0;
            }
            let v = (u64::from(px[c]) * 255 * n + brightest[c] / 2) / brightest[c];
            v.min(255) as u8
        })
    }));
    Frame::new(frame.width(), frame.height(), buf).expect("same size as the frame")
}

/// The white point [`white_balance`] divides by: per channel, the mean of the brightest `block`-square
/// (the whole frame when it is smaller than one square), 0–255.
pub fn white_point(frame: &Frame, block: u32) -> [f64; 3] {
    let (brightest, n) = brightest_block_sums(frame, block);
    brightest.map(|s| s as f64 / n as f64)
}

/// Per channel the largest sum over a whole `block`-square, and the pixels in a square.
fn brightest_block_sums(frame: &Frame, block: u32) -> ([u64; 3], u64) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let b = (block.max(1) as usize).min(w).min(h).max(1);
    let data = frame.data();
    // Sums over each channel of every whole square; the largest per channel.
    let mut brightest = [0u64; 3];
    for by in 0..h / b {
        for bx in 0..w / b {
            let mut sum = [0u64; 3];
            for y in by * b..(by + 1) * b {
                let row = &data[(y * w + bx * b) * 3..(y * w + (bx + 1) * b) * 3];
                for px in row.chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(px[c]);
                    }
                }
            }
            for c in 0..3 {
                brightest[c] = brightest[c].max(sum[c]);
            }
        }
    }
    (brightest, (b * b) as u64)
}

/// The integer nucleus score of one pixel: Wright–Giemsa stains nuclei violet (blue above green), while
/// background, red cells and eosinophil granules have blue close to or below green.
#[inline]
pub fn nucleus_score([_, g, b]: [u8; 3]) -> u32 {
    (b as i32 - g as i32).max(0) as u32
}

/// Step 2: the centre `(x, y)` of the [`LOCATE_BOX`] window with the largest nucleus score (first in raster
/// order on ties). Frames smaller than the box use the whole frame.
pub fn locate(frame: &Frame) -> (u32, u32) {
    let (w, h) = (frame.width(), frame.height());
    let integral = crate::segment::integral::Integral::new(frame, nucleus_score);
    let bw = LOCATE_BOX.min(w);
    let bh = LOCATE_BOX.min(h);
    let mut best = (0u64, 0, 0);
    for y in 0..=h - bh {
        for x in 0..=w - bw {
            let s = integral.sum(crate::rect::Rect::new(x, y, x + bw, y + bh));
            if s > best.0 {
                best = (s, x, y);
            }
        }
    }
    if best.0 == 0 {
        return (w / 2, h / 2);
    }
    (best.1 + bw / 2, best.2 + bh / 2)
}

/// Step 3: the `side`-square window centred on `(cx, cy)`; pixels beyond the frame repeat its edge.
pub fn crop(frame: &Frame, cx: u32, cy: u32, side: u32) -> Frame {
    window(frame, cx, cy, side, side)
}

/// The `w × h` window centred on `(cx, cy)`; pixels beyond the frame repeat its edge.
pub fn window(frame: &Frame, cx: u32, cy: u32, w: u32, h: u32) -> Frame {
    let x0 = cx as i64 - w as i64 / 2;
    let y0 = cy as i64 - h as i64 / 2;
    let (fw, fh) = (frame.width() as i64, frame.height() as i64);
    let mut data = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as i64 {
        let sy = (y0 + y).clamp(0, fh - 1) as u32;
        for x in 0..w as i64 {
            let sx = (x0 + x).clamp(0, fw - 1) as u32;
            data.extend_from_slice(&frame.pixel(sx, sy));
        }
    }
    Frame::new(w, h, data).expect("window geometry is consistent")
}

/// Step 4: bilinear resize in 16.16 fixed point (pixel centres aligned, edges clamped).
pub fn resize_bilinear(frame: &Frame, out_w: u32, out_h: u32) -> Frame {
    let (w, h) = (frame.width() as i64, frame.height() as i64);
    if (w as u32, h as u32) == (out_w, out_h) {
        return frame.clone();
    }
    const ONE: i64 = 1 << 16;
    // Source coordinate of output centre o: (o + 0.5) * in / out - 0.5, in 16.16.
    let coord = |o: i64, inp: i64, out: i64| -> (usize, usize, i64) {
        let c = ((2 * o + 1) * inp * ONE / (2 * out) - ONE / 2).max(0);
        let i0 = (c >> 16).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        (i0 as usize, i1 as usize, c & (ONE - 1))
    };
    let xs: Vec<_> = (0..out_w as i64)
        .map(|o| coord(o, w, out_w as i64))
        .collect();
    let src = frame.data();
    let stride = w as usize * 3;
    let mut data = Vec::with_capacity(out_w as usize * out_h as usize * 3);
    for oy in 0..out_h as i64 {
        let (y0, y1, fy) = coord(oy, h, out_h as i64);
        for &(x0, x1, fx) in &xs {
            for c in 0..3 {
                let p = |y: usize, x: usize| src[y * stride + x * 3 + c] as i64;
                let top = p(y0, x0) * (ONE - fx) + p(y0, x1) * fx;
                let bot = p(y1, x0) * (ONE - fx) + p(y1, x1) * fx;
                let v = (top * (ONE - fy) + bot * fy + (1 << 31)) >> 32;
                data.push(v.clamp(0, 255) as u8);
            }
        }
    }
    Frame::new(out_w, out_h, data).expect("resize geometry is consistent")
}

/// Steps 3–4 for a cell centred at `(cx, cy)` of a frame already at the training scale.
pub fn cell_input(frame: &Frame, cx: u32, cy: u32) -> Frame {
    resize_bilinear(&crop(frame, cx, cy, CROP), INPUT, INPUT)
}

/// Steps 1–4 for a frame holding one white cell (the Kaggle images): returns the `u8` input image and the
/// located centre in training-scale coordinates.
pub fn frame_input(frame: &Frame) -> (Frame, (u32, u32)) {
    frame_input_with(frame, Scaling::FrameSize)
}

/// [`frame_input`] with step 1 done as `scaling` says (the centre is in the scaled frame's coordinates).
pub fn frame_input_with(frame: &Frame, scaling: Scaling) -> (Frame, (u32, u32)) {
    let scaled = scale_frame(frame, scaling);
    let (cx, cy) = locate(&scaled);
    (cell_input(&scaled, cx, cy), (cx, cy))
}

/// Step 5: HWC `u8` to normalised CHW `f32` (`len = 3 * w * h`).
pub fn normalize(input: &Frame) -> Vec<f32> {
    let n = input.width() as usize * input.height() as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, px) in input.data().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_balance_makes_the_plasma_white_and_keeps_black_black() {
        // Yellow plasma with a darker violet square.
        let mut data = Vec::new();
        for y in 0..64u32 {
            for x in 0..64u32 {
                let inside = (16..32).contains(&x) && (16..32).contains(&y);
                data.extend_from_slice(&if inside {
                    [100, 45, 50]
                } else {
                    [240, 225, 120]
                });
            }
        }
        let f = Frame::new(64, 64, data).unwrap();
        let b = white_balance(&f, 8);
        assert_eq!(b.pixel(0, 0), [255, 255, 255]);
        assert_eq!(b.pixel(20, 20), [106, 51, 106]);
        // A black frame stays black; a frame smaller than one square is its own white point.
        let black = Frame::filled(10, 10, [0, 0, 0]).unwrap();
        assert_eq!(white_balance(&black, 8).data(), black.data());
        let tiny = Frame::filled(3, 2, [10, 20, 40]).unwrap();
        assert!(white_balance(&tiny, 8).data().iter().all(|&v| v == 255));
    }
    use proptest::prelude::*;

    #[test]
    fn scale_factor_matches_camera_and_dataset() {
        assert_eq!(scale_factor(320, 240), 1);
        assert_eq!(scale_factor(640, 480), 2);
        assert_eq!(scale_factor(1, 1), 1);
        assert_eq!(scale_factor(8000, 6000), 25);
    }

    #[test]
    fn locate_finds_a_violet_disc() {
        let mut f = Frame::filled(320, 240, [220, 200, 200]).unwrap();
        let mut data = f.data().to_vec();
        for y in 0..240u32 {
            for x in 0..320u32 {
                let (dx, dy) = (x as i32 - 250, y as i32 - 60);
                if dx * dx + dy * dy < 18 * 18 {
                    let i = (y as usize * 320 + x as usize) * 3;
                    data[i..i + 3].copy_from_slice(&[90, 40, 150]);
                }
            }
        }
        f = Frame::new(320, 240, data).unwrap();
        let (x, y) = locate(&f);
        assert!(
            (x as i32 - 250).abs() <= 2 && (y as i32 - 60).abs() <= 2,
            "{x},{y}"
        );
    }

    #[test]
    fn locate_on_blank_frame_is_centre() {
        let f = Frame::filled(320, 240, [200, 200, 200]).unwrap();
        assert_eq!(locate(&f), (160, 120));
    }

    #[test]
    fn crop_repeats_edges() {
        let f = Frame::new(2, 1, vec![1, 1, 1, 9, 9, 9]).unwrap();
        let c = crop(&f, 0, 0, 4);
        assert_eq!(c.pixel(0, 0), [1, 1, 1]);
        assert_eq!(c.pixel(3, 3), [9, 9, 9]);
    }

    #[test]
    fn window_is_centred_and_repeats_edges() {
        // A 3×2 frame whose pixels are their own coordinates.
        let f = Frame::new(
            3,
            2,
            vec![0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 1, 1, 0, 2, 1, 0],
        )
        .unwrap();
        let w = window(&f, 1, 1, 5, 4);
        assert_eq!((w.width(), w.height()), (5, 4));
        // Window x0 = 1 - 2 = -1, y0 = 1 - 2 = -1: its (1, 1) is the frame's (0, 0), corners clamp.
        assert_eq!(w.pixel(1, 1), [0, 0, 0]);
        assert_eq!(w.pixel(0, 0), [0, 0, 0]);
        assert_eq!(w.pixel(4, 3), [2, 1, 0]);
        assert_eq!(w.pixel(3, 2), [2, 1, 0]);
        assert_eq!(w.pixel(2, 1), [1, 0, 0]);
    }

    #[test]
    fn normalize_layout_is_chw() {
        let f = Frame::new(2, 1, vec![255, 0, 0, 0, 255, 0]).unwrap();
        let t = normalize(&f);
        assert_eq!(t.len(), 6);
        assert!((t[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-6);
        assert!((t[1] - (0.0 - MEAN[0]) / STD[0]).abs() < 1e-6);
        assert!((t[3] - (1.0 - MEAN[1]) / STD[1]).abs() < 1e-6);
    }

    #[test]
    fn rbc_scaling_brings_red_cells_to_the_reference() {
        let f = Frame::filled(120, 90, [9, 9, 9]).unwrap();
        let rbc = |rbc_px, reference_px| Scaling::Rbc {
            rbc_px,
            reference_px,
        };
        let up = scale_frame(&f, rbc(40.0, 50.0));
        assert_eq!((up.width(), up.height()), (150, 113));
        let down = scale_frame(&f, rbc(100.0, 25.0));
        assert_eq!((down.width(), down.height()), (30, 23));
        assert!(down.data().iter().all(|&v| v == 9));
        // Nonsense ratios leave the frame alone; extreme ones stay within the frame limits.
        assert_eq!(scale_frame(&f, rbc(0.0, 50.0)), f);
        assert_eq!(scale_frame(&f, rbc(f32::NAN, 50.0)), f);
        let tiny = scale_frame(&f, rbc(1e9, 50.0));
        assert_eq!((tiny.width(), tiny.height()), (1, 1));
        assert_eq!(scale_frame(&f, Scaling::FrameSize), to_training_scale(&f));
        // A tiny diameter on a big frame is capped at the decoder's pixel budget, not gigabytes.
        let big = Frame::filled(4000, 3000, [9, 9, 9]).unwrap();
        let huge = scale_frame(&big, rbc(4.0, 41.4));
        let pixels = u64::from(huge.width()) * u64::from(huge.height());
        assert!(pixels <= crate::frame::MAX_PIXELS * 101 / 100, "{pixels}");
    }

    proptest! {
        #[test]
        fn resize_of_constant_is_constant(w in 1u32..50, h in 1u32..50, ow in 1u32..50, oh in 1u32..50, v in any::<u8>()) {
            let f = Frame::filled(w, h, [v, v, v]).unwrap();
            let r = resize_bilinear(&f, ow, oh);
            prop_assert_eq!((r.width(), r.height()), (ow, oh));
            prop_assert!(r.data().iter().all(|&p| p == v));
        }

        #[test]
        fn frame_input_has_model_geometry(w in 1u32..700, h in 1u32..500, seed in any::<u8>()) {
            let data = (0..w * h * 3).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let f = Frame::new(w, h, data).unwrap();
            let (inp, (cx, cy)) = frame_input(&f);
            prop_assert_eq!((inp.width(), inp.height()), (INPUT, INPUT));
            let s = to_training_scale(&f);
            prop_assert!(cx <= s.width() && cy <= s.height());
        }
    }
}
