//! The count journal: an append-only, fsync'd record of every counted cell, so a power cut or `kill -9`
//! loses nothing, a resumed session counts nothing twice, and the session's report can be rebuilt from it
//! (`leukoscope report --journal FILE`, [`crate::report::Report::from_journal`]).
//!
//! **Format** (version [`VERSION`]): one JSON object per line (JSON Lines, so `jq` reads it:
//! `jq -c 'select(.type == "cell") | .prediction' J`). Each object starts with its own checksum,
//! `{"crc":"CCCCCCCC",...}`: `CCCCCCCC` is the CRC-32 (IEEE, lower-case hex) of the same record written
//! without it, that is of the bytes `{` followed by everything after the line's first comma, without
//! the line break. Records ([`Record`], told apart by `"type"`): a `start` header (what made the
//! session: target, slide or board, software, analyzer, model and sha256, unidentified threshold,
//! classes), `cell` (box, prediction, crop as base64 PNG), `frame_done`, `paused`, `resumed`,
//! `finished`, and the review's `reviewed` (a person's verdict on one cell), `signed` (the report is
//! locked) and `amended` (a signed report unlocked again, with who and why). Version 2 journals (no review
//! records) are read as they are; version 1 journals (`CCCCCCCC {json}` lines) are refused with a clear
//! error.
//!
//! **Review**: a `reviewed` record names its cell by frame id and index; the last verdict on a cell wins.
//! After `signed`, nothing may change until an `amended` record: a journal that breaks this (a review or
//! a frame after sign-off) is refused as corrupt.
//!
//! **Atomicity per frame**: a frame's cells are appended and fsync'd, then its `frame_done` is appended and
//! fsync'd, and only then are the cells shown. A cell counts only when its frame's `frame_done` is in the
//! journal, so a crash between the two leaves cells that are ignored on resume and the field is simply
//! counted again, under a new frame id (frame ids never repeat: resume continues after the largest seen).
//!
//! **Torn tail**: a last line that is incomplete or fails its CRC (the write the crash interrupted) is
//! ignored when reading and cut off before a resumed session appends. A bad line *followed by good ones*
//! is not a torn write but corruption, and is refused with its line number rather than guessed around.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::cell::{Cell, Prediction, Review, Verdict};
use crate::exposure::Clipping;
use crate::frame::Frame;
use crate::pipeline::Analysis;
use crate::rect::Rect;

/// Journal format version written in the `start` record.
pub const VERSION: u32 = 3;

/// The oldest version this build reads (version 2 has no review records).
pub const OLDEST_VERSION: u32 = 2;

/// What made a session: the journal's first record. A resumed session must be the same session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Cells to count (0: no limit). Unidentified cells count toward it.
    pub target: u32,
    /// Where the cells came from: the slide (simulator) or the board.
    pub source: String,
    /// The software that counted, e.g. `leukoscope 0.1.0`.
    pub software: String,
    /// When the session started, seconds since the Unix epoch.
    pub unix: u64,
    /// The analyzer, model, threshold and classes.
    #[serde(flatten)]
    pub analysis: Analysis,
}

impl Header {
    /// A header for a session starting now with this build.
    pub fn new(target: u32, source: impl Into<String>, analysis: Analysis) -> Self {
        Header {
            target,
            source: source.into(),
            software: crate::report::software(),
            unix: unix_now(),
            analysis,
        }
    }

    /// Why a session described by `wanted` may not continue this journal (another model, slide, board,
    /// analyzer, class list or threshold); `None` when it may. The target is not compared: a resumed
    /// session keeps the journal's.
    pub fn mismatch(&self, wanted: &Header) -> Option<String> {
        let (a, b) = (&self.analysis, &wanted.analysis);
        let model = |m: &Option<crate::model::ModelId>| {
            m.as_ref()
                .map_or_else(|| "no model".to_string(), ToString::to_string)
        };
        if self.source != wanted.source {
            Some(format!(
                "the journal counted {:?}, this session is {:?}",
                self.source, wanted.source
            ))
        } else if a.analyzer != b.analyzer {
            Some(format!(
                "the journal's cells were typed by the {} analyzer, this session's by {}",
                a.analyzer, b.analyzer
            ))
        } else if a.model.as_ref().map(|m| &m.sha256) != b.model.as_ref().map(|m| &m.sha256) {
            Some(format!(
                "the journal was counted with model {}, this session uses {}",
                model(&a.model),
                model(&b.model)
            ))
        } else if a.classes != b.classes {
            Some(format!(
                "the journal's classes are {}, this session's are {}",
                a.classes, b.classes
            ))
        } else if a.unidentified_threshold != b.unidentified_threshold {
            Some(format!(
                "the journal's unidentified threshold is {}, this session's is {}",
                a.unidentified_threshold, b.unidentified_threshold
            ))
        } else {
            None
        }
    }
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The header: first line of every journal.
    Start {
        /// Format version.
        version: u32,
        /// What made the session.
        #[serde(flatten)]
        header: Header,
    },
    /// A counted cell (the serialised form of a [`Cell`]); it counts once its frame's `frame_done`
    /// follows.
    Cell {
        /// Frame id (unique within the journal).
        frame: u64,
        /// Field index (position in the stage's visiting order, or the n-th field the user moved to).
        field: u32,
        /// Position within the frame's list of cells.
        index: u32,
        /// The cell's box in frame pixels, `[x0, y0, x1, y1]`.
        bbox: Rect,
        /// What the classifier said (class indices into the header's classes), if typed.
        prediction: Option<Prediction>,
        /// The crop as base64 PNG, if the cell has one.
        crop_png: Option<String>,
    },
    /// All cells of a frame are in the journal.
    FrameDone {
        /// Frame id.
        frame: u64,
        /// Field index.
        field: u32,
        /// Stage position, if motorised.
        stage: Option<(i32, i32)>,
        /// Focus position used.
        focus: i32,
        /// Number of `cell` records of this frame.
        cells: u32,
        /// Share of the frame's pixels at the camera's white level per channel, when it was
        /// over-exposed ([`crate::exposure`]); absent otherwise and in journals written before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clipped: Option<Clipping>,
    },
    /// The session stopped waiting for a person (camera gone, stalled motor, Ctrl-C).
    Paused {
        /// Why, in words.
        reason: String,
        /// Seconds since the Unix epoch.
        unix: u64,
    },
    /// A session resumed this journal.
    Resumed {
        /// Seconds since the Unix epoch.
        unix: u64,
    },
    /// The target was reached (or, with no target, every field was counted).
    Finished {
        /// Cells counted.
        counted: u32,
        /// Seconds since the Unix epoch.
        unix: u64,
    },
    /// A person's verdict on one counted cell.
    Reviewed {
        /// The cell's frame id.
        frame: u64,
        /// The cell's position within its frame.
        index: u32,
        /// The verdict, who gave it and when.
        #[serde(flatten)]
        review: Review,
    },
    /// The report was signed: locked until an amendment.
    Signed {
        /// The operator who signed.
        by: String,
        /// Seconds since the Unix epoch.
        unix: u64,
    },
    /// A signed report was unlocked to be changed (it must be signed again).
    Amended {
        /// The operator who amended it.
        by: String,
        /// Why, in words.
        reason: String,
        /// Seconds since the Unix epoch.
        unix: u64,
    },
}

/// A sign-off of the report (the journal's `signed` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOff {
    /// The operator who signed.
    pub by: String,
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

/// An amendment: a signed report unlocked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amendment {
    /// The operator who amended it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

impl Record {
    /// The `cell` record of a frame's `index`-th cell.
    pub fn cell(frame: u64, field: u32, index: u32, cell: &Cell) -> Result<Record, JournalError> {
        let crop_png = cell.crop.as_ref().map(crop_to_png_base64).transpose()?;
        Ok(Record::Cell {
            frame,
            field,
            index,
            bbox: cell.rect,
            prediction: cell.prediction.clone(),
            crop_png,
        })
    }
}

/// A committed frame of a session: where it was taken and its cells, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldCells {
    /// Frame id.
    pub frame: u64,
    /// Field index.
    pub field: u32,
    /// Stage position, if motorised.
    pub stage: Option<(i32, i32)>,
    /// Focus position used.
    pub focus: i32,
    /// The cells, with their crops and predictions.
    pub cells: Vec<Cell>,
    /// How much the camera clipped, when the frame was over-exposed.
    pub clipping: Option<Clipping>,
}

impl FieldCells {
    /// `field 3`, or `field 3 at (2, 0)` with a motorised stage: how reports name the frame.
    pub fn name(&self) -> String {
        match self.stage {
            Some((x, y)) => format!("field {} at ({x}, {y})", self.field),
            None => format!("field {}", self.field),
        }
    }
}

/// Everything a journal says, replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// What made the session.
    pub header: Header,
    /// Committed frames, in journal order.
    pub frames: Vec<FieldCells>,
    /// Fields whose frame is committed.
    pub done_fields: BTreeSet<u32>,
    /// Next unused frame id.
    pub next_frame: u64,
    /// Cell records ignored because their frame never committed (crash mid-frame).
    pub orphan_cells: u32,
    /// A `finished` record is present.
    pub finished: bool,
    /// Every sign-off, in order.
    pub sign_offs: Vec<SignOff>,
    /// Every amendment, in order.
    pub amendments: Vec<Amendment>,
    /// `reviewed` records.
    pub reviews: u32,
    /// Bytes of a torn last line that were ignored.
    pub torn_bytes: u64,
    /// Valid records.
    pub records: usize,
    /// Byte length of the valid prefix.
    valid_len: u64,
    /// The last of the sign-offs and amendments is an amendment.
    amended_last: bool,
}

impl State {
    fn new(header: Header) -> Self {
        State {
            header,
            frames: Vec::new(),
            done_fields: BTreeSet::new(),
            next_frame: 0,
            orphan_cells: 0,
            finished: false,
            sign_offs: Vec::new(),
            amendments: Vec::new(),
            reviews: 0,
            torn_bytes: 0,
            records: 0,
            valid_len: 0,
            amended_last: false,
        }
    }

    /// The target from the header (0: no limit).
    pub fn target(&self) -> u32 {
        self.header.target
    }

    /// Committed cells.
    pub fn counted(&self) -> u32 {
        self.frames.iter().map(|f| f.cells.len() as u32).sum()
    }

    /// Committed cells, in journal order.
    pub fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.frames.iter().flat_map(|f| &f.cells)
    }

    /// The last sign-off, while it holds (no amendment since): the report is locked.
    pub fn signed(&self) -> Option<&SignOff> {
        if self.amended_last {
            None
        } else {
            self.sign_offs.last()
        }
    }

    /// The cell of frame id `frame` at `index`, if committed.
    pub fn cell(&self, frame: u64, index: u32) -> Option<&Cell> {
        let f = self.frames.iter().find(|f| f.frame == frame)?;
        f.cells.get(index as usize)
    }

    /// Checks a review record against what the journal holds and applies it.
    fn apply(&mut self, record: &Record) -> Result<(), String> {
        match record {
            Record::Reviewed {
                frame,
                index,
                review,
            } => {
                if let Some(s) = self.signed() {
                    return Err(format!(
                        "the report was signed by {} and is locked: amend it first",
                        s.by
                    ));
                }
                if let Verdict::Class(c) = review.verdict {
                    if c >= self.header.analysis.classes.len() {
                        return Err(format!(
                            "class index {c}, the model has {} classes",
                            self.header.analysis.classes.len()
                        ));
                    }
                }
                let cell = self
                    .frames
                    .iter_mut()
                    .find(|f| f.frame == *frame)
                    .and_then(|f| f.cells.get_mut(*index as usize))
                    .ok_or_else(|| format!("no counted cell {index} in frame {frame}"))?;
                cell.review = Some(review.clone());
                self.reviews += 1;
            }
            Record::Signed { by, unix } => {
                if let Some(s) = self.signed() {
                    return Err(format!("already signed by {}", s.by));
                }
                self.sign_offs.push(SignOff {
                    by: by.clone(),
                    unix: *unix,
                });
                self.amended_last = false;
            }
            Record::Amended { by, reason, unix } => {
                if self.signed().is_none() {
                    return Err("an amendment of a report that is not signed".into());
                }
                self.amendments.push(Amendment {
                    by: by.clone(),
                    reason: reason.clone(),
                    unix: *unix,
                });
                self.amended_last = true;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O error.
    #[error("{path}: journal I/O error")]
    Io {
        /// The journal.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Refusing to overwrite a journal that holds counted cells.
    #[error(
        "{path}: journal already exists; pass --resume to continue it, or choose another file"
    )]
    Exists {
        /// The journal.
        path: PathBuf,
    },
    /// A damaged line with good lines after it: not a torn write.
    #[error("{path}:{line}: journal is corrupt ({reason}); refusing to guess. Keep the file for inspection.")]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A journal of another format version.
    #[error("{path}: journal format version {found}, this leukoscope reads versions {OLDEST_VERSION} to {VERSION}; rebuild its report with the leukoscope that wrote it, or start a new journal")]
    Version {
        /// The journal.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A resumed session is not the session the journal holds.
    #[error(
        "{path}: cannot resume: {reason}; continue it as it was started, or start a new journal"
    )]
    Mismatch {
        /// The journal.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A review, sign-off or amendment that the journal's state does not allow.
    #[error("{path}: {reason}")]
    Refused {
        /// The journal.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A cell's crop could not be encoded.
    #[error("cannot encode a crop as PNG")]
    Encode(#[source] image::ImageError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970, as on a Pi without RTC or network).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    state: State,
}

impl Journal {
    /// Starts a new journal with its header; fails with [`JournalError::Exists`] if the file exists.
    pub fn create(path: &Path, header: Header) -> Result<Self, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    JournalError::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    JournalError::Io {
                        path: path.to_owned(),
                        source: e,
                    }
                }
            })?;
        sync_dir(path)?;
        let start = Record::Start {
            version: VERSION,
            header: header.clone(),
        };
        let mut j = Journal {
            file,
            path: path.to_owned(),
            state: State::new(header),
        };
        j.append(&start)?;
        j.sync()?;
        Ok(j)
    }

    /// Opens an existing journal to continue it: replays it, cuts off a torn last line, and appends a
    /// `resumed` record.
    pub fn resume(path: &Path) -> Result<Self, JournalError> {
        Journal::resume_as(path, None)
    }

    /// [`Journal::resume`], refusing ([`JournalError::Mismatch`]) when the session described by `wanted`
    /// is not the one the journal holds (see [`Header::mismatch`]); nothing is written then.
    pub fn resume_as(path: &Path, wanted: Option<&Header>) -> Result<Self, JournalError> {
        let state = read(path)?;
        if let Some(reason) = wanted.and_then(|w| state.header.mismatch(w)) {
            return Err(JournalError::Mismatch {
                path: path.to_owned(),
                reason,
            });
        }
        if let Some(s) = state.signed() {
            return Err(JournalError::Refused {
                path: path.to_owned(),
                reason: format!(
                    "the count was signed by {} and is locked; it cannot be counted further",
                    s.by
                ),
            });
        }
        let mut j = Journal::open(path, state)?;
        j.append(&Record::Resumed { unix: unix_now() })?;
        j.sync()?;
        Ok(j)
    }

    /// Opens an existing journal to review it (no `resumed` record: no session continues it).
    pub fn review(path: &Path) -> Result<Self, JournalError> {
        let state = read(path)?;
        Journal::open(path, state)
    }

    /// Opens `path`, replayed as `state`, for appending, cutting off a torn last line first.
    fn open(path: &Path, state: State) -> Result<Self, JournalError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        if state.torn_bytes > 0 {
            file.set_len(state.valid_len).map_err(io_err(path))?;
            file.sync_all().map_err(io_err(path))?;
        }
        drop(file);
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            state,
        })
    }

    /// Appends a review record (`reviewed`, `signed`, `amended`) after checking that the journal's state
    /// allows it ([`JournalError::Refused`] and nothing written otherwise), syncs it, and applies it.
    /// When this returns the record is durable.
    pub fn record_review(&mut self, record: Record) -> Result<(), JournalError> {
        if !matches!(
            record,
            Record::Reviewed { .. } | Record::Signed { .. } | Record::Amended { .. }
        ) {
            return Err(JournalError::Refused {
                path: self.path.clone(),
                reason: "not a review record".into(),
            });
        }
        let mut next = self.state.clone();
        next.apply(&record)
            .map_err(|reason| JournalError::Refused {
                path: self.path.clone(),
                reason,
            })?;
        self.append(&record)?;
        self.sync()?;
        next.records = self.state.records;
        next.valid_len = self.state.valid_len;
        self.state = next;
        Ok(())
    }

    /// What the journal holds so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (not yet durable: see [`Journal::sync`]).
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let line = encode_line(record);
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err(&self.path))?;
        self.state.records += 1;
        self.state.valid_len += line.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Allocates the next frame id.
    pub fn next_frame(&mut self) -> u64 {
        let id = self.state.next_frame;
        self.state.next_frame += 1;
        id
    }

    /// Commits a frame: its cells, fsync, its `frame_done`, fsync. When this returns the cells are durable
    /// and may be shown. `clipping`: how much the camera clipped the frame, when it was over-exposed.
    pub fn commit_frame(
        &mut self,
        frame: u64,
        field: u32,
        stage: Option<(i32, i32)>,
        focus: i32,
        cells: &[Cell],
        clipping: Option<Clipping>,
    ) -> Result<(), JournalError> {
        for (index, c) in cells.iter().enumerate() {
            self.append(&Record::cell(frame, field, index as u32, c)?)?;
        }
        self.sync()?;
        self.append(&Record::FrameDone {
            frame,
            field,
            stage,
            focus,
            cells: cells.len() as u32,
            clipped: clipping.map(|c| c.rounded()),
        })?;
        self.sync()?;
        self.state.done_fields.insert(field);
        self.state.frames.push(FieldCells {
            frame,
            field,
            stage,
            focus,
            cells: cells.to_vec(),
            clipping: clipping.map(|c| c.rounded()),
        });
        self.state.next_frame = self.state.next_frame.max(frame + 1);
        Ok(())
    }

    /// Appends and syncs a `paused` record.
    pub fn pause(&mut self, reason: &str) -> Result<(), JournalError> {
        self.append(&Record::Paused {
            reason: reason.to_owned(),
            unix: unix_now(),
        })?;
        self.sync()
    }

    /// Appends and syncs a `finished` record.
    pub fn finish(&mut self) -> Result<(), JournalError> {
        let counted = self.state.counted();
        self.append(&Record::Finished {
            counted,
            unix: unix_now(),
        })?;
        self.sync()?;
        self.state.finished = true;
        Ok(())
    }
}

fn sync_dir(path: &Path) -> Result<(), JournalError> {
    // The new file's directory entry must be durable too, or a power cut can lose the whole file.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all(); // not supported on every filesystem; the file's own fsyncs still hold
    }
    Ok(())
}

const CRC_PREFIX: &str = "{\"crc\":\"";

/// `{"crc":"CCCCCCCC",<the record's fields>}\n`: the record's JSON with its CRC-32 as the first field.
pub fn encode_line(record: &Record) -> String {
    let json = serde_json::to_string(record).expect("records serialise");
    // A record is a non-empty object (it has at least its "type"), so `json` is `{...}`.
    format!(
        "{CRC_PREFIX}{:08x}\",{}\n",
        crc32fast::hash(json.as_bytes()),
        &json[1..]
    )
}

fn decode_line(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let rest = text
        .strip_prefix(CRC_PREFIX)
        .ok_or_else(|| "no checksum".to_string())?;
    let (crc, body) = match (rest.get(..8), rest.get(8..10), rest.get(10..)) {
        (Some(crc), Some("\","), Some(body)) => (crc, body),
        _ => return Err("bad checksum field".into()),
    };
    let want = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum field {crc:?}"))?;
    let json = format!("{{{body}");
    if crc32fast::hash(json.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    serde_json::from_str(&json).map_err(|e| format!("bad record: {e}"))
}

/// Whether a line is a version 1 record (`CCCCCCCC {json}`).
fn is_version_1(line: &[u8]) -> bool {
    line.len() > 10 && line[..8].iter().all(u8::is_ascii_hexdigit) && &line[8..10] == b" {"
}

/// A committed cell back into the one cell type.
fn into_cell(
    bbox: Rect,
    prediction: Option<Prediction>,
    crop_png: Option<String>,
) -> Result<Cell, String> {
    let crop = crop_png
        .map(|t| crop_from_png_base64(&t).ok_or("a crop that does not decode"))
        .transpose()?;
    Ok(Cell {
        crop,
        prediction,
        ..Cell::new(bbox)
    })
}

/// Reads and replays a journal without changing it.
pub fn read(path: &Path) -> Result<State, JournalError> {
    // A device (`/dev/zero`) or a pipe would be read until memory runs out.
    if !std::fs::metadata(path).map_err(io_err(path))?.is_file() {
        return Err(io_err(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut lines: Vec<(usize, &[u8], bool)> = Vec::new(); // (start offset, content, newline-terminated)
    let mut start = 0;
    while start < bytes.len() {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(p) => {
                lines.push((start, &bytes[start..start + p], true));
                start += p + 1;
            }
            None => {
                lines.push((start, &bytes[start..], false));
                start = bytes.len();
            }
        }
    }
    let decoded: Vec<Result<Record, String>> = lines
        .iter()
        .map(|(_, l, complete)| {
            if *complete {
                decode_line(l)
            } else {
                Err("incomplete last line".into())
            }
        })
        .collect();
    let first_bad = decoded.iter().position(|r| r.is_err());
    let valid = first_bad.unwrap_or(decoded.len());
    if let Some(bad) = first_bad {
        if decoded[bad..].iter().any(|r| r.is_ok()) {
            let reason = decoded[bad].as_ref().err().cloned().unwrap_or_default();
            return Err(JournalError::Corrupt {
                path: path.to_owned(),
                line: bad + 1,
                reason,
            });
        }
    }
    if lines.first().is_some_and(|l| is_version_1(l.1)) {
        return Err(JournalError::Version {
            path: path.to_owned(),
            found: 1,
        });
    }
    let valid_len = lines.get(valid).map_or(bytes.len(), |l| l.0) as u64;
    let corrupt = |line: usize, reason: String| JournalError::Corrupt {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut records = decoded.into_iter().take(valid).enumerate();
    let mut st = match records.next() {
        None => return Err(corrupt(1, "empty journal (no start record)".into())),
        Some((_, Err(e))) => return Err(corrupt(1, e)),
        Some((_, Ok(Record::Start { version, header }))) => {
            if !(OLDEST_VERSION..=VERSION).contains(&version) {
                return Err(JournalError::Version {
                    path: path.to_owned(),
                    found: version,
                });
            }
            State::new(header)
        }
        Some(_) => return Err(corrupt(1, "does not begin with a start record".into())),
    };
    st.torn_bytes = bytes.len() as u64 - valid_len;
    st.valid_len = valid_len;
    st.records = valid;
    let mut pending: BTreeMap<u64, Vec<Cell>> = BTreeMap::new();
    for (i, rec) in records {
        let rec = rec.map_err(|e| corrupt(i + 1, e))?;
        match rec {
            Record::Start { .. } => return Err(corrupt(i + 1, "a second start record".into())),
            Record::Cell {
                frame,
                bbox,
                prediction,
                crop_png,
                ..
            } => {
                if st.signed().is_some() {
                    return Err(corrupt(i + 1, "a cell after sign-off".into()));
                }
                st.next_frame = st.next_frame.max(frame + 1);
                let cell = into_cell(bbox, prediction, crop_png).map_err(|e| corrupt(i + 1, e))?;
                pending.entry(frame).or_default().push(cell);
            }
            Record::FrameDone {
                frame,
                field,
                stage,
                focus,
                cells,
                clipped,
            } => {
                let got = pending.remove(&frame).unwrap_or_default();
                if got.len() as u32 != cells {
                    return Err(corrupt(
                        i + 1,
                        format!(
                            "frame {frame} says {cells} cells, journal holds {}",
                            got.len()
                        ),
                    ));
                }
                if !st.done_fields.insert(field) {
                    return Err(corrupt(i + 1, format!("field {field} committed twice")));
                }
                st.next_frame = st.next_frame.max(frame + 1);
                st.frames.push(FieldCells {
                    frame,
                    field,
                    stage,
                    focus,
                    cells: got,
                    clipping: clipped,
                });
            }
            Record::Finished { .. } => st.finished = true,
            Record::Paused { .. } | Record::Resumed { .. } => {}
            review @ (Record::Reviewed { .. } | Record::Signed { .. } | Record::Amended { .. }) => {
                st.apply(&review).map_err(|e| corrupt(i + 1, e))?
            }
        }
    }
    st.orphan_cells = pending.values().map(|v| v.len() as u32).sum();
    Ok(st)
}

/// A crop as base64 PNG.
pub fn crop_to_png_base64(crop: &Frame) -> Result<String, JournalError> {
    let png = crop.to_png().map_err(JournalError::Encode)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// Decodes a journal crop back into a frame.
pub fn crop_from_png_base64(text: &str) -> Option<Frame> {
    let png = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Frame::decode(&png).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::Classes;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leuko-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn analysis() -> Analysis {
        Analysis {
            analyzer: "model".into(),
            model: Some(crate::model::ModelId {
                name: "m".into(),
                sha256: "ab".repeat(32),
            }),
            unidentified_threshold: 0.5,
            classes: Classes::new(["A", "B", "C"]).unwrap(),
        }
    }

    fn header(target: u32) -> Header {
        Header::new(target, "test", analysis())
    }

    fn cell(index: u32) -> Cell {
        let crop = Frame::filled(4, 3, [10, 20, 30]).unwrap();
        let logits = if index % 2 == 0 {
            [0.0, 0.0, 5.0]
        } else {
            [0.0, 0.1, 0.0]
        };
        Cell {
            crop: Some(crop),
            prediction: Some(Prediction::from_logits(&logits, 0.5)),
            ..Cell::new(Rect::new(1, 2, 3, 4 + index))
        }
    }

    fn verdict(frame: u64, index: u32, verdict: Verdict, by: &str) -> Record {
        Record::Reviewed {
            frame,
            index,
            review: Review {
                verdict,
                by: by.into(),
                unix: 5,
            },
        }
    }

    #[test]
    fn reviews_sign_offs_and_amendments_replay_and_lock() {
        let p = tmp("review.journal");
        let mut j = Journal::create(&p, header(0)).unwrap();
        let id = j.next_frame();
        j.commit_frame(id, 0, None, 0, &[cell(0), cell(1), cell(2)], None)
            .unwrap();
        j.finish().unwrap();
        drop(j);
        let mut j = Journal::review(&p).unwrap();
        // Cell 1 is unidentified by the classifier (confidence below 0.5); the reviewer types it.
        assert_eq!(j.state().cell(id, 1).unwrap().class(), None);
        j.record_review(verdict(id, 1, Verdict::Class(0), "alice"))
            .unwrap();
        j.record_review(verdict(id, 2, Verdict::NotWhiteCell, "alice"))
            .unwrap();
        for bad in [
            verdict(id, 3, Verdict::Class(0), "alice"),
            verdict(id + 1, 0, Verdict::Class(0), "alice"),
            verdict(id, 0, Verdict::Class(3), "alice"),
            Record::Amended {
                by: "bob".into(),
                reason: "not signed yet".into(),
                unix: 6,
            },
            Record::Resumed { unix: 6 },
        ] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(matches!(
                j.record_review(bad),
                Err(JournalError::Refused { .. })
            ));
            assert_eq!(std::fs::metadata(&p).unwrap().len(), len, "nothing written");
        }
        j.record_review(Record::Signed {
            by: "alice".into(),
            unix: 7,
        })
        .unwrap();
        let locked = j.record_review(verdict(id, 0, Verdict::Unidentified, "bob"));
        assert!(matches!(locked, Err(JournalError::Refused { .. })));
        drop(j);
        let st = read(&p).unwrap();
        assert_eq!(st.reviews, 2);
        assert_eq!(st.signed().unwrap().by, "alice");
        assert_eq!(st.cell(id, 1).unwrap().class(), Some(0));
        assert!(!st.cell(id, 2).unwrap().is_white_cell());
        let r = crate::report::Report::from_journal(&st);
        assert_eq!(
            r.differential.total(),
            2,
            "the not-a-white-cell is left out"
        );
        assert_eq!(r.differential.count(Some(0)), 1);
        assert!(!r.frames[0].counts(2) && r.frames[0].counts(1));
        assert!(matches!(
            Journal::resume(&p),
            Err(JournalError::Refused { .. })
        ));
        let mut j = Journal::review(&p).unwrap();
        j.record_review(Record::Amended {
            by: "bob".into(),
            reason: "cell 0 is a monocyte".into(),
            unix: 8,
        })
        .unwrap();
        j.record_review(verdict(id, 0, Verdict::Class(2), "bob"))
            .unwrap();
        j.record_review(Record::Signed {
            by: "bob".into(),
            unix: 9,
        })
        .unwrap();
        drop(j);
        let st = read(&p).unwrap();
        assert_eq!((st.sign_offs.len(), st.amendments.len()), (2, 1));
        assert_eq!(st.signed().unwrap().by, "bob");
        assert_eq!(st.cell(id, 0).unwrap().class(), Some(2));
    }

    #[test]
    fn a_clipped_frame_is_journalled_and_replayed_and_older_lines_read_without_it() {
        let p = tmp("clipped.journal");
        let mut j = Journal::create(&p, header(0)).unwrap();
        let clipped = Clipping {
            share: [0.5, 0.25, 0.0],
        };
        j.commit_frame(0, 0, None, 0, &[cell(0)], Some(clipped))
            .unwrap();
        j.commit_frame(1, 1, None, 0, &[cell(0)], None).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text.matches("\"clipped\":[0.5,0.25,0.0]").count(),
            1,
            "{text}"
        );
        let st = read(&p).unwrap();
        assert_eq!(st.frames[0].clipping, Some(clipped));
        assert_eq!(st.frames[1].clipping, None);
        // A journal written before exposure was recorded has no `clipped` key: it reads as not clipped.
        let done = r#"{"type":"frame_done","frame":3,"field":2,"stage":null,"focus":0,"cells":0}"#;
        let r: Record = serde_json::from_str(done).unwrap();
        assert!(matches!(r, Record::FrameDone { clipped: None, .. }));
    }

    #[test]
    fn a_review_after_sign_off_in_the_file_is_corruption() {
        let p = tmp("forged-review.journal");
        let mut j = Journal::create(&p, header(0)).unwrap();
        let id = j.next_frame();
        j.commit_frame(id, 0, None, 0, &[cell(0)], None).unwrap();
        j.append(&Record::Signed {
            by: "alice".into(),
            unix: 1,
        })
        .unwrap();
        j.append(&verdict(id, 0, Verdict::Class(1), "mallory"))
            .unwrap();
        j.append(&Record::Resumed { unix: 2 }).unwrap();
        j.sync().unwrap();
        drop(j);
        assert!(matches!(
            read(&p),
            Err(JournalError::Corrupt { line: 5, .. })
        ));
    }

    #[test]
    fn version_2_journals_are_still_read() {
        let p = tmp("v2.journal");
        let start = Record::Start {
            version: 2,
            header: header(0),
        };
        std::fs::write(&p, encode_line(&start)).unwrap();
        assert!(read(&p).is_ok());
        let v9 = Record::Start {
            version: 9,
            header: header(0),
        };
        std::fs::write(&p, encode_line(&v9)).unwrap();
        assert!(matches!(
            read(&p),
            Err(JournalError::Version { found: 9, .. })
        ));
    }

    #[test]
    fn lines_are_json_with_their_checksum_first() {
        let line = encode_line(&Record::Resumed { unix: 7 });
        assert!(line.starts_with("{\"crc\":\""), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "resumed");
        assert_eq!(v["unix"], 7);
        let crc = v["crc"].as_str().unwrap();
        assert_eq!(
            u32::from_str_radix(crc, 16).unwrap(),
            crc32fast::hash(br#"{"type":"resumed","unix":7}"#)
        );
        assert_eq!(
            decode_line(line.trim_end().as_bytes()).unwrap(),
            Record::Resumed { unix: 7 }
        );
    }

    #[test]
    fn committed_frames_survive_with_their_cells_and_header() {
        let p = tmp("commit.jsonl");
        let mut j = Journal::create(&p, header(10)).unwrap();
        let f = j.next_frame();
        j.commit_frame(f, 0, Some((0, 0)), 5, &[cell(0), cell(1)], None)
            .unwrap();
        let written = j.state().clone();
        drop(j);
        let st = read(&p).unwrap();
        assert_eq!(st, written, "replay gives what was written");
        assert_eq!(st.counted(), 2);
        assert_eq!(st.target(), 10);
        assert_eq!(st.header.analysis, analysis());
        assert_eq!(st.header.software, crate::report::software());
        assert!(st.done_fields.contains(&0));
        assert_eq!(st.frames[0].cells[0].class(), Some(2));
        assert_eq!(st.frames[0].cells[1].class(), None);
        assert_eq!(st.frames[0].cells[1], cell(1));
        assert_eq!(st.frames[0].name(), "field 0 at (0, 0)");
        assert!(matches!(
            Journal::create(&p, header(10)).unwrap_err(),
            JournalError::Exists { .. }
        ));
    }

    #[test]
    fn resume_refuses_another_model_slide_or_analyzer() {
        let p = tmp("mismatch.jsonl");
        drop(Journal::create(&p, header(10)).unwrap());
        let before = std::fs::read(&p).unwrap();
        let mut other_model = header(10);
        other_model.analysis.model.as_mut().unwrap().sha256 = "cd".repeat(32);
        let mut other_slide = header(10);
        other_slide.source = "elsewhere".into();
        let mut blobs = header(10);
        blobs.analysis.analyzer = "blobs".into();
        for (wanted, word) in [
            (other_model, "model"),
            (other_slide, "elsewhere"),
            (blobs, "blobs"),
        ] {
            let err = Journal::resume_as(&p, Some(&wanted)).unwrap_err();
            assert!(matches!(err, JournalError::Mismatch { .. }), "{err}");
            assert!(err.to_string().contains(word), "{err}");
        }
        assert_eq!(std::fs::read(&p).unwrap(), before, "nothing written");
        // Another target is no mismatch: the journal's is kept.
        let j = Journal::resume_as(&p, Some(&header(50))).unwrap();
        assert_eq!(j.state().target(), 10);
    }

    /// Regression guard for the crash window between a frame's cells and its `frame_done`: those cells
    /// must not count, and the frame id must not be reused.
    #[test]
    fn cells_without_frame_done_are_orphans_and_ids_move_on() {
        let p = tmp("orphan.jsonl");
        let mut j = Journal::create(&p, header(10)).unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)], None).unwrap();
        j.append(&Record::cell(1, 1, 0, &cell(3)).unwrap()).unwrap();
        j.sync().unwrap();
        drop(j);
        let mut j = Journal::resume(&p).unwrap();
        assert_eq!(j.state().counted(), 1);
        assert_eq!(j.state().orphan_cells, 1);
        assert!(!j.state().done_fields.contains(&1));
        assert_eq!(j.next_frame(), 2);
    }

    #[test]
    fn torn_last_line_is_ignored_then_cut_on_resume() {
        let p = tmp("torn.jsonl");
        let mut j = Journal::create(&p, header(10)).unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)], None).unwrap();
        drop(j);
        let good_len = std::fs::metadata(&p).unwrap().len();
        let line = encode_line(&Record::FrameDone {
            frame: 1,
            field: 1,
            stage: None,
            focus: 0,
            cells: 0,
            clipped: None,
        });
        // Half a line, then a full-length line with a flipped byte (power cut with garbage).
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        drop(f);
        let st = read(&p).unwrap();
        assert_eq!(st.counted(), 1);
        assert!(st.torn_bytes > 0);
        let j = Journal::resume(&p).unwrap();
        drop(j);
        let st = read(&p).unwrap();
        assert_eq!(st.torn_bytes, 0);
        assert!(std::fs::metadata(&p).unwrap().len() > good_len);

        let mut bad = line.into_bytes();
        bad[30] ^= 1;
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&bad).unwrap();
        drop(f);
        assert_eq!(read(&p).unwrap().counted(), 1);
    }

    #[test]
    fn damage_in_the_middle_is_corruption_with_a_line_number() {
        let p = tmp("corrupt.jsonl");
        let mut j = Journal::create(&p, header(10)).unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)], None).unwrap();
        j.commit_frame(1, 1, None, 0, &[cell(0)], None).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&p).unwrap();
        let at = text.find("\"frame\":0").unwrap();
        text.replace_range(at..at + 9, "\"frame\":7");
        std::fs::write(&p, text).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_version_1_journal_is_a_clear_error() {
        let p = tmp("v1.jsonl");
        let json = r#"{"type":"start","version":1,"target":10,"unix":0,"source":"sim"}"#;
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        std::fs::write(&p, line).unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(err, JournalError::Version { found: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("version 1"), "{err}");
    }
}
