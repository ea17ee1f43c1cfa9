//! What the web page does, without HTTP: the count in progress (one at a time, on a worker thread, into
//! its sample's journal), review verdicts, sign-off and amendment (each a journal record, durable before
//! it is answered), the live view's frames and the calibration export. The routes ([`super::routes`])
//! only parse, check the session and render.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;

use super::auth::{Sessions, Users};
use super::device::{Device, DeviceState};
use super::store::{valid_sample, Store};
use crate::cell::{Cell, Review, Verdict};
use crate::classes::NOT_WHITE_CELL;
use crate::count::{Differential, StopRule};
use crate::frame::Frame;
use crate::journal::{self, Header, Journal, JournalError, Record, State};
use crate::pipeline::{Analysis, Pipeline};
use crate::report::Report;
use crate::session::{Event, Outcome, SessionConfig};

/// Most cells one count may be asked for.
pub const MAX_TARGET: u32 = 1000;
/// Folder of calibration exports inside the data folder.
pub const CALIBRATION_DIR: &str = "calibration";

/// Why a request was not done: the HTTP status and one sentence for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 404, 409, 500...
    pub status: StatusCode,
    /// What happened and what to do.
    pub message: String,
}

impl Refusal {
    /// 400: the request itself is wrong.
    pub fn bad(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    /// 409: not now (a count runs, the report is signed...).
    pub fn conflict(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }
    /// 500: the device failed (a disk, the camera).
    pub fn failed(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<JournalError> for Refusal {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Mismatch { .. } | JournalError::Refused { .. } => {
                Refusal::conflict(e.to_string())
            }
            _ => Refusal::failed(e.to_string()),
        }
    }
}

/// Where a count stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Counting.
    Running,
    /// Pausing or stopping after the current field.
    Stopping,
    /// Paused (by the operator or a fault); it can be resumed.
    Paused,
    /// Target reached, or stopped by the operator: ready for review.
    Finished,
    /// Every field visited before the target: load more fields and resume, or stop.
    Exhausted,
    /// The session failed; the journal keeps every counted cell.
    Failed,
}

/// The count in progress (or the last one since the server started), as the count page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    /// Its sample.
    pub sample: String,
    /// Where it stands.
    pub phase: Phase,
    /// The last thing to tell the operator (a prompt, a fault, why it paused).
    pub message: Option<String>,
    /// Cells counted so far.
    pub counted: u32,
    /// The target (0: none).
    pub target: u32,
    /// The field being counted.
    pub field: Option<u32>,
    /// Cells per minute since this session started.
    pub rate_per_min: f64,
    /// Seconds left at that rate.
    pub eta_s: Option<u64>,
    /// The running differential: cells per class, then unidentified.
    pub differential: serde_json::Value,
    /// Percent of identified cells per class.
    pub percent: Vec<(String, f32)>,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    counted_at_start: u32,
    #[serde(skip)]
    running: Differential,
    #[serde(skip)]
    pending: Vec<Cell>,
    #[serde(skip)]
    stop: bool,
}

impl Progress {
    fn refresh(&mut self) {
        self.differential = self.running.to_json();
        self.percent = self
            .running
            .classes()
            .iter()
            .map(String::from)
            .zip(self.running.percentages())
            .collect();
        let elapsed = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let new = self.counted.saturating_sub(self.counted_at_start) as f64;
        self.rate_per_min = if elapsed > 0.5 {
            new * 60.0 / elapsed
        } else {
            0.0
        };
        let left = StopRule {
            target: self.target,
        }
        .remaining(self.counted);
        self.eta_s = match left {
            Some(n) if self.rate_per_min > 0.0 => {
                Some((n as f64 * 60.0 / self.rate_per_min).round() as u64)
            }
            _ => None,
        };
    }

    fn running(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Stopping)
    }
}

/// Where a sample's count stands, from its journal.
pub fn status_of(state: &State) -> String {
    if let Some(s) = state.signed() {
        let again = if state.amendments.is_empty() {
            ""
        } else {
            " (after an amendment)"
        };
        return format!("signed by {}{again}", s.by);
    }
    if !state.amendments.is_empty() {
        return "amended: sign again".into();
    }
    if state.finished {
        return "finished: review and sign".into();
    }
    "not finished: resume or stop".into()
}

/// The server's state.
pub struct App {
    /// The data folder.
    pub data: PathBuf,
    /// Journals.
    pub store: Store,
    /// Operators.
    pub users: Users,
    /// Signed-in sessions.
    pub sessions: Sessions,
    /// Whether every page needs a signed-in session (the server listens beyond loopback).
    pub pages_need_session: bool,
    device: Arc<Mutex<Box<dyn Device>>>,
    pipeline: Arc<Mutex<Pipeline>>,
    analysis: Analysis,
    source: String,
    session: SessionConfig,
    progress: Arc<Mutex<Option<Progress>>>,
    interrupt: Arc<AtomicBool>,
    live: Arc<Mutex<Option<Arc<Vec<u8>>>>>,
    review_lock: Mutex<()>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A frame as JPEG for the live view.
pub fn jpeg(frame: &Frame) -> Result<Vec<u8>, String> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(
            frame.data(),
            frame.width(),
            frame.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| format!("cannot encode the frame as JPEG: {e}"))?;
    Ok(out.into_inner())
}

/// A counted cell of a journal, for the review page.
#[derive(Clone, Debug)]
pub struct Counted<'a> {
    /// Frame id.
    pub frame: u64,
    /// Index in the frame.
    pub index: u32,
    /// The cell.
    pub cell: &'a Cell,
}

/// The cells a journal's count considered, in the order counted, with their reviews: those in the
/// differential and those a reviewer took out of it as not white cells.
pub fn counted<'a>(state: &'a State, report: &Report) -> Vec<Counted<'a>> {
    let mut v = Vec::new();
    for (f, rf) in state.frames.iter().zip(&report.frames) {
        for (i, cell) in f.cells.iter().enumerate() {
            if i < rf.counted {
                v.push(Counted {
                    frame: f.frame,
                    index: i as u32,
                    cell,
                });
            }
        }
    }
    v
}

impl App {
    /// The server's state over `data`, driving `device` with `pipeline`; `source` names the microscope
    /// as journals record it (a resumed journal must name the same one).
    pub fn new(
        data: &Path,
        device: Box<dyn Device>,
        pipeline: Pipeline,
        source: String,
        session: SessionConfig,
        pages_need_session: bool,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(data)?;
        let analysis = pipeline.analysis();
        Ok(App {
            data: data.to_owned(),
            store: Store::open(data)?,
            users: Users::new(data),
            sessions: Sessions::default(),
            pages_need_session,
            device: Arc::new(Mutex::new(device)),
            pipeline: Arc::new(Mutex::new(pipeline)),
            analysis,
            source,
            session,
            progress: Arc::new(Mutex::new(None)),
            interrupt: Arc::new(AtomicBool::new(false)),
            live: Arc::new(Mutex::new(None)),
            review_lock: Mutex::new(()),
        })
    }

    /// Who types the cells.
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    /// The count in progress, or the last one.
    pub fn progress(&self) -> Option<Progress> {
        let mut p = lock(&self.progress).clone()?;
        p.refresh();
        Some(p)
    }

    /// Whether `sample` is being counted now.
    pub fn counting(&self, sample: &str) -> bool {
        lock(&self.progress)
            .as_ref()
            .is_some_and(|p| p.running() && p.sample == sample)
    }

    fn check_sample(&self, sample: &str) -> Result<(), Refusal> {
        if !valid_sample(sample) {
            return Err(Refusal::bad(format!(
                "{sample:?} is not a usable sample ID: 1 to 64 letters, digits, '.', '_' or '-'"
            )));
        }
        Ok(())
    }

    /// A sample's journal, replayed.
    pub fn state(&self, sample: &str) -> Result<Arc<State>, Refusal> {
        self.check_sample(sample)?;
        if !self.store.exists(sample) {
            return Err(Refusal::not_found(format!("no count of sample {sample}")));
        }
        Ok(self.store.state(sample)?)
    }

    /// Starts counting `sample` to `target` cells (a new journal), or continues its journal when `resume`.
    pub fn start(&self, sample: &str, target: u32, resume: bool) -> Result<(), Refusal> {
        self.check_sample(sample)?;
        if !resume && !(1..=MAX_TARGET).contains(&target) {
            return Err(Refusal::bad(format!(
                "target {target}: count 1 to {MAX_TARGET} cells (100 or 200 for a differential)"
            )));
        }
        let mut progress = lock(&self.progress);
        if let Some(p) = progress.as_ref().filter(|p| p.running()) {
            return Err(Refusal::conflict(format!(
                "a count of sample {} is running: stop it or let it finish before starting another",
                p.sample
            )));
        }
        let path = self.store.path(sample);
        let header = Header::new(target, self.source.clone(), self.analysis.clone());
        let journal = if resume {
            if !path.exists() {
                return Err(Refusal::not_found(format!(
                    "no count of sample {sample} to resume"
                )));
            }
            let st = journal::read(&path)?;
            if st.finished {
                return Err(Refusal::conflict(format!(
                    "the count of sample {sample} is finished: review it"
                )));
            }
            Journal::resume_as(&path, Some(&header))?
        } else {
            if path.exists() {
                return Err(Refusal::conflict(format!(
                    "sample {sample} already has a count: resume it from the list, or use another sample ID"
                )));
            }
            Journal::create(&path, header)?
        };
        self.store.forget(sample);
        let st = journal.state();
        let report = Report::from_journal(st);
        let mut p = Progress {
            sample: sample.to_string(),
            phase: Phase::Running,
            message: None,
            counted: st.counted(),
            target: st.target(),
            field: None,
            rate_per_min: 0.0,
            eta_s: None,
            differential: serde_json::Value::Null,
            percent: Vec::new(),
            started: Some(Instant::now()),
            counted_at_start: st.counted(),
            running: report.differential.clone(),
            pending: Vec::new(),
            stop: false,
        };
        p.refresh();
        *progress = Some(p);
        drop(progress);
        self.interrupt.store(false, Ordering::SeqCst);
        let cfg = SessionConfig {
            target: journal.state().target(),
            ..self.session.clone()
        };
        let worker = Worker {
            device: Arc::clone(&self.device),
            pipeline: Arc::clone(&self.pipeline),
            progress: Arc::clone(&self.progress),
            interrupt: Arc::clone(&self.interrupt),
            live: Arc::clone(&self.live),
        };
        std::thread::Builder::new()
            .name(format!("count {sample}"))
            .spawn(move || worker.run(journal, cfg))
            .map_err(|e| Refusal::failed(format!("cannot start the count: {e}")))?;
        Ok(())
    }

    /// Pauses the running count after its field (`stop`: and finishes it, for review, as it is).
    pub fn pause(&self, stop: bool) -> Result<(), Refusal> {
        let mut progress = lock(&self.progress);
        match progress.as_mut() {
            Some(p) if p.running() => {
                p.phase = Phase::Stopping;
                p.stop |= stop;
                p.message = Some(if stop {
                    "stopping after this field".into()
                } else {
                    "pausing after this field".into()
                });
                self.interrupt.store(true, Ordering::SeqCst);
                Ok(())
            }
            _ => Err(Refusal::conflict("no count is running")),
        }
    }

    /// Finishes a count that is not running (paused, exhausted, or left by a restart) as it is.
    pub fn stop_idle(&self, sample: &str) -> Result<(), Refusal> {
        let st = self.state(sample)?;
        if self.counting(sample) {
            return self.pause(true);
        }
        if st.finished {
            return Err(Refusal::conflict(format!(
                "the count of sample {sample} is already finished"
            )));
        }
        let _w = lock(&self.review_lock);
        let mut j = Journal::review(&self.store.path(sample))?;
        j.finish()?;
        self.store.forget(sample);
        Ok(())
    }

    /// Records a reviewer's verdict (`verdict`: a class name, `UNIDENTIFIED` or `NOT_A_WHITE_CELL`) on the
    /// cell `index` of frame `frame`. Durable when this returns.
    pub fn review(
        &self,
        sample: &str,
        frame: u64,
        index: u32,
        verdict: &str,
        by: &str,
    ) -> Result<(), Refusal> {
        let st = self.state(sample)?;
        if self.counting(sample) {
            return Err(Refusal::conflict(format!(
                "sample {sample} is being counted: review it when the count has finished"
            )));
        }
        let report = Report::from_journal(&st);
        if !counted(&st, &report)
            .iter()
            .any(|c| c.frame == frame && c.index == index)
        {
            return Err(Refusal::not_found(format!(
                "sample {sample} has no counted cell {index} in frame {frame}"
            )));
        }
        let verdict = if verdict.trim().eq_ignore_ascii_case(NOT_WHITE_CELL) {
            Verdict::NotWhiteCell
        } else {
            match st.header.analysis.classes.parse_label(verdict) {
                Ok(Some(c)) => Verdict::Class(c),
                Ok(None) => Verdict::Unidentified,
                Err(e) => return Err(Refusal::bad(format!("{e} (or {NOT_WHITE_CELL})"))),
            }
        };
        self.write(
            sample,
            Record::Reviewed {
                frame,
                index,
                review: Review {
                    verdict,
                    by: by.to_string(),
                    unix: journal::unix_now(),
                },
            },
        )
    }

    /// Signs the report of `sample` as `by`: it needs a finished count whose unidentified cells have all
    /// been looked at.
    pub fn sign(&self, sample: &str, by: &str) -> Result<(), Refusal> {
        let st = self.state(sample)?;
        if !st.finished || self.counting(sample) {
            return Err(Refusal::conflict(format!(
                "the count of sample {sample} has not finished: let it reach its target or stop it first"
            )));
        }
        if let Some(s) = st.signed() {
            return Err(Refusal::conflict(format!(
                "the report of sample {sample} is already signed by {}",
                s.by
            )));
        }
        let report = Report::from_journal(&st);
        let open = counted(&st, &report)
            .iter()
            .filter(|c| c.cell.review.is_none() && c.cell.class().is_none())
            .count();
        if open > 0 {
            return Err(Refusal::conflict(format!(
                "{open} unidentified cell(s) not reviewed yet: type each, or confirm it unidentified (u)"
            )));
        }
        self.write(
            sample,
            Record::Signed {
                by: by.to_string(),
                unix: journal::unix_now(),
            },
        )
    }

    /// Unlocks a signed report for changes, as `by`, for `reason` (it must be signed again).
    pub fn amend(&self, sample: &str, by: &str, reason: &str) -> Result<(), Refusal> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(Refusal::bad(
                "say why the report is amended (1 to 500 characters)",
            ));
        }
        self.state(sample)?;
        self.write(
            sample,
            Record::Amended {
                by: by.to_string(),
                reason: reason.to_string(),
                unix: journal::unix_now(),
            },
        )
    }

    fn write(&self, sample: &str, record: Record) -> Result<(), Refusal> {
        let _w = lock(&self.review_lock);
        let mut j = Journal::review(&self.store.path(sample))?;
        let out = j.record_review(record);
        self.store.forget(sample);
        Ok(out?)
    }

    /// The microscope, unless a count holds it.
    fn device(&self) -> Result<MutexGuard<'_, Box<dyn Device>>, Refusal> {
        self.device.try_lock().map_err(|_| {
            Refusal::conflict("a count is using the microscope: pause or stop it first")
        })
    }

    /// Focus, light and stage (`None` while a count holds the microscope).
    pub fn device_state(&self) -> Option<DeviceState> {
        self.device.try_lock().ok().map(|d| d.state())
    }

    /// A JPEG of the camera now, or the count's last frame while a count holds the microscope.
    pub fn live_jpeg(&self) -> Result<Arc<Vec<u8>>, Refusal> {
        if let Ok(mut d) = self.device.try_lock() {
            let frame = d.snapshot().map_err(Refusal::failed)?;
            drop(d);
            let j = Arc::new(jpeg(&frame).map_err(Refusal::failed)?);
            *lock(&self.live) = Some(Arc::clone(&j));
            return Ok(j);
        }
        lock(&self.live)
            .clone()
            .ok_or_else(|| Refusal::conflict("the count has not captured a frame yet"))
    }

    /// Moves the focus by `steps`.
    pub fn focus_by(&self, steps: i32) -> Result<String, Refusal> {
        self.device()?
            .focus_by(steps)
            .map(|_| format!("focus moved by {steps} steps"))
            .map_err(Refusal::conflict)
    }

    /// Runs the autofocus.
    pub fn autofocus(&self) -> Result<String, Refusal> {
        let r = self.device()?.autofocus().map_err(Refusal::failed)?;
        Ok(format!(
            "in focus at {} after {} frames (contrast {:.1})",
            r.position, r.frames, r.contrast
        ))
    }

    /// Sets the light, per mille.
    pub fn set_light(&self, permille: u16) -> Result<String, Refusal> {
        self.device()?
            .set_light(permille)
            .map(|_| format!("light at {permille} ‰"))
            .map_err(Refusal::bad)
    }

    /// Moves the stage.
    pub fn stage_by(&self, dx: i32, dy: i32) -> Result<String, Refusal> {
        self.device()?
            .stage_by(dx, dy)
            .map(|_| format!("stage moved by ({dx}, {dy}) steps"))
            .map_err(Refusal::conflict)
    }

    /// Writes the typed cells of the signed samples `samples` as `DATA/calibration/<ID>/cells/<CLASS>/*.png`
    /// (the folder `leukoscope adapt --cells` takes); returns the export's ID and cells per class.
    pub fn export_calibration(
        &self,
        samples: &[String],
    ) -> Result<(String, Vec<(String, usize)>), Refusal> {
        if samples.is_empty() {
            return Err(Refusal::bad("choose at least one signed sample"));
        }
        let mut states = Vec::new();
        for s in samples {
            let st = self.state(s)?;
            if st.signed().is_none() {
                return Err(Refusal::conflict(format!(
                    "sample {s} is not signed: only signed counts calibrate the device"
                )));
            }
            states.push((s, st));
        }
        let id = format!("{}", journal::unix_now());
        let dir = self.calibration_dir(&id).join("cells");
        let classes = &self.analysis.classes;
        let mut per_class = vec![0usize; classes.len()];
        let failed = |e: std::io::Error| Refusal::failed(format!("{}: {e}", dir.display()));
        for (sample, st) in &states {
            if st.header.analysis.classes != *classes {
                return Err(Refusal::conflict(format!(
                    "sample {sample} was counted with other classes ({:?})",
                    st.header.analysis.classes.names()
                )));
            }
            let report = Report::from_journal(st);
            for c in counted(st, &report) {
                let (Some(k), Some(crop)) = (c.cell.class(), c.cell.crop.as_ref()) else {
                    continue;
                };
                let Some(name) = classes.get(k) else { continue };
                let folder = dir.join(name);
                std::fs::create_dir_all(&folder).map_err(failed)?;
                let png = crop
                    .to_png()
                    .map_err(|e| Refusal::failed(format!("cannot encode a crop: {e}")))?;
                let file = folder.join(format!("{sample}-f{}-c{}.png", c.frame, c.index));
                std::fs::write(&file, png).map_err(failed)?;
                per_class[k] += 1;
            }
        }
        if per_class.iter().all(|&n| n == 0) {
            return Err(Refusal::conflict(
                "the chosen samples have no typed cell with a crop",
            ));
        }
        Ok((
            id,
            classes.iter().map(String::from).zip(per_class).collect(),
        ))
    }

    /// The folder of calibration export `id`.
    pub fn calibration_dir(&self, id: &str) -> PathBuf {
        self.data.join(CALIBRATION_DIR).join(id)
    }

    /// Calibration export `id` as a tar of its `cells/` folder.
    pub fn calibration_tar(&self, id: &str) -> Result<Vec<u8>, Refusal> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::not_found(format!("no calibration export {id:?}")));
        }
        let dir = self.calibration_dir(id).join("cells");
        if !dir.is_dir() {
            return Err(Refusal::not_found(format!("no calibration export {id}")));
        }
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all("cells", &dir)
            .and_then(|_| b.into_inner())
            .map_err(|e| Refusal::failed(format!("{}: {e}", dir.display())))
    }
}

/// The count's thread.
struct Worker {
    device: Arc<Mutex<Box<dyn Device>>>,
    pipeline: Arc<Mutex<Pipeline>>,
    progress: Arc<Mutex<Option<Progress>>>,
    interrupt: Arc<AtomicBool>,
    live: Arc<Mutex<Option<Arc<Vec<u8>>>>>,
}

impl Worker {
    fn run(self, mut journal: Journal, cfg: SessionConfig) {
        let mut device = lock(&self.device);
        let mut pipeline = lock(&self.pipeline);
        let mut last_live = Instant::now() - Duration::from_secs(1);
        let progress = &self.progress;
        let live = &self.live;
        let outcome = device.count(
            &mut pipeline,
            &mut journal,
            &cfg,
            &self.interrupt,
            &mut |e| {
                let mut g = lock(progress);
                let Some(p) = g.as_mut() else { return };
                match e {
                    Event::Field { field, .. } => p.field = Some(*field),
                    Event::Prompt(msg) => p.message = Some((*msg).to_string()),
                    Event::Retry { error, .. } => {
                        p.message = Some(format!("camera: {error}; retrying"))
                    }
                    Event::Exposure { .. } => p.message = e.exposure_notice(),
                    Event::Captured { frame, .. } => {
                        // At most a few frames a second: encoding is not free on a Pi.
                        if last_live.elapsed() >= Duration::from_millis(200) {
                            last_live = Instant::now();
                            if let Ok(j) = jpeg(frame) {
                                *lock(live) = Some(Arc::new(j));
                            }
                        }
                    }
                    Event::Cell { cell, .. } => p.pending.push((*cell).clone()),
                    Event::FrameCommitted { counted, .. } => {
                        if let Some(n) = e.exposure_notice() {
                            p.message = Some(n);
                        }
                        for c in p.pending.drain(..) {
                            if p.running.total() < *counted {
                                p.running.add(&c);
                            }
                        }
                        p.counted = *counted;
                    }
                    Event::Homed | Event::Focused(_) => {}
                }
            },
        );
        drop(pipeline);
        drop(device);
        let stop = lock(&self.progress).as_ref().is_some_and(|p| p.stop);
        let (phase, message) = match outcome {
            Ok(Outcome::Finished { counted }) => {
                (Phase::Finished, format!("finished: {counted} cells; review and sign"))
            }
            Ok(Outcome::SlideExhausted { counted }) if stop => self.finish(&mut journal, counted),
            Ok(Outcome::SlideExhausted { counted }) => (
                Phase::Exhausted,
                format!(
                    "every field was counted and only {counted} cells found: load more fields and resume, or stop"
                ),
            ),
            Ok(Outcome::Paused { counted, .. }) if stop => self.finish(&mut journal, counted),
            Ok(Outcome::Paused { reason, .. }) if self.interrupt.load(Ordering::SeqCst) => {
                let _ = reason;
                (Phase::Paused, "paused by the operator: resume it from the list".to_string())
            }
            Ok(Outcome::Paused { reason, .. }) => (Phase::Paused, reason),
            Err(e) => {
                let msg = format!("the count stopped: {e}; every counted cell is in the journal");
                let _ = journal.pause(&msg);
                (Phase::Failed, msg)
            }
        };
        let counted = journal.state().counted();
        if let Some(p) = lock(&self.progress).as_mut() {
            p.phase = phase;
            p.message = Some(message);
            p.counted = counted;
        }
    }

    fn finish(&self, journal: &mut Journal, counted: u32) -> (Phase, String) {
        match journal.finish() {
            Ok(()) => (
                Phase::Finished,
                format!("stopped by the operator at {counted} cells; review and sign"),
            ),
            Err(e) => (Phase::Failed, format!("cannot finish the journal: {e}")),
        }
    }
}
