//! Autofocus: an integer sharpness metric and a coarse-to-fine search over the focus axis.
//!
//! **Metric** ([`sharpness`]): Tenengrad, the sum of squared Sobel gradient magnitudes of the grey frame,
//! after an integer block-average downscale (cheap on a Pi, and averaging tames sensor noise). Pure integer
//! arithmetic, so the device and the tests agree to the last bit.
//!
//! **Search** ([`autofocus`]): a coarse sweep over the axis's whole soft range (`coarse_samples` evenly
//! spaced positions) brackets the peak between the best sample's neighbours; a golden-section search on
//! integer positions narrows the bracket to a few steps, which are then all measured. Every position is
//! measured at most once (a cache), and the total is capped by `max_frames`. With the defaults on a
//! 400-step axis that is 9 + about 11 frames. The last move approaches the result from below when
//! `backlash` is set, as a real lead screw needs.
//!
//! This module moves the focus and reads the camera; it knows nothing about cells.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::board::Focus;
use crate::capture::Camera;
use crate::frame::Frame;
use crate::hw::{Error, ErrorKind};

/// Tenengrad sharpness of a frame after an integer downscale (grey = (R + 2G + B) / 4).
pub fn sharpness(frame: &Frame, downscale: u32) -> u64 {
    let f = frame.downscale(downscale.max(1));
    let (w, h) = (f.width() as usize, f.height() as usize);
    if w < 3 || h < 3 {
        return 0;
    }
    let grey: Vec<i32> = f
        .data()
        .chunks_exact(3)
        .map(|p| (i32::from(p[0]) + 2 * i32::from(p[1]) + i32::from(p[2])) / 4)
        .collect();
    let mut sum = 0u64;
    for y in 1..h - 1 {
        let (up, mid, dn) = ((y - 1) * w, y * w, (y + 1) * w);
        for x in 1..w - 1 {
            let gx = (grey[up + x + 1] + 2 * grey[mid + x + 1] + grey[dn + x + 1])
                - (grey[up + x - 1] + 2 * grey[mid + x - 1] + grey[dn + x - 1]);
            let gy = (grey[dn + x - 1] + 2 * grey[dn + x] + grey[dn + x + 1])
                - (grey[up + x - 1] + 2 * grey[up + x] + grey[up + x + 1]);
            sum += (gx * gx + gy * gy) as u64;
        }
    }
    sum
}

/// Search parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AutofocusConfig {
    /// Positions of the coarse sweep (at least 3), spread evenly over the soft limits.
    pub coarse_samples: u32,
    /// Downscale factor before the metric.
    pub downscale: u32,
    /// Hard cap on frames measured.
    pub max_frames: u32,
    /// Frames to throw away after each move (a real camera's frame in flight shows the old position).
    pub discard_after_move: u32,
    /// Approach the final position from this many steps below (0 = not needed, as in the simulator).
    pub backlash: i32,
    /// Retries of a timed-out or dropped frame before giving up.
    pub frame_retries: u32,
}

impl Default for AutofocusConfig {
    fn default() -> Self {
        AutofocusConfig {
            coarse_samples: 9,
            downscale: 2,
            max_frames: 25,
            discard_after_move: 0,
            backlash: 0,
            frame_retries: 3,
        }
    }
}

/// What a search found and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct FocusReport {
    /// The sharpest position found; the axis is left there.
    pub position: i32,
    /// Its sharpness.
    pub score: u64,
    /// Frames measured (discarded frames not included).
    pub frames: u32,
    /// Wall time of the whole search.
    pub elapsed: Duration,
    /// Peak over the weakest sample: near 1 means a blank field or no light.
    pub contrast: f32,
    /// Every measured `(position, score)`, in position order.
    pub samples: Vec<(i32, u64)>,
}

/// Why autofocus failed.
#[derive(Debug, thiserror::Error)]
pub enum AutofocusError {
    /// The camera failed (after retries for timeouts and dropped frames).
    #[error("autofocus: camera: {message}")]
    Camera {
        /// The camera error's kind.
        kind: ErrorKind,
        /// The camera error and its causes ([`crate::hw::chain`]).
        message: String,
    },
    /// The focus axis failed (stalled, not homed, limit).
    #[error("autofocus: focus axis: {message}")]
    Focus {
        /// The axis error's kind.
        kind: ErrorKind,
        /// The axis error and its causes ([`crate::hw::chain`]).
        message: String,
    },
}

impl Error for AutofocusError {
    fn kind(&self) -> ErrorKind {
        match self {
            AutofocusError::Camera { kind, .. } | AutofocusError::Focus { kind, .. } => *kind,
        }
    }
}

struct Search<'a, C, F> {
    camera: &'a mut C,
    focus: &'a mut F,
    cfg: AutofocusConfig,
    cache: BTreeMap<i32, u64>,
}

impl<C: Camera, F: Focus> Search<'_, C, F> {
    fn goto(&mut self, p: i32) -> Result<(), AutofocusError> {
        self.focus.move_to(p).map_err(|e| AutofocusError::Focus {
            kind: e.kind(),
            message: crate::hw::chain(&e),
        })
    }

    fn grab(&mut self) -> Result<Frame, AutofocusError> {
        let mut tries = 0;
        loop {
            match self.camera.capture() {
                Ok(f) => return Ok(f),
                Err(e)
                    if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Dropped)
                        && tries < self.cfg.frame_retries =>
                {
                    tries += 1;
                }
                Err(e) => {
                    return Err(AutofocusError::Camera {
                        kind: e.kind(),
                        message: crate::hw::chain(&e),
                    })
                }
            }
        }
    }

    /// Sharpness at `p`, measured once.
    fn score(&mut self, p: i32) -> Result<u64, AutofocusError> {
        if let Some(&s) = self.cache.get(&p) {
            return Ok(s);
        }
        self.goto(p)?;
        let flushed = self.camera.flush();
        flushed.map_err(|e| AutofocusError::Camera {
            kind: e.kind(),
            message: crate::hw::chain(&e),
        })?;
        for _ in 0..self.cfg.discard_after_move {
            self.grab()?;
        }
        let frame = self.grab()?;
        let s = sharpness(&frame, self.cfg.downscale);
        self.cache.insert(p, s);
        Ok(s)
    }

    fn budget_left(&self) -> bool {
        (self.cache.len() as u32) < self.cfg.max_frames
    }
}

/// Finds the sharpest focus position within the axis's soft limits and leaves the axis there.
/// The axis must be homed.
pub fn autofocus<C: Camera, F: Focus>(
    camera: &mut C,
    focus: &mut F,
    cfg: &AutofocusConfig,
) -> Result<FocusReport, AutofocusError> {
    let start = Instant::now();
    let (lo, hi) = focus.limits();
    let mut s = Search {
        camera,
        focus,
        cfg: *cfg,
        cache: BTreeMap::new(),
    };
    let n = cfg.coarse_samples.max(3).min(cfg.max_frames.max(3)) as i64;
    let span = i64::from(hi) - i64::from(lo);
    // Coarse sweep, in one direction (no back-and-forth over the backlash).
    let coarse: Vec<i32> = (0..n)
        .map(|i| (i64::from(lo) + span * i / (n - 1)) as i32)
        .collect();
    for &p in &coarse {
        s.score(p)?;
    }
    let best_i = (0..coarse.len())
        .max_by_key(|&i| (s.cache[&coarse[i]], std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut a = coarse[best_i.saturating_sub(1)];
    let mut b = coarse[(best_i + 1).min(coarse.len() - 1)];
    // Golden section on integers: keep two interior points, drop the side beyond the weaker one.
    const INV_PHI: f64 = 0.618_033_988_75;
    let inner = |a: i32, b: i32| -> (i32, i32) {
        let d = ((f64::from(b - a)) * INV_PHI).round() as i32;
        let (x1, x2) = (b - d, a + d);
        if x1 < x2 {
            (x1, x2)
        } else {
            (x1.min(x2), (x1.min(x2) + 1).min(b))
        }
    };
    while b - a > 3 && s.budget_left() {
        let (x1, x2) = inner(a, b);
        let (f1, f2) = (s.score(x1)?, s.score(x2)?);
        if f1 >= f2 {
            b = x2;
        } else {
            a = x1;
        }
    }
    // Measure what is left of the bracket, then take the best measured position.
    for p in a..=b {
        if !s.budget_left() {
            break;
        }
        s.score(p)?;
    }
    let (&position, &score) = s
        .cache
        .iter()
        .max_by_key(|&(&p, &v)| (v, std::cmp::Reverse(p)))
        .expect("the coarse sweep measured at least 3 positions");
    if cfg.backlash > 0 {
        let below = (position - cfg.backlash).max(lo);
        s.goto(below)?;
    }
    s.goto(position)?;
    let weakest = s.cache.values().copied().min().unwrap_or(0).max(1);
    let frames = s.cache.len() as u32 * (1 + cfg.discard_after_move);
    Ok(FocusReport {
        position,
        score,
        frames,
        elapsed: start.elapsed(),
        contrast: score as f32 / weakest as f32,
        samples: s.cache.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::sim::{microscope, Faults, SimConfig};
    use crate::board::Illumination;

    #[test]
    fn sharpness_prefers_edges_and_ignores_flat_frames() {
        let flat = Frame::filled(16, 16, [100, 100, 100]).unwrap();
        assert_eq!(sharpness(&flat, 1), 0);
        let mut data = vec![0u8; 16 * 16 * 3];
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            if (i % 16) >= 8 {
                px.copy_from_slice(&[200, 200, 200]);
            }
        }
        let edge = Frame::new(16, 16, data).unwrap();
        assert!(sharpness(&edge, 1) > 0);
        assert_eq!(sharpness(&Frame::filled(1, 1, [9, 9, 9]).unwrap(), 4), 0);
    }

    /// The acceptance bar: best focus ±1 step from any start, in at most 25 frames.
    #[test]
    fn reaches_best_focus_within_one_step_in_25_frames() {
        for seed in 0..6u64 {
            let cfg = SimConfig {
                seed,
                downscale: 2,
                ..SimConfig::bundled()
            };
            let (mut m, h) = microscope(cfg).unwrap();
            m.light.set_level(700).unwrap();
            m.focus.home().unwrap();
            for start in [0, 137, 400] {
                m.focus.move_to(start).unwrap();
                let r =
                    autofocus(&mut m.camera, &mut m.focus, &AutofocusConfig::default()).unwrap();
                let best = h.best_focus();
                assert!(
                    (r.position - best).abs() <= 1,
                    "seed {seed} start {start}: found {} best {best} ({r:?})",
                    r.position
                );
                assert!(r.frames <= 25, "seed {seed}: {} frames", r.frames);
                assert_eq!(m.focus.position(), r.position);
            }
        }
    }

    #[test]
    fn stuck_motor_is_reported_as_stalled() {
        let (mut m, h) = microscope(SimConfig {
            downscale: 4,
            ..SimConfig::bundled()
        })
        .unwrap();
        m.light.set_level(700).unwrap();
        m.focus.home().unwrap();
        h.set_faults(Faults {
            focus_stuck: true,
            ..Faults::default()
        });
        let err = autofocus(&mut m.camera, &mut m.focus, &AutofocusConfig::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Stalled);
    }

    #[test]
    fn dropped_frames_are_retried() {
        let (mut m, h) = microscope(SimConfig {
            downscale: 4,
            ..SimConfig::bundled()
        })
        .unwrap();
        m.light.set_level(700).unwrap();
        m.focus.home().unwrap();
        h.set_faults(Faults {
            drop_every: 3,
            ..Faults::default()
        });
        let r = autofocus(&mut m.camera, &mut m.focus, &AutofocusConfig::default()).unwrap();
        assert!((r.position - h.best_focus()).abs() <= 2);
    }
}
