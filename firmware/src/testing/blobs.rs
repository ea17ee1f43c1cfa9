//! A model-free stand-in for the pipeline, so the session, the journal and the HIL suite can be tested
//! without a trained model.

use crate::cell::{Cell, Prediction};
use crate::classes::Classes;
use crate::frame::Frame;
use crate::rect::Rect;
use crate::session::{Analysis, Analyzer};

/// A model-free test double: one "cell" per block of a 4×4 grid whose most stained pixel (nucleus score
/// `B − G` on a 1/8 downscale) passes a threshold; the class is picked from the block position. It exists so
/// the session, the journal and the HIL suite can be tested without a trained model; it is not a counter.
#[derive(Clone, Debug)]
pub struct BlobAnalyzer {
    /// Minimum nucleus score.
    pub threshold: u8,
    /// The classes it hands out.
    pub classes: Classes,
}

impl BlobAnalyzer {
    /// A double handing out these classes.
    pub fn new(classes: Classes) -> Self {
        BlobAnalyzer {
            threshold: 50,
            classes,
        }
    }
}

impl Default for BlobAnalyzer {
    /// The embedded model's classes.
    fn default() -> Self {
        let card: crate::model::ModelCard =
            serde_json::from_str(crate::model::DEFAULT_CARD).expect("the embedded card parses");
        BlobAnalyzer::new(card.classes)
    }
}

/// [`BlobAnalyzer`] never fails.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub struct NeverFails;

impl Analyzer for BlobAnalyzer {
    type Error = NeverFails;
    fn analysis(&self) -> Analysis {
        Analysis {
            analyzer: "blobs".into(),
            model: None,
            unidentified_threshold: 0.0,
            classes: self.classes.clone(),
        }
    }

    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, NeverFails> {
        let small = frame.downscale(8);
        let (w, h) = (small.width(), small.height());
        let n = self.classes.len();
        let mut out = Vec::new();
        for by in 0..4u32 {
            for bx in 0..4u32 {
                let (x0, x1, y0, y1) = (bx * w / 4, (bx + 1) * w / 4, by * h / 4, (by + 1) * h / 4);
                let peak = (y0..y1)
                    .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                    .map(|(x, y)| {
                        let [_, g, b] = small.pixel(x, y);
                        b.saturating_sub(g)
                    })
                    .max()
                    .unwrap_or(0);
                if peak < self.threshold {
                    continue;
                }
                let f = frame.width() / w.max(1);
                let rect = Rect::new(x0 * f, y0 * f, x1 * f, y1 * f);
                let (cx, cy) = rect.centre();
                let class = (bx + by) as usize % n;
                let confidence = f32::from(peak) / 255.0;
                let rest = if n > 1 {
                    (1.0 - confidence) / (n - 1) as f32
                } else {
                    0.0
                };
                let mut probs = vec![rest; n];
                probs[class] = confidence;
                out.push(Cell {
                    crop: Some(crate::preprocess::crop(frame, cx, cy, 64)),
                    prediction: Some(Prediction {
                        probs,
                        predicted: class,
                        confidence,
                        class: Some(class),
                    }),
                    ..Cell::new(rect)
                });
            }
        }
        Ok(out)
    }
}
