//! Whether the camera clipped a frame: the share of its pixels at the sensor's white level, per channel.
//!
//! A bright-field smear is lit from behind: the plasma is the brightest thing in a frame and covers most of
//! it. When the camera's exposure or the lamp is set so high that the plasma reaches the white level, every
//! pixel at least as bright as the plasma is flattened to 255: the pale red cells, the pale cytoplasm of a
//! neutrophil or a monocyte. No colour normalisation brings that detail back, and a model that never saw a
//! clipped frame types such cells wrongly (the second lab's camera clips half of every crop in red and
//! green; Kaggle's and BCCD's never do: `models/README.md`, thirteenth round).
//!
//! So the device measures it ([`Clipping::of`]), lowers its own lamp until a field is no longer clipped
//! ([`crate::session`]), and says so in every count and classification of a clipped image
//! ([`crate::pipeline::FrameResult::clipping`]). This module only measures; it knows nothing of models.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::frame::Frame;

/// A channel value at least this is at the sensor's white level (JPEG rounding leaves 254 beside 255).
pub const WHITE_LEVEL: u8 = 254;

/// A frame is over-exposed when more than this share of its pixels is at the white level in any channel.
///
/// Set from what clipping means, not fitted to any lab: a clipped plasma covers a large part of a frame
/// (a third to two thirds of a smear field), while a correctly exposed frame clips at most a few specks of
/// dust or glare. Any limit between those separates them; 5 % leaves room on both sides.
pub const LIMIT: f32 = 0.05;

/// The share of a frame's pixels at the white level, per channel (`[red, green, blue]`, 0–1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Clipping {
    /// Red, green, blue: the share of the pixels at [`WHITE_LEVEL`] or above.
    pub share: [f32; 3],
}

impl Clipping {
    /// Measures a frame (an empty frame clips nothing).
    pub fn of(frame: &Frame) -> Clipping {
        let mut at = [0u64; 3];
        for px in frame.data().chunks_exact(3) {
            for (n, &v) in at.iter_mut().zip(px) {
                *n += u64::from(v >= WHITE_LEVEL);
            }
        }
        let pixels = (frame.data().len() / 3).max(1) as f64;
        Clipping {
            share: at.map(|n| (n as f64 / pixels) as f32),
        }
    }

    /// The frame's clipping when it is over-exposed (any channel above [`LIMIT`]), else `None`.
    pub fn over_exposed(frame: &Frame) -> Option<Clipping> {
        Some(Clipping::of(frame)).filter(Clipping::is_over)
    }

    /// Whether any channel is clipped beyond [`LIMIT`].
    pub fn is_over(&self) -> bool {
        self.share.iter().any(|&s| s > LIMIT)
    }

    /// The largest share, over the channels.
    pub fn worst(&self) -> f32 {
        self.share.iter().copied().fold(0.0, f32::max)
    }

    /// The same, rounded to whole per cent for reports.
    pub fn rounded(&self) -> Clipping {
        Clipping {
            share: self.share.map(|s| (s * 100.0).round() / 100.0),
        }
    }
}

/// `over-exposed: 62 % of red, 45 % of green pixels at the camera's white level`, naming only the channels
/// beyond the limit.
impl fmt::Display for Clipping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: Vec<String> = ["red", "green", "blue"]
            .iter()
            .zip(self.share)
            .filter(|&(_, s)| s > LIMIT)
            .map(|(c, s)| format!("{:.0} % of {c}", 100.0 * s))
            .collect();
        if named.is_empty() {
            return write!(
                f,
                "not over-exposed (at most {:.0} % clipped)",
                100.0 * self.worst()
            );
        }
        write!(
            f,
            "over-exposed: {} pixels at the camera's white level; pale cells lose their detail, so lower \
             the exposure or the lamp",
            named.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_with(white: usize, total: usize, white_px: [u8; 3]) -> Frame {
        let mut data = Vec::with_capacity(total * 3);
        for i in 0..total {
            data.extend_from_slice(if i < white {
                &white_px
            } else {
                &[200, 180, 190]
            });
        }
        Frame::new(total as u32, 1, data).unwrap()
    }

    #[test]
    fn measures_each_channel_share_at_the_white_level() {
        let f = frame_with(30, 100, [255, 254, 253]);
        let c = Clipping::of(&f);
        assert_eq!(c.share, [0.3, 0.3, 0.0]);
        assert!(c.is_over());
        let text = c.to_string();
        assert!(text.contains("30 % of red, 30 % of green"), "{text}");
        assert!(!text.contains("blue"), "{text}");
    }

    #[test]
    fn a_few_specks_are_not_over_exposure() {
        let f = frame_with(5, 100, [255, 255, 255]);
        assert_eq!(Clipping::over_exposed(&f), None);
        let f = frame_with(6, 100, [255, 255, 255]);
        assert!(Clipping::over_exposed(&f).is_some());
    }

    #[test]
    fn the_bundled_smear_is_not_clipped_and_a_brighter_copy_is() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../samples/smears/BloodImage_00001.jpg");
        let f = Frame::open(&p).unwrap();
        let c = Clipping::of(&f);
        assert!(!c.is_over(), "{c:?}");
        // The same field with 1.5× the light: the plasma reaches the white level.
        let bright: Vec<u8> = f
            .data()
            .iter()
            .map(|&v| (u32::from(v) * 3 / 2).min(255) as u8)
            .collect();
        let b = Frame::new(f.width(), f.height(), bright).unwrap();
        let c = Clipping::over_exposed(&b).expect("clipped");
        assert!(c.worst() > 0.3, "{c:?}");
    }
}
