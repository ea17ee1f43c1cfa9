//! The count session: light on → home → autofocus → capture → analyse → journal → next field, until the
//! target count; the only module that drives hardware and the journal together.
//!
//! Guarantees:
//! - **Nothing lost, nothing twice**: a frame's cells are committed to the [`Journal`] (fsync'd) before any
//!   of them is shown ([`Event::Cell`]); a resumed session skips every field the journal has committed and
//!   never reuses a frame id (see [`crate::journal`] for the crash windows).
//! - **Exact target**: the last frame contributes only the cells still needed, so a 100-cell differential
//!   has exactly 100 cells.
//! - **A camera that drops** is retried: timeouts and dropped frames at once, a disconnected camera with
//!   exponential back-off; when the attempts run out the session *pauses* — writes a `paused` record, turns
//!   the light off, shows [`Status::Attention`] and returns [`Outcome::Paused`] with a message saying what
//!   to do. The journal keeps every committed cell; `--resume` continues.
//! - **A camera that clips** ([`crate::exposure`]): while a field's frame is over-exposed the lamp is
//!   lowered by a quarter and the field captured again ([`Event::Exposure`]), down to [`MIN_LIGHT`]; a
//!   frame still clipped there is counted, and the journal and the report say so.
//!
//! The analysis is behind the small [`Analyzer`] trait, implemented for the real
//! [`crate::pipeline::Pipeline`] (and, for tests, by `leukoscope::testing::BlobAnalyzer`, a model-free
//! double).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::autofocus::{autofocus, AutofocusConfig, AutofocusError, FocusReport};
use crate::board::{Button, Focus, Illumination, Microscope, Stage, Status, StatusLed};
use crate::capture::Camera;
use crate::cell::Cell;
use crate::count::StopRule;
use crate::exposure::Clipping;
use crate::frame::Frame;
use crate::hw::{Error, ErrorKind};
use crate::journal::{Journal, JournalError};
pub use crate::pipeline::Analysis;

/// Finds and types the white cells of a frame.
pub trait Analyzer {
    /// Why a frame could not be analysed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// What types the cells (analyzer, model, threshold, classes): recorded in the journal's header.
    fn analysis(&self) -> Analysis;

    /// The cells of one frame, in a stable order, each typed and with its crop.
    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, Self::Error>;
}

impl<A: Analyzer + ?Sized> Analyzer for &mut A {
    type Error = A::Error;
    fn analysis(&self) -> Analysis {
        A::analysis(self)
    }
    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, Self::Error> {
        A::analyze(self, frame)
    }
}

impl<A: Analyzer + ?Sized> Analyzer for Box<A> {
    type Error = A::Error;
    fn analysis(&self) -> Analysis {
        A::analysis(self)
    }
    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, Self::Error> {
        A::analyze(self, frame)
    }
}

impl Analyzer for crate::pipeline::Pipeline {
    type Error = crate::classify::InferenceError;
    fn analysis(&self) -> Analysis {
        crate::pipeline::Pipeline::analysis(self)
    }
    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, Self::Error> {
        Ok(crate::pipeline::Pipeline::analyze(self, frame)?.cells)
    }
}

/// How a dropping camera is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per frame before pausing.
    pub attempts: u32,
    /// First back-off after a disconnect; doubles each time.
    pub first_delay: Duration,
    /// Back-off ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Session settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// Cells to count (a new journal's target; a resumed one keeps its own).
    pub target: u32,
    /// Illumination level while counting, per mille.
    pub light: u16,
    /// Autofocus settings.
    pub autofocus: AutofocusConfig,
    /// Refocus every this many fields (1 = every field; 0 = only the first).
    pub refocus_every: u32,
    /// Fields to visit with a motorised stage `(cols, rows)`, serpentine.
    pub grid: (u32, u32),
    /// Stage steps between fields.
    pub pitch: (i32, i32),
    /// Stage position of the first field.
    pub origin: (i32, i32),
    /// Camera retries.
    pub retry: RetryPolicy,
    /// How long to wait for the user's button press (no motorised stage).
    pub button_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            target: 100,
            light: 700,
            autofocus: AutofocusConfig::default(),
            refocus_every: 1,
            grid: (10, 10),
            pitch: (1, 1),
            origin: (0, 0),
            retry: RetryPolicy::default(),
            button_timeout: Duration::from_secs(600),
        }
    }
}

/// Progress reports, for the console or a display.
#[derive(Debug)]
pub enum Event<'a> {
    /// Axes homed.
    Homed,
    /// At a new field.
    Field {
        /// Field index.
        field: u32,
        /// Stage position, if motorised.
        stage: Option<(i32, i32)>,
    },
    /// Autofocus done.
    Focused(&'a FocusReport),
    /// A camera error is being retried.
    Retry {
        /// Attempt number (1-based).
        attempt: u32,
        /// Back-off before the next attempt.
        delay: Duration,
        /// The error.
        error: String,
    },
    /// The user must do something (move the slide and press the button).
    Prompt(&'a str),
    /// The camera clipped a field's frame, so the lamp was lowered and the field captured again.
    Exposure {
        /// The lamp's level when the frame clipped, per mille.
        from: u16,
        /// The level now.
        to: u16,
        /// How much the frame at `from` clipped.
        clipping: Clipping,
    },
    /// A field's frame was captured and is about to be analysed (for a live view).
    Captured {
        /// Field index.
        field: u32,
        /// The frame.
        frame: &'a Frame,
    },
    /// A cell, already durable in the journal.
    Cell {
        /// Field index.
        field: u32,
        /// The cell.
        cell: &'a Cell,
    },
    /// A frame's cells are committed.
    FrameCommitted {
        /// Field index.
        field: u32,
        /// Cells from this frame.
        cells: u32,
        /// Cells counted so far.
        counted: u32,
        /// How much the camera clipped the frame, when it was over-exposed even at [`MIN_LIGHT`] (the
        /// journal records it and the report warns).
        clipping: Option<Clipping>,
    },
}

impl Event<'_> {
    /// What to tell the technologist about the lamp and the camera's exposure, if this event says anything:
    /// the lamp was lowered ([`Event::Exposure`]), or a frame was counted clipped even at [`MIN_LIGHT`].
    pub fn exposure_notice(&self) -> Option<String> {
        match self {
            Event::Exposure { from, to, clipping } => {
                Some(format!("light {from} ‰: {clipping}; lowered to {to} ‰"))
            }
            Event::FrameCommitted {
                field,
                clipping: Some(c),
                ..
            } => Some(format!("field {field}: {c}, even at the lowest lamp level")),
            _ => None,
        }
    }
}

/// How a session ended (without an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target was reached (with no target: every field was counted).
    Finished {
        /// Cells counted.
        counted: u32,
    },
    /// Every field was visited before the target was reached.
    SlideExhausted {
        /// Cells counted.
        counted: u32,
    },
    /// Stopped waiting for a person, or interrupted (Ctrl-C); `--resume` continues.
    Paused {
        /// What happened and what to do.
        reason: String,
        /// Cells counted.
        counted: u32,
    },
}

/// Why a session stopped with an error (the journal still holds every committed cell).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The analysis failed.
    #[error("analysing field {field}")]
    Analyzer {
        /// Field index.
        field: u32,
        /// The error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The microscope is set up wrongly (no stage and no button).
    #[error("{0}")]
    Config(String),
}

/// A hardware failure while acquiring a field.
struct HwFault {
    kind: ErrorKind,
    message: String,
}

fn hw<E: Error>(what: &str) -> impl FnOnce(E) -> HwFault + '_ {
    move |e| HwFault {
        kind: e.kind(),
        message: format!("{what}: {}", crate::hw::chain(&e)),
    }
}

impl From<AutofocusError> for HwFault {
    fn from(e: AutofocusError) -> Self {
        HwFault {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// The lowest lamp level, per mille, the session goes down to when the camera clips a field
/// ([`crate::exposure`]): below it a dim lamp's noise costs more than clipping.
pub const MIN_LIGHT: u16 = 100;

/// Most fields one session visits (a whole smear at high power is a few thousand): a larger grid is a typo,
/// refused at once rather than allocated.
pub const MAX_FIELDS: u64 = 100_000;

/// Checks a grid: at least 1×1, at most [`MAX_FIELDS`] fields.
pub fn check_grid(grid: (u32, u32)) -> Result<(), String> {
    let fields = u64::from(grid.0) * u64::from(grid.1);
    if fields == 0 {
        Err(format!("grid {}x{}: must be at least 1x1", grid.0, grid.1))
    } else if fields > MAX_FIELDS {
        Err(format!(
            "grid {}x{}: {fields} fields, more than the {MAX_FIELDS} one session may visit",
            grid.0, grid.1
        ))
    } else {
        Ok(())
    }
}

/// The fields of a serpentine scan: `(index, (col, row))`.
pub fn serpentine(grid: (u32, u32)) -> Vec<(u32, (u32, u32))> {
    let mut v = Vec::with_capacity((grid.0 * grid.1) as usize);
    for row in 0..grid.1 {
        for i in 0..grid.0 {
            let col = if row % 2 == 0 { i } else { grid.0 - 1 - i };
            v.push((row * grid.0 + i, (col, row)));
        }
    }
    v
}

/// A field to visit: its index and, with a motorised stage, its position.
type FieldPlan = (u32, Option<(i32, i32)>);

/// Runs (or continues) a count session until the target, the end of the slide, or a pause.
pub fn run<C, L, F, S, B, T, A>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    analyzer: &mut A,
    journal: &mut Journal,
    cfg: &SessionConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Outcome, SessionError>
where
    C: Camera,
    L: Illumination,
    F: Focus,
    S: Stage,
    B: Button,
    T: StatusLed,
    A: Analyzer,
{
    run_until(
        scope,
        analyzer,
        journal,
        cfg,
        &AtomicBool::new(false),
        on_event,
    )
}

/// [`run`], pausing (with a `paused` record, as a fault does) at the next field once `interrupt` is set,
/// e.g. by a Ctrl-C handler.
///
/// The journal's header says what the session is: an analyzer with another model, class list or
/// threshold is refused ([`JournalError::Mismatch`]). Its target (0: no limit) is applied through the
/// [`StopRule`]; unidentified cells count toward it.
pub fn run_until<C, L, F, S, B, T, A>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    analyzer: &mut A,
    journal: &mut Journal,
    cfg: &SessionConfig,
    interrupt: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Outcome, SessionError>
where
    C: Camera,
    L: Illumination,
    F: Focus,
    S: Stage,
    B: Button,
    T: StatusLed,
    A: Analyzer,
{
    check_grid(cfg.grid).map_err(SessionError::Config)?;
    let header = &journal.state().header;
    let wanted = crate::journal::Header {
        analysis: analyzer.analysis(),
        ..header.clone()
    };
    if let Some(reason) = header.mismatch(&wanted) {
        return Err(JournalError::Mismatch {
            path: journal.path().to_owned(),
            reason,
        }
        .into());
    }
    let stop = StopRule {
        target: journal.state().target(),
    };
    if journal.state().finished || stop.reached_at(journal.state().counted()) {
        return Ok(Outcome::Finished {
            counted: journal.state().counted(),
        });
    }
    if scope.stage.is_none() && scope.button.is_none() {
        return Err(SessionError::Config(
            "no motorised stage and no button: nothing to tell the session that the field moved"
                .into(),
        ));
    }
    show(scope, Status::Busy);
    if let Err(f) = prepare(scope, cfg) {
        return pause(scope, journal, &f, "preparing the microscope");
    }
    on_event(&Event::Homed);
    let resumed = journal.state().records > 1;
    let fields: Box<dyn Iterator<Item = FieldPlan>> = if scope.stage.is_some() {
        let (origin, pitch) = (cfg.origin, cfg.pitch);
        Box::new(serpentine(cfg.grid).into_iter().map(move |(i, (c, r))| {
            let pos = (origin.0 + pitch.0 * c as i32, origin.1 + pitch.1 * r as i32);
            (i, Some(pos))
        }))
    } else {
        // By hand: as many fields as it takes, numbered after the last committed one.
        let first = journal
            .state()
            .done_fields
            .iter()
            .next_back()
            .map_or(0, |f| f + 1);
        Box::new((first..u32::MAX).map(|i| (i, None)))
    };
    let mut visited = 0u32;
    let mut light = cfg.light;
    for (field, stage_pos) in fields {
        if journal.state().done_fields.contains(&field) {
            continue;
        }
        let counted = journal.state().counted();
        if stop.reached_at(counted) {
            break;
        }
        if interrupt.load(Ordering::Relaxed) {
            let what = "interrupted (Ctrl-C); continue with --resume".to_string();
            return halt(scope, journal, what);
        }
        // Go to the field.
        match (stage_pos, scope.stage.as_mut()) {
            (Some(pos), Some(stage)) => {
                if let Err(f) = stage.move_to(pos).map_err(hw("stage")) {
                    return pause(scope, journal, &f, "moving the stage");
                }
            }
            _ => {
                if visited > 0 || resumed {
                    let msg = "move the slide to a new field, then press the button";
                    show(scope, Status::Attention);
                    on_event(&Event::Prompt(msg));
                    let Some(button) = scope.button.as_mut() else {
                        break;
                    };
                    match button.wait_press(cfg.button_timeout) {
                        Ok(true) => show(scope, Status::Busy),
                        Ok(false) => {
                            let f = HwFault {
                                kind: ErrorKind::Timeout,
                                message: "nobody pressed the button".into(),
                            };
                            return pause(scope, journal, &f, "waiting for the next field");
                        }
                        Err(e) => {
                            return pause(scope, journal, &hw("button")(e), "reading the button")
                        }
                    }
                }
            }
        }
        on_event(&Event::Field {
            field,
            stage: stage_pos,
        });
        let refocus = visited == 0 || (cfg.refocus_every > 0 && visited % cfg.refocus_every == 0);
        let acquired = match acquire(scope, cfg, refocus, on_event) {
            Ok(f) => settle_exposure(scope, cfg, &mut light, f, on_event),
            Err(f) => Err(f),
        };
        let frame = match acquired {
            Ok(f) => f,
            Err(f) => return pause(scope, journal, &f, &format!("capturing field {field}")),
        };
        let clipping = Clipping::over_exposed(&frame);
        visited += 1;
        on_event(&Event::Captured {
            field,
            frame: &frame,
        });
        let mut cells = analyzer
            .analyze(&frame)
            .map_err(|e| SessionError::Analyzer {
                field,
                source: Box::new(e),
            })?;
        // Exact target: the last frame contributes only the cells still needed.
        if let Some(need) = stop.remaining(counted) {
            cells.truncate(need as usize);
        }
        let id = journal.next_frame();
        let focus = scope.focus.position();
        journal.commit_frame(id, field, stage_pos, focus, &cells, clipping)?;
        // Durable: now they may be shown.
        for cell in &cells {
            on_event(&Event::Cell { field, cell });
        }
        on_event(&Event::FrameCommitted {
            field,
            cells: cells.len() as u32,
            counted: journal.state().counted(),
            clipping,
        });
    }
    let counted = journal.state().counted();
    let _ = scope.light.off();
    if stop.reached_at(counted) || !stop.limited() {
        journal.finish()?;
        show(scope, Status::Idle);
        Ok(Outcome::Finished { counted })
    } else {
        journal.pause("slide exhausted before the target count")?;
        show(scope, Status::Attention);
        Ok(Outcome::SlideExhausted { counted })
    }
}

fn show<C, L, F, S, B, T: StatusLed>(scope: &mut Microscope<C, L, F, S, B, T>, status: Status) {
    if let Some(led) = scope.status.as_mut() {
        let _ = led.show(status); // a dead status LED must not stop a count
    }
}

fn prepare<C: Camera, L: Illumination, F: Focus, S: Stage, B, T>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    cfg: &SessionConfig,
) -> Result<(), HwFault> {
    scope
        .light
        .set_level(cfg.light)
        .map_err(hw("illumination"))?;
    scope.focus.home().map_err(hw("focus homing"))?;
    if let Some(stage) = scope.stage.as_mut() {
        stage.home().map_err(hw("stage homing"))?;
    }
    Ok(())
}

/// While the camera clips the field's frame, lowers the lamp by a quarter (down to [`MIN_LIGHT`]) and
/// captures the field again; returns the last frame. The level found is kept for the next fields.
fn settle_exposure<C: Camera, L: Illumination, F: Focus, S, B, T>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    cfg: &SessionConfig,
    light: &mut u16,
    mut frame: Frame,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Frame, HwFault> {
    while let Some(clipping) = Clipping::over_exposed(&frame) {
        if *light <= MIN_LIGHT {
            break;
        }
        let to = (u32::from(*light) * 3 / 4).max(u32::from(MIN_LIGHT)) as u16;
        scope.light.set_level(to).map_err(hw("illumination"))?;
        on_event(&Event::Exposure {
            from: *light,
            to,
            clipping,
        });
        *light = to;
        frame = acquire(scope, cfg, false, on_event)?;
    }
    Ok(frame)
}

/// Focus (if asked) and capture one frame, retrying a dropping camera.
fn acquire<C: Camera, L, F: Focus, S, B, T>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    cfg: &SessionConfig,
    mut refocus: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Frame, HwFault> {
    let mut delay = cfg.retry.first_delay;
    let mut attempt = 0;
    loop {
        let result = (|| -> Result<Frame, HwFault> {
            if refocus {
                let r = autofocus(&mut scope.camera, &mut scope.focus, &cfg.autofocus)?;
                on_event(&Event::Focused(&r));
                refocus = false;
            }
            scope.camera.flush().map_err(hw("camera"))?;
            scope.camera.capture().map_err(hw("camera"))
        })();
        match result {
            Ok(f) => return Ok(f),
            Err(f) if f.kind.is_transient() && attempt + 1 < cfg.retry.attempts.max(1) => {
                attempt += 1;
                let wait = if f.kind == ErrorKind::Disconnected {
                    delay
                } else {
                    Duration::ZERO
                };
                on_event(&Event::Retry {
                    attempt,
                    delay: wait,
                    error: f.message.clone(),
                });
                std::thread::sleep(wait);
                if f.kind == ErrorKind::Disconnected {
                    delay = (delay * 2).min(cfg.retry.max_delay);
                }
            }
            Err(f) => return Err(f),
        }
    }
}

fn pause<C, L: Illumination, F, S, B, T: StatusLed>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    journal: &mut Journal,
    fault: &HwFault,
    doing: &str,
) -> Result<Outcome, SessionError> {
    let advice = match fault.kind {
        ErrorKind::Disconnected | ErrorKind::Timeout => "check the camera cable and power",
        ErrorKind::Stalled => "check the motor, its driver's power and the end stop",
        ErrorKind::NotHomed | ErrorKind::Limit => "check the board file's limits",
        _ => "check the hardware",
    };
    let what = format!(
        "paused while {doing}: {}; {advice}, then continue with --resume",
        fault.message
    );
    halt(scope, journal, what)
}

/// Light off, attention shown, a `paused` record saying `what` and how many cells are safe.
fn halt<C, L: Illumination, F, S, B, T: StatusLed>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    journal: &mut Journal,
    what: String,
) -> Result<Outcome, SessionError> {
    let _ = scope.light.off();
    show(scope, Status::Attention);
    let counted = journal.state().counted();
    let reason = format!(
        "{what} ({counted} cells are safe in {})",
        journal.path().display()
    );
    journal.pause(&reason)?;
    Ok(Outcome::Paused { reason, counted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::sim::{microscope, Faults, SimConfig};
    use crate::board::FULL;
    use crate::cell::Prediction;
    use crate::journal::{read, Header};
    use crate::rect::Rect;
    use crate::testing::{BlobAnalyzer, NeverFails};

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("leuko-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn sim() -> SimConfig {
        SimConfig {
            downscale: 4,
            grid: Some((5, 5)),
            ..SimConfig::bundled()
        }
    }

    fn cfg(target: u32) -> SessionConfig {
        SessionConfig {
            target,
            grid: (5, 5),
            refocus_every: 0,
            retry: RetryPolicy {
                attempts: 4,
                first_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(4),
            },
            ..SessionConfig::default()
        }
    }

    /// An analyzer that reports a fixed number of unidentified cells per frame.
    struct Fixed(usize);
    impl Analyzer for Fixed {
        type Error = NeverFails;
        fn analysis(&self) -> Analysis {
            Analysis {
                analyzer: "fixed".into(),
                ..BlobAnalyzer::default().analysis()
            }
        }
        fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, NeverFails> {
            Ok((0..self.0)
                .map(|i| Cell {
                    crop: Some(crate::preprocess::crop(frame, 10, 10, 8)),
                    prediction: Some(Prediction::from_logits(&[0.0, 0.1, 0.0, 0.0], 0.5)),
                    ..Cell::new(Rect::new(i as u32, 0, i as u32 + 1, 1))
                })
                .collect())
        }
    }

    fn journal(p: &std::path::Path, target: u32) -> Journal {
        Journal::create(p, Header::new(target, "sim", Fixed(0).analysis())).unwrap()
    }

    #[test]
    fn counts_exactly_the_target_and_journals_every_cell_first() {
        let (mut m, h) = microscope(sim()).unwrap();
        let p = tmp("exact.jsonl");
        let mut j = journal(&p, 10);
        let mut shown = 0;
        let out = run(&mut m, &mut Fixed(3), &mut j, &cfg(10), &mut |e| {
            if let Event::Cell { .. } = e {
                shown += 1;
                // Shown only once durable: the file already has it.
                assert!(read(&p).unwrap().counted() >= shown);
            }
        })
        .unwrap();
        assert_eq!(out, Outcome::Finished { counted: 10 });
        assert_eq!(shown, 10);
        let st = read(&p).unwrap();
        assert_eq!(st.counted(), 10);
        assert_eq!(st.done_fields.len(), 4);
        assert!(st.finished);
        assert_eq!(h.light(), 0);
        assert_eq!(h.status(), Some(Status::Idle));
    }

    #[test]
    fn unplugged_camera_is_retried_with_back_off() {
        let (mut m, h) = microscope(sim()).unwrap();
        let p = tmp("unplug.jsonl");
        let mut j = journal(&p, 4);
        h.set_faults(Faults {
            unplugged_for: 2,
            ..Faults::default()
        });
        let mut retries = 0;
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(4), &mut |e| {
            if let Event::Retry { .. } = e {
                retries += 1;
            }
        })
        .unwrap();
        assert_eq!(out, Outcome::Finished { counted: 4 });
        assert_eq!(retries, 2);
    }

    #[test]
    fn camera_gone_for_good_pauses_keeping_the_data() {
        let (mut m, h) = microscope(sim()).unwrap();
        let p = tmp("gone.jsonl");
        let mut j = journal(&p, 20);
        h.set_faults(Faults {
            unplug_at_frame: Some(25),
            unplug_len: u32::MAX,
            ..Faults::default()
        });
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(20), &mut |_| {}).unwrap();
        let Outcome::Paused { reason, counted } = out else {
            panic!("{out:?}")
        };
        assert!(counted > 0 && counted < 20, "{counted}");
        assert!(
            reason.contains("camera") && reason.contains("--resume"),
            "{reason}"
        );
        assert_eq!(h.light(), 0);
        assert_eq!(h.status(), Some(Status::Attention));
        drop(j);
        // Plugged back in: resume finishes without recounting a field.
        h.set_faults(Faults::default());
        let mut j = Journal::resume(&p).unwrap();
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(20), &mut |_| {}).unwrap();
        assert_eq!(out, Outcome::Finished { counted: 20 });
        let st = read(&p).unwrap();
        assert_eq!(st.counted(), 20);
        assert_eq!(st.done_fields.len(), 10);
    }

    /// The default lamp never clips the bundled slide; a lamp at full power does (the simulated camera is
    /// linear in light, nominal at 700 ‰), and the session lowers it until no committed field is clipped.
    #[test]
    fn a_clipping_camera_gets_a_dimmer_lamp_and_no_field_is_counted_clipped() {
        let exposures = |light: u16, name: &str| {
            let (mut m, _h) = microscope(sim()).unwrap();
            let p = tmp(name);
            let mut j = journal(&p, 10);
            let mut steps = Vec::new();
            let mut flagged = 0;
            let cfg = SessionConfig { light, ..cfg(10) };
            let out = run(&mut m, &mut Fixed(3), &mut j, &cfg, &mut |e| match e {
                Event::Exposure { from, to, clipping } => {
                    assert!(clipping.is_over(), "{clipping:?}");
                    let notice = e.exposure_notice().expect("a notice");
                    assert!(notice.contains(&format!("lowered to {to} ‰")), "{notice}");
                    steps.push((*from, *to));
                }
                Event::FrameCommitted {
                    clipping: Some(_), ..
                } => flagged += 1,
                _ => {}
            })
            .unwrap();
            assert_eq!(out, Outcome::Finished { counted: 10 });
            let st = read(&p).unwrap();
            assert!(st.frames.iter().all(|f| f.clipping.is_none()));
            assert_eq!(flagged, 0);
            steps
        };
        assert_eq!(exposures(700, "lamp-nominal.jsonl"), []);
        let steps = exposures(FULL, "lamp-full.jsonl");
        assert!(!steps.is_empty());
        assert_eq!(steps[0], (FULL, FULL * 3 / 4));
        // Each step a quarter lower, starting from where the last one ended.
        for w in steps.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        assert!(steps.iter().all(|&(from, to)| to == from * 3 / 4));
        assert!(steps.last().unwrap().1 >= 700 * 3 / 4, "{steps:?}");
    }

    #[test]
    fn stalled_focus_motor_pauses() {
        let (mut m, h) = microscope(sim()).unwrap();
        h.set_faults(Faults {
            focus_stuck: true,
            ..Faults::default()
        });
        let p = tmp("stall.jsonl");
        let mut j = journal(&p, 5);
        let out = run(&mut m, &mut Fixed(1), &mut j, &cfg(5), &mut |_| {}).unwrap();
        let Outcome::Paused { reason, .. } = out else {
            panic!("{out:?}")
        };
        assert!(reason.contains("motor"), "{reason}");
    }

    #[test]
    fn without_a_stage_the_user_is_prompted_per_field() {
        let (m, h) = microscope(sim()).unwrap();
        let mut m = Microscope {
            camera: m.camera,
            light: m.light,
            focus: m.focus,
            stage: None::<crate::board::NoStage>,
            button: m.button,
            status: m.status,
        };
        let p = tmp("manual.jsonl");
        let mut j = journal(&p, 6);
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(6), &mut |_| {}).unwrap();
        assert_eq!(out, Outcome::Finished { counted: 6 });
        assert_eq!(h.presses(), 2);
    }

    #[test]
    fn target_0_counts_every_field_and_finishes() {
        let (mut m, _h) = microscope(sim()).unwrap();
        let p = tmp("unlimited.jsonl");
        let mut j = journal(&p, 0);
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(0), &mut |_| {}).unwrap();
        assert_eq!(out, Outcome::Finished { counted: 50 });
        assert_eq!(read(&p).unwrap().done_fields.len(), 25);
    }

    #[test]
    fn an_interrupt_pauses_saying_what_is_safe_and_resume_continues() {
        let (mut m, _h) = microscope(sim()).unwrap();
        let p = tmp("interrupt.jsonl");
        let mut j = journal(&p, 10);
        let stop = AtomicBool::new(false);
        let out = run_until(&mut m, &mut Fixed(2), &mut j, &cfg(10), &stop, &mut |e| {
            if let Event::FrameCommitted { counted: 4, .. } = e {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
        let Outcome::Paused { reason, counted } = out else {
            panic!("{out:?}")
        };
        assert_eq!(counted, 4);
        assert!(
            reason.contains("Ctrl-C") && reason.contains("--resume") && reason.contains("4 cells"),
            "{reason}"
        );
        drop(j);
        let mut j = Journal::resume(&p).unwrap();
        let out = run(&mut m, &mut Fixed(2), &mut j, &cfg(10), &mut |_| {}).unwrap();
        assert_eq!(out, Outcome::Finished { counted: 10 });
    }

    #[test]
    fn another_analyzer_cannot_continue_a_journal() {
        let (mut m, _h) = microscope(sim()).unwrap();
        let p = tmp("other.jsonl");
        let mut j = journal(&p, 10);
        let err = run(
            &mut m,
            &mut BlobAnalyzer::default(),
            &mut j,
            &cfg(10),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("blobs") && err.contains("fixed"), "{err}");
        assert_eq!(read(&p).unwrap().counted(), 0);
    }

    #[test]
    fn serpentine_visits_every_field_once_with_neighbouring_moves() {
        let s = serpentine((3, 2));
        let pos: Vec<(u32, u32)> = s.iter().map(|f| f.1).collect();
        assert_eq!(pos, vec![(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1)]);
    }

    #[test]
    fn blob_analyzer_finds_stained_nuclei_on_bundled_smears() {
        let mut n = 0;
        for e in
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/smears")).unwrap()
        {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "jpg") {
                n += BlobAnalyzer::default()
                    .analyze(&Frame::open(&p).unwrap())
                    .unwrap()
                    .len();
            }
        }
        assert!(n >= 8, "{n}");
    }
}
