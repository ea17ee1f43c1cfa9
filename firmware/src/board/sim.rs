//! The simulated microscope: a real smear as the slide, a focus axis with a defocus model, a dimmable
//! light, an XY stage, a button that a "user" presses, and fault injection.
//!
//! - **Slide** ([`Slide`]): the 8 sample smears of `samples/smears`, built into the binary so a deployed
//!   `leukoscope run --sim` works anywhere, or the images of a folder (e.g. the BCCD `JPEGImages` for
//!   bigger runs), tiled over a `cols × rows` grid of fields; stage position `(x, y)` (one step = one
//!   field) selects image `(y·cols + x) mod n`, mirrored on later laps so repeated fields differ. A grid
//!   with more fields than the slide has images shows the same cells again: [`SimHandle::wrap`] says so
//!   before a run, [`SimHandle::wrapped`] after it.
//! - **Focus**: steps in `focus_range`; the sharpest position is drawn from the seed and not exposed to the
//!   code under test (only to the test, via [`SimHandle::best_focus`]). A defocus of `d` steps blurs the
//!   field with a box of radius `d / steps_per_px` pixels, blended between integer radii so sharpness falls
//!   continuously, one step at a time. The axis starts at a random position and must be homed first.
//! - **Light**: brightness scales with the level (nominal at 700‰); sensor noise is added on top, so a dim
//!   frame is a noisy one.
//! - **Faults** ([`Faults`]): dropped frames, timeouts, a camera unplugged for N captures, a stuck focus
//!   motor. Change them while a session runs through a [`SimHandle`].
//!
//! Everything is deterministic for a given seed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Button, Focus, Illumination, Microscope, Stage, Status, StatusLed, FULL};
use crate::capture::{Camera, CaptureError};
use crate::frame::Frame;
use crate::hw::{Error, ErrorKind};
use crate::inputs::list_images;

/// The sample smears of `samples/smears` (8 BCCD frames, 640×480), built into the binary.
const BUNDLED: [(&str, &[u8]); 8] = [
    (
        "BloodImage_00001.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00001.jpg"),
    ),
    (
        "BloodImage_00006.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00006.jpg"),
    ),
    (
        "BloodImage_00026.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00026.jpg"),
    ),
    (
        "BloodImage_00055.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00055.jpg"),
    ),
    (
        "BloodImage_00062.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00062.jpg"),
    ),
    (
        "BloodImage_00076.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00076.jpg"),
    ),
    (
        "BloodImage_00104.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00104.jpg"),
    ),
    (
        "BloodImage_00110.jpg",
        include_bytes!("../../../samples/smears/BloodImage_00110.jpg"),
    ),
];

/// Where the simulated slide's images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slide {
    /// The 8 sample smears of `samples/smears`, built into the binary (works without a source tree).
    Bundled,
    /// An image file, or a folder of them (sorted, recursively).
    Path(PathBuf),
}

impl From<PathBuf> for Slide {
    fn from(p: PathBuf) -> Self {
        Slide::Path(p)
    }
}

impl std::fmt::Display for Slide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slide::Bundled => write!(f, "bundled samples/smears ({} frames)", BUNDLED.len()),
            Slide::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Slide {
    /// Decodes the slide's images, in order.
    fn load(&self) -> Result<Vec<Frame>, CaptureError> {
        let slide = |source| CaptureError::Slide { source };
        match self {
            Slide::Bundled => BUNDLED
                .iter()
                .map(|(_, jpeg)| Frame::decode(jpeg).map_err(slide))
                .collect(),
            Slide::Path(p) => list_images(p)
                .map_err(CaptureError::Inputs)?
                .iter()
                .map(|f| Frame::open(f).map_err(slide))
                .collect(),
        }
    }
}

/// The slide grid has more fields than the slide has images: later fields show the same cells again
/// (mirrored), so a count over them counts those cells more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrap {
    /// Images on the slide.
    pub frames: u32,
    /// Fields of the grid (for [`SimHandle::wrap`]) or fields served (for [`SimHandle::wrapped`]).
    pub fields: u32,
}

impl Wrap {
    fn of(frames: u32, fields: u32) -> Option<Wrap> {
        (fields > frames).then_some(Wrap { frames, fields })
    }

    /// How many times each image is shown, on average.
    pub fn times(&self) -> f64 {
        f64::from(self.fields) / f64::from(self.frames.max(1))
    }
}

impl std::fmt::Display for Wrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the simulated slide has {} frames for {} fields: each frame is shown {:.1} times on \
             average (mirrored), so the same cells are counted again",
            self.frames,
            self.fields,
            self.times()
        )
    }
}

/// How the simulator is built.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The slide's images.
    pub slide: Slide,
    /// Fields `(cols, rows)`; default: the smallest square grid holding every image once.
    pub grid: Option<(u32, u32)>,
    /// Seeds best focus, start position and noise.
    pub seed: u64,
    /// Focus soft limits, steps.
    pub focus_range: (i32, i32),
    /// Defocus steps per pixel of blur radius.
    pub steps_per_px: f32,
    /// Integer downscale of the slide images (2 halves each side: faster tests).
    pub downscale: u32,
    /// Sensor noise amplitude at nominal light (± grey levels).
    pub noise: u8,
    /// Time one capture takes (a real camera's frame interval); zero = as fast as possible.
    pub frame_time: Duration,
}

impl SimConfig {
    /// Defaults for a slide.
    pub fn new(slide: impl Into<Slide>) -> Self {
        SimConfig {
            slide: slide.into(),
            grid: None,
            seed: 1,
            focus_range: (0, 400),
            steps_per_px: 2.0,
            downscale: 1,
            noise: 2,
            frame_time: Duration::ZERO,
        }
    }

    /// The bundled sample smears (8 BCCD frames, built into the binary).
    pub fn bundled() -> Self {
        SimConfig::new(Slide::Bundled)
    }
}

/// Faults to inject; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every n-th capture is a dropped (corrupt) frame; 0 = never.
    pub drop_every: u32,
    /// Every n-th capture times out; 0 = never.
    pub timeout_every: u32,
    /// The next n captures find the camera unplugged; then it comes back.
    pub unplugged_for: u32,
    /// Unplug the camera (for `unplug_len` captures) after this many more frames, counted from when the
    /// faults are set.
    pub unplug_at_frame: Option<u64>,
    /// How long the scheduled unplug lasts, in captures (`u32::MAX`: for good).
    pub unplug_len: u32,
    /// The focus motor does not move.
    pub focus_stuck: bool,
}

/// A simulated peripheral's error.
#[derive(Debug, thiserror::Error)]
#[error("simulated {what}: {message}")]
pub struct SimError {
    /// Which peripheral.
    pub what: &'static str,
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl Error for SimError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

fn sim_err(what: &'static str, kind: ErrorKind, message: impl Into<String>) -> SimError {
    SimError {
        what,
        kind,
        message: message.into(),
    }
}

#[derive(Debug)]
struct State {
    cfg: SimConfig,
    fields: Vec<Frame>,
    grid: (u32, u32),
    best_focus: i32,
    focus: i32,
    homed: bool,
    light: u16,
    stage: (i32, i32),
    faults: Faults,
    captures: u64,
    served: u64,
    /// Fields that produced a frame.
    fields_served: BTreeSet<u32>,
    rng: u64,
    presses: u64,
    status: Option<Status>,
}

/// SplitMix64: small, seedable, good enough for noise.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The shared simulator; the parts and the handle all point at it.
type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock (a failed test) leaves the state usable.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds a simulated microscope and a handle to inspect and disturb it.
pub fn microscope(cfg: SimConfig) -> Result<(SimMicroscope, SimHandle), CaptureError> {
    let fields: Vec<Frame> = cfg
        .slide
        .load()?
        .iter()
        .map(|f| f.downscale(cfg.downscale.max(1)))
        .collect();
    let n = fields.len() as u32;
    let grid = cfg.grid.unwrap_or_else(|| {
        let cols = (f64::from(n).sqrt().ceil() as u32).max(1);
        (cols, n.div_ceil(cols))
    });
    let grid = (grid.0.max(1), grid.1.max(1));
    let mut rng = cfg.seed ^ 0x5EED_1E0C_05C0_u64;
    let (lo, hi) = cfg.focus_range;
    let span = (i64::from(hi) - i64::from(lo)).max(1) as u64;
    // Best focus away from the ends (a real slide's plane is not at the end stop), start anywhere.
    let margin = span / 10;
    let best = i64::from(lo) + (margin + splitmix(&mut rng) % (span - 2 * margin).max(1)) as i64;
    let start = i64::from(lo) + (splitmix(&mut rng) % (span + 1)) as i64;
    let state = Arc::new(Mutex::new(State {
        cfg,
        fields,
        grid,
        best_focus: best as i32,
        focus: start as i32,
        homed: false,
        light: 0,
        stage: (0, 0),
        faults: Faults::default(),
        captures: 0,
        served: 0,
        fields_served: BTreeSet::new(),
        rng,
        presses: 0,
        status: None,
    }));
    let scope = Microscope {
        camera: SimCamera(state.clone()),
        light: SimLight(state.clone()),
        focus: SimFocus(state.clone()),
        stage: Some(SimStage(state.clone())),
        button: Some(SimButton(state.clone())),
        status: Some(SimStatus(state.clone())),
    };
    Ok((scope, SimHandle(state)))
}

/// The simulated microscope's type.
pub type SimMicroscope = Microscope<SimCamera, SimLight, SimFocus, SimStage, SimButton, SimStatus>;

/// The test's view of the simulator: ground truth and fault injection.
#[derive(Clone, Debug)]
pub struct SimHandle(Shared);

impl SimHandle {
    /// The sharpest focus position (hidden from the code under test).
    pub fn best_focus(&self) -> i32 {
        lock(&self.0).best_focus
    }
    /// Whether the grid has more fields than the slide has images (then a count that visits them all
    /// counts cells again): say so before a run.
    pub fn wrap(&self) -> Option<Wrap> {
        let s = lock(&self.0);
        Wrap::of(s.fields.len() as u32, s.grid.0 * s.grid.1)
    }
    /// Whether the fields served so far went past the slide's images (some cells were shown again): say
    /// so after a run.
    pub fn wrapped(&self) -> Option<Wrap> {
        let s = lock(&self.0);
        Wrap::of(s.fields.len() as u32, s.fields_served.len() as u32)
    }
    /// Current illumination level.
    pub fn light(&self) -> u16 {
        lock(&self.0).light
    }
    /// Button presses consumed.
    pub fn presses(&self) -> u64 {
        lock(&self.0).presses
    }
    /// Last status shown.
    pub fn status(&self) -> Option<Status> {
        lock(&self.0).status
    }
    /// Replaces the injected faults.
    pub fn set_faults(&self, mut faults: Faults) {
        let mut s = lock(&self.0);
        faults.unplug_at_frame = faults.unplug_at_frame.map(|n| s.served + n);
        s.faults = faults;
    }
    /// The frame the camera would show at a given focus position on the current field, noise-free.
    pub fn render_at(&self, focus: i32) -> Frame {
        let s = lock(&self.0);
        let base = field_frame(&s);
        let radius = (focus - s.best_focus).unsigned_abs() as f32 / s.cfg.steps_per_px;
        defocus(&base, radius)
    }
}

/// The field under the objective: `y·cols + x`.
fn field_index(s: &State) -> u32 {
    let (x, y) = (s.stage.0.max(0) as u32, s.stage.1.max(0) as u32);
    y * s.grid.0 + x
}

fn field_frame(s: &State) -> Frame {
    let idx = field_index(s) as usize;
    let n = s.fields.len();
    let base = &s.fields[idx % n];
    match (idx / n) % 4 {
        0 => base.clone(),
        lap => mirror(base, lap & 1 == 1, lap & 2 == 2),
    }
}

fn mirror(f: &Frame, horizontal: bool, vertical: bool) -> Frame {
    let (w, h) = (f.width(), f.height());
    let mut out = Vec::with_capacity(f.data().len());
    for y in 0..h {
        let sy = if vertical { h - 1 - y } else { y };
        for x in 0..w {
            let sx = if horizontal { w - 1 - x } else { x };
            out.extend_from_slice(&f.pixel(sx, sy));
        }
    }
    Frame::new(w, h, out).unwrap_or_else(|_| f.clone())
}

/// Separable box blur of integer radius `r` with clamped edges (running sums: cost independent of `r`).
fn box_blur(f: &Frame, r: u32) -> Vec<u8> {
    let (w, h) = (f.width() as usize, f.height() as usize);
    if r == 0 {
        return f.data().to_vec();
    }
    let r = r as i64;
    let n = (2 * r + 1) as u32;
    let pass = |src: &[u8], len: usize, lines: usize, at: &dyn Fn(usize, usize) -> usize| {
        let mut dst = vec![0u8; src.len()];
        for line in 0..lines {
            for c in 0..3 {
                let get =
                    |i: i64| u32::from(src[at(line, i.clamp(0, len as i64 - 1) as usize) + c]);
                let mut acc: u32 = (-r..=r).map(get).sum();
                for i in 0..len as i64 {
                    dst[at(line, i as usize) + c] = ((acc + n / 2) / n) as u8;
                    acc = acc + get(i + r + 1) - get(i - r);
                }
            }
        }
        dst
    };
    let rows = pass(f.data(), w, h, &|y, x| (y * w + x) * 3);
    pass(&rows, h, w, &|x, y| (y * w + x) * 3)
}

/// Blurs by a fractional radius: a blend of the two neighbouring integer box radii.
fn defocus(f: &Frame, radius: f32) -> Frame {
    let r0 = radius.floor().max(0.0);
    let t = ((radius - r0) * 256.0) as u32;
    let a = box_blur(f, r0 as u32);
    let data = if t == 0 {
        a
    } else {
        let b = box_blur(f, r0 as u32 + 1);
        a.iter()
            .zip(&b)
            .map(|(&x, &y)| ((u32::from(x) * (256 - t) + u32::from(y) * t + 128) >> 8) as u8)
            .collect()
    };
    Frame::new(f.width(), f.height(), data).unwrap_or_else(|_| f.clone())
}

/// The simulated camera.
#[derive(Debug)]
pub struct SimCamera(Shared);

impl Camera for SimCamera {
    type Error = CaptureError;

    fn capture(&mut self) -> Result<Frame, CaptureError> {
        let frame_time = lock(&self.0).cfg.frame_time;
        if !frame_time.is_zero() {
            std::thread::sleep(frame_time);
        }
        let mut s = lock(&self.0);
        s.captures += 1;
        let n = s.captures;
        if let Some(at) = s.faults.unplug_at_frame {
            if s.served >= at {
                s.faults.unplug_at_frame = None;
                s.faults.unplugged_for = s.faults.unplug_len;
            }
        }
        if s.faults.unplugged_for > 0 {
            if s.faults.unplugged_for != u32::MAX {
                s.faults.unplugged_for -= 1;
            }
            return Err(CaptureError::Disconnected {
                backend: "sim",
                reason: "camera unplugged (injected)".into(),
                source: None,
            });
        }
        if s.faults.timeout_every > 0 && n % u64::from(s.faults.timeout_every) == 0 {
            return Err(CaptureError::Timeout {
                backend: "sim",
                ms: 0,
            });
        }
        if s.faults.drop_every > 0 && n % u64::from(s.faults.drop_every) == 0 {
            return Err(CaptureError::Dropped {
                backend: "sim",
                frame: n,
                reason: "corrupt frame (injected)".into(),
            });
        }
        let base = field_frame(&s);
        let radius = (s.focus - s.best_focus).unsigned_abs() as f32 / s.cfg.steps_per_px;
        let blurred = defocus(&base, radius);
        // Exposure: linear in light, nominal at 700‰; additive sensor noise, seeded per frame.
        let gain = u32::from(s.light.min(FULL)) * 256 / 700;
        let amp = i32::from(s.cfg.noise);
        let mut rng = s.rng ^ n.wrapping_mul(0xA24B_AED4_963E_E407);
        let data: Vec<u8> = blurred
            .data()
            .iter()
            .map(|&v| {
                let lit = (u32::from(v) * gain) >> 8;
                let noise = if amp == 0 {
                    0
                } else {
                    (splitmix(&mut rng) % (2 * amp as u64 + 1)) as i32 - amp
                };
                (lit as i32 + noise).clamp(0, 255) as u8
            })
            .collect();
        s.served += 1;
        let field = field_index(&s);
        s.fields_served.insert(field);
        Frame::new(blurred.width(), blurred.height(), data).map_err(|source| {
            CaptureError::Undecodable {
                backend: "sim",
                frame: n,
                source,
            }
        })
    }

    fn flush(&mut self) -> Result<(), CaptureError> {
        Ok(()) // the simulator renders the scene as it is at each capture
    }
}

/// The simulated light.
#[derive(Debug)]
pub struct SimLight(Shared);

impl Illumination for SimLight {
    type Error = SimError;
    fn set_level(&mut self, permille: u16) -> Result<(), SimError> {
        if permille > FULL {
            return Err(sim_err(
                "light",
                ErrorKind::Limit,
                format!("level {permille}‰ > 1000‰"),
            ));
        }
        lock(&self.0).light = permille;
        Ok(())
    }
}

/// The simulated focus axis.
#[derive(Debug)]
pub struct SimFocus(Shared);

impl Focus for SimFocus {
    type Error = SimError;

    fn move_to(&mut self, position: i32) -> Result<(), SimError> {
        let mut s = lock(&self.0);
        if !s.homed {
            return Err(sim_err(
                "focus",
                ErrorKind::NotHomed,
                "not homed; home the axis first",
            ));
        }
        let (lo, hi) = s.cfg.focus_range;
        if position < lo || position > hi {
            return Err(sim_err(
                "focus",
                ErrorKind::Limit,
                format!("target {position} outside soft limits {lo}..={hi}"),
            ));
        }
        if s.faults.focus_stuck && position != s.focus {
            return Err(sim_err(
                "focus",
                ErrorKind::Stalled,
                "motor stalled (injected)",
            ));
        }
        s.focus = position;
        Ok(())
    }

    fn position(&self) -> i32 {
        lock(&self.0).focus
    }

    fn limits(&self) -> (i32, i32) {
        lock(&self.0).cfg.focus_range
    }

    fn home(&mut self) -> Result<(), SimError> {
        let mut s = lock(&self.0);
        if s.faults.focus_stuck {
            return Err(sim_err(
                "focus",
                ErrorKind::Stalled,
                "end stop not reached (motor stalled, injected)",
            ));
        }
        s.focus = s.cfg.focus_range.0;
        s.homed = true;
        Ok(())
    }
}

/// The simulated XY stage (one step = one field).
#[derive(Debug)]
pub struct SimStage(Shared);

impl Stage for SimStage {
    type Error = SimError;
    fn move_to(&mut self, (x, y): (i32, i32)) -> Result<(), SimError> {
        let mut s = lock(&self.0);
        let (cols, rows) = s.grid;
        if x < 0 || y < 0 || x >= cols as i32 || y >= rows as i32 {
            return Err(sim_err(
                "stage",
                ErrorKind::Limit,
                format!("({x}, {y}) outside the {cols}x{rows} slide"),
            ));
        }
        s.stage = (x, y);
        Ok(())
    }
    fn position(&self) -> (i32, i32) {
        lock(&self.0).stage
    }
}

/// A button that a patient simulated user presses whenever asked.
#[derive(Debug)]
pub struct SimButton(Shared);

impl Button for SimButton {
    type Error = SimError;
    fn is_pressed(&mut self) -> Result<bool, SimError> {
        Ok(false)
    }
    fn wait_press(&mut self, _timeout: Duration) -> Result<bool, SimError> {
        lock(&self.0).presses += 1;
        Ok(true)
    }
}

/// A status LED that remembers what it shows.
#[derive(Debug)]
pub struct SimStatus(Shared);

impl StatusLed for SimStatus {
    type Error = SimError;
    fn show(&mut self, status: Status) -> Result<(), SimError> {
        lock(&self.0).status = Some(status);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            downscale: 4,
            ..SimConfig::bundled()
        }
    }

    #[test]
    fn focus_must_be_homed_and_respects_limits() {
        let (mut m, _h) = microscope(small()).unwrap();
        assert_eq!(m.focus.move_to(10).unwrap_err().kind(), ErrorKind::NotHomed);
        m.focus.home().unwrap();
        assert_eq!(m.focus.position(), 0);
        assert_eq!(m.focus.move_to(401).unwrap_err().kind(), ErrorKind::Limit);
        m.focus.move_to(400).unwrap();
    }

    #[test]
    fn best_focus_is_sharpest_and_light_scales_brightness() {
        let (mut m, h) = microscope(small()).unwrap();
        m.focus.home().unwrap();
        let sharp = h.render_at(h.best_focus());
        let soft = h.render_at(h.best_focus() + 30);
        let energy = |f: &Frame| -> u64 {
            f.data()
                .chunks_exact(3)
                .zip(f.data()[3..].chunks_exact(3))
                .map(|(a, b)| u64::from(a[1].abs_diff(b[1])))
                .sum()
        };
        assert!(energy(&sharp) > 2 * energy(&soft));
        let mean =
            |f: &Frame| f.data().iter().map(|&v| u64::from(v)).sum::<u64>() / f.data().len() as u64;
        m.light.set_level(700).unwrap();
        let bright = m.camera.capture().unwrap();
        m.light.set_level(200).unwrap();
        let dim = m.camera.capture().unwrap();
        assert!(mean(&bright) > 3 * mean(&dim));
    }

    #[test]
    fn injected_faults_have_their_kinds_and_the_camera_comes_back() {
        let (mut m, h) = microscope(small()).unwrap();
        m.light.set_level(700).unwrap();
        h.set_faults(Faults {
            unplugged_for: 2,
            ..Faults::default()
        });
        assert_eq!(
            m.camera.capture().unwrap_err().kind(),
            ErrorKind::Disconnected
        );
        assert_eq!(
            m.camera.capture().unwrap_err().kind(),
            ErrorKind::Disconnected
        );
        assert!(m.camera.capture().is_ok());
        h.set_faults(Faults {
            drop_every: 2,
            ..Faults::default()
        });
        let kinds: Vec<bool> = (0..4).map(|_| m.camera.capture().is_ok()).collect();
        assert_eq!(kinds.iter().filter(|ok| !**ok).count(), 2);
        h.set_faults(Faults {
            focus_stuck: true,
            ..Faults::default()
        });
        assert_eq!(m.focus.home().unwrap_err().kind(), ErrorKind::Stalled);
    }

    #[test]
    fn stage_selects_fields_and_wraps_with_mirrors() {
        let cfg = SimConfig {
            grid: Some((4, 4)),
            noise: 0,
            ..small()
        };
        let (mut m, _h) = microscope(cfg).unwrap();
        m.light.set_level(700).unwrap();
        m.focus.home().unwrap();
        let stage = m.stage.as_mut().unwrap();
        stage.move_to((0, 0)).unwrap();
        let a = m.camera.capture().unwrap();
        m.stage.as_mut().unwrap().move_to((0, 2)).unwrap(); // field 8 = image 0, mirrored
        let b = m.camera.capture().unwrap();
        assert_ne!(a, b);
        assert_eq!(a, mirror(&b, true, false));
        assert_eq!(
            m.stage
                .as_mut()
                .unwrap()
                .move_to((4, 0))
                .unwrap_err()
                .kind(),
            ErrorKind::Limit
        );
    }

    /// `run --sim` pointed at the build machine's source tree (`CARGO_MANIFEST_DIR`): the bundled slide
    /// must be the sample folder's images, built in.
    #[test]
    fn bundled_slide_is_the_sample_folder_built_in() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/smears"));
        let files = list_images(&dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name()?.to_str().map(str::to_owned))
            .collect();
        let bundled: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, bundled);
        assert_eq!(
            Slide::Bundled.load().unwrap(),
            Slide::Path(dir).load().unwrap()
        );
        assert_eq!(
            Slide::Bundled.to_string(),
            "bundled samples/smears (8 frames)"
        );
    }

    #[test]
    fn a_grid_bigger_than_the_slide_says_it_wraps() {
        let (mut m, h) = microscope(SimConfig {
            grid: Some((10, 10)),
            ..small()
        })
        .unwrap();
        let w = h.wrap().expect("100 fields over 8 frames wrap");
        assert_eq!((w.frames, w.fields, w.times()), (8, 100, 12.5));
        let msg = w.to_string();
        assert!(
            msg.contains("8 frames for 100 fields") && msg.contains("12.5 times"),
            "{msg}"
        );
        m.light.set_level(700).unwrap();
        for x in 0..8 {
            m.stage.as_mut().unwrap().move_to((x, 0)).unwrap();
            m.camera.capture().unwrap();
        }
        assert_eq!(h.wrapped(), None, "8 fields of 8 frames: each shown once");
        m.stage.as_mut().unwrap().move_to((8, 0)).unwrap();
        m.camera.capture().unwrap();
        assert_eq!(h.wrapped().map(|w| w.fields), Some(9));
        let (_, fits) = microscope(SimConfig {
            grid: Some((2, 4)),
            ..small()
        })
        .unwrap();
        assert_eq!(fits.wrap(), None, "8 fields hold every frame once");
    }

    #[test]
    fn missing_slide_folder_is_named() {
        let err = microscope(SimConfig::new(PathBuf::from("/nonexistent/slide"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/slide"), "{err}");
    }

    #[test]
    fn same_seed_same_world() {
        let (_, a) = microscope(small()).unwrap();
        let (_, b) = microscope(small()).unwrap();
        assert_eq!(a.best_focus(), b.best_focus());
        let (_, c) = microscope(SimConfig { seed: 2, ..small() }).unwrap();
        let (_, d) = microscope(SimConfig { seed: 3, ..small() }).unwrap();
        assert!(a.best_focus() != c.best_focus() || a.best_focus() != d.best_focus());
    }
}
