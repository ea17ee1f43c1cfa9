//! Pictures of a segmentation for people: the nucleus mask as a grey image and an overlay of the mask outline
//! and the cell boxes on the original frame. Pure pixel drawing; no decisions are made here.

use crate::cell::Cell;
use crate::frame::Frame;
use crate::rect::Rect;

/// Box colour (green).
const BOX: [u8; 3] = [0, 230, 0];
/// Mask outline colour (yellow).
const OUTLINE: [u8; 3] = [255, 230, 0];

/// The mask as 8-bit grey bytes (255 = nucleus), same size as the mask.
pub fn mask_grey(mask: &[u8]) -> Vec<u8> {
    mask.iter().map(|&v| if v != 0 { 255 } else { 0 }).collect()
}

/// The frame with the outline of the training-scale `mask` (`mw × mh`, `scale` original pixels per mask
/// pixel, not necessarily whole) and each cell's box ([`Cell::rect`], in the frame's pixels) drawn on it.
pub fn overlay(frame: &Frame, mask: &[u8], mw: u32, mh: u32, scale: f32, cells: &[Cell]) -> Frame {
    let (w, h) = (frame.width(), frame.height());
    let mut data = frame.data().to_vec();
    let mut put = |x: u32, y: u32, c: [u8; 3]| {
        if x < w && y < h {
            let i = (y as usize * w as usize + x as usize) * 3;
            data[i..i + 3].copy_from_slice(&c);
        }
    };
    let at = |x: i64, y: i64| -> bool {
        x >= 0
            && y >= 0
            && x < mw as i64
            && y < mh as i64
            && mask[(y * mw as i64 + x) as usize] != 0
    };
    for y in 0..mh as i64 {
        for x in 0..mw as i64 {
            if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                // The original pixels this mask pixel covers (at least one).
                let span = |v: i64| {
                    let lo = (v as f32 * scale).floor() as u32;
                    lo..(((v + 1) as f32 * scale).ceil() as u32).max(lo + 1)
                };
                for oy in span(y) {
                    for ox in span(x) {
                        put(ox, oy, OUTLINE);
                    }
                }
            }
        }
    }
    for c in cells {
        let Rect { x0, y0, x1, y1 } = c.rect;
        let (x1, y1) = (x1.saturating_sub(1), y1.saturating_sub(1));
        for t in 0..2 {
            for x in x0..=x1 {
                put(x, y0 + t, BOX);
                put(x, y1.saturating_sub(t), BOX);
            }
            for y in y0..=y1 {
                put(x0 + t, y, BOX);
                put(x1.saturating_sub(t), y, BOX);
            }
        }
    }
    Frame::new(w, h, data).expect("same geometry as the input frame")
}
