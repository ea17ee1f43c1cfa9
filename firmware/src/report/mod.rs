//! Count reports: what `leukoscope count` found, as JSON, CSV (one row per cell) or one self-contained HTML
//! page with a gallery of each class's crops.
//!
//! A [`Report`] is filled frame by frame ([`Report::add_frame`], [`Report::add_error`]); it owns the
//! [`Differential`] and applies the [`StopRule`]: cells found after the target was reached are listed with
//! `counted: false` rather than dropped, so no data is lost. Writers live in [`json`], [`csv`] and [`html`].
//! This module formats; it never decides a cell's type.

pub mod csv;
pub mod html;
pub mod json;

use std::path::Path;

use serde::Serialize;

use crate::count::{Differential, Flag, StopRule, UNIDENTIFIED};
use crate::frame::Frame;
use crate::pipeline::FrameResult;
use crate::preprocess::{Class, CLASSES};

/// Crops kept per class for the HTML gallery.
pub const GALLERY_PER_CLASS: usize = 48;

/// One cell in a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellRecord {
    /// `[x0, y0, x1, y1]` in the frame's pixels.
    pub bbox: [u32; 4],
    /// Class name, or `"UNIDENTIFIED"`.
    pub class: String,
    /// Top-class probability.
    pub confidence: f32,
    /// The model's top class even when unidentified.
    pub predicted: String,
    /// Probabilities in class order.
    pub probs: [f32; 4],
    /// False when the cell came after the target was reached.
    pub counted: bool,
}

/// One frame in a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameRecord {
    /// The file.
    pub path: String,
    /// Its cells.
    pub cells: Vec<CellRecord>,
    /// More cells than the per-frame capacity were found.
    pub overflow: bool,
    /// Why the frame could not be analysed (then `cells` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One crop for the gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryItem {
    /// PNG bytes of the 128×128 classifier input.
    pub png: Vec<u8>,
    /// Caption: frame, box, confidence.
    pub caption: String,
}

/// A whole count.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Frames in the order analysed.
    pub frames: Vec<FrameRecord>,
    /// The differential of counted cells.
    pub differential: Differential,
    /// The stop rule.
    pub stop: StopRule,
    /// Crops per class in [`CLASSES`] order, then unidentified.
    pub gallery: [Vec<GalleryItem>; 5],
}

/// Rounds to 4 decimals for reports.
pub fn round4(v: f32) -> f32 {
    (v * 10_000.0).round() / 10_000.0
}

/// PNG bytes of an RGB frame.
pub fn png_rgb(frame: &Frame) -> Vec<u8> {
    png_bytes(
        frame.data(),
        frame.width(),
        frame.height(),
        image::ExtendedColorType::Rgb8,
    )
}

/// PNG bytes of an 8-bit grey image.
pub fn png_grey(data: &[u8], w: u32, h: u32) -> Vec<u8> {
    png_bytes(data, w, h, image::ExtendedColorType::L8)
}

fn png_bytes(data: &[u8], w: u32, h: u32, color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    // Encoding valid in-memory pixels into a Vec cannot fail except on a geometry mismatch, which the
    // callers rule out; an empty Vec is returned rather than a panic.
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    if enc.write_image(data, w, h, color).is_err() {
        out.clear();
    }
    out
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for ch in bytes.chunks(3) {
        let n = (ch[0] as u32) << 16
            | (*ch.get(1).unwrap_or(&0) as u32) << 8
            | *ch.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= ch.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn class_name(c: Option<Class>) -> &'static str {
    c.map_or(UNIDENTIFIED, Class::name)
}

impl Report {
    /// An empty report with a stop rule.
    pub fn new(stop: StopRule) -> Self {
        Report {
            stop,
            ..Report::default()
        }
    }

    /// Whether the target is reached.
    pub fn done(&self) -> bool {
        self.stop.reached(&self.differential)
    }

    /// Adds a frame's cells, counting each until the target is reached. Returns whether it is reached.
    pub fn add_frame(&mut self, path: &Path, result: &FrameResult) -> bool {
        let name = path.display().to_string();
        let mut cells = Vec::with_capacity(result.cells.len());
        for cell in &result.cells {
            let counted = !self.done();
            if counted {
                self.differential.add(cell);
                let slot = cell.class.map_or(4, Class::index);
                if self.gallery[slot].len() < GALLERY_PER_CLASS {
                    self.gallery[slot].push(GalleryItem {
                        png: png_rgb(&cell.crop),
                        caption: format!("{name} {:?} {:.2}", cell.bbox, cell.confidence),
                    });
                }
            }
            cells.push(CellRecord {
                bbox: cell.bbox,
                class: class_name(cell.class).into(),
                confidence: round4(cell.confidence),
                predicted: cell.predicted.name().into(),
                probs: cell.probs.map(round4),
                counted,
            });
        }
        self.frames.push(FrameRecord {
            path: name,
            cells,
            overflow: result.overflow,
            error: None,
        });
        self.done()
    }

    /// Records a frame that could not be analysed.
    pub fn add_error(&mut self, path: &Path, message: &str) {
        self.frames.push(FrameRecord {
            path: path.display().to_string(),
            cells: Vec::new(),
            overflow: false,
            error: Some(message.to_string()),
        });
    }

    /// Frames that failed.
    pub fn errors(&self) -> usize {
        self.frames.iter().filter(|f| f.error.is_some()).count()
    }

    /// Flags against the adult reference ranges.
    pub fn flags(&self) -> Vec<Flag> {
        self.differential.flags()
    }

    /// A short plain-text summary (counts, percentages, flags).
    pub fn summary(&self) -> String {
        let d = &self.differential;
        let pct = d.percentages();
        let mut s = format!(
            "{} cells counted in {} frames ({} failed); target {}{}\n",
            d.total(),
            self.frames.len(),
            self.errors(),
            self.stop.target,
            if self.done() {
                " reached"
            } else {
                " not reached"
            }
        );
        for c in CLASSES {
            s += &format!(
                "  {:<12} {:>4}  {:>5.1} %\n",
                c.name(),
                d.count(Some(c)),
                pct[c.index()]
            );
        }
        s += &format!("  {:<12} {:>4}\n", UNIDENTIFIED, d.unidentified());
        for f in self.flags() {
            s += &format!("  flag: {f}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests;
