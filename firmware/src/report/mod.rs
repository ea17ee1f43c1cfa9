//! Count reports: what a count found, as JSON, CSV (one row per cell) or one self-contained HTML page with
//! a gallery of each class's crops; the same for `leukoscope count` over files, for a microscope session
//! (`run`) and for a session rebuilt from its journal (`report --journal`).
//!
//! A [`Report`] is filled frame by frame ([`Report::add_frame`], [`Report::add_error`]) or built from a
//! journal ([`Report::from_journal`]); it owns the [`Differential`] and applies the [`StopRule`]: cells
//! found after the target was reached are listed as not counted rather than dropped, so no data is lost.
//! Every report names what made it ([`Provenance`]: software, date, inputs; [`Analysis`]: model, sha256,
//! classes, threshold). Writers live in [`json`], [`csv`] and [`html`]. This module formats; it never
//! decides a cell's type.

pub mod csv;
pub mod fhir;
pub mod html;
pub mod json;

use std::path::Path;

use crate::cell::Cell;
use crate::classes::Classes;
use crate::count::{Differential, Flag, StopRule, UNIDENTIFIED};
use crate::exposure::Clipping;
use crate::journal::State;
pub use crate::pipeline::Analysis;
use crate::pipeline::FrameResult;

/// Crops kept per class for the HTML gallery.
pub const GALLERY_PER_CLASS: usize = 48;

/// One frame in a report: where it came from and its cells, in order; see [`FrameCells::counts`].
#[derive(Clone, Debug, PartialEq)]
pub struct FrameCells {
    /// The file, or the session's field (`field 3`).
    pub source: String,
    /// Its cells. Only the gallery's cells keep their crop.
    pub cells: Vec<Cell>,
    /// How many of `cells` (the first ones) came before the target was reached: the rest were not
    /// considered. Of these, all count but those a reviewer marked not a white cell.
    pub counted: usize,
    /// More cells than the per-frame capacity were found.
    pub overflow: bool,
    /// Why the frame could not be analysed (then `cells` is empty).
    pub error: Option<String>,
    /// How much the camera clipped, when the frame was over-exposed (not recorded in a journal).
    pub clipping: Option<Clipping>,
}

impl FrameCells {
    /// Whether the frame's `index`-th cell is in the differential.
    pub fn counts(&self, index: usize) -> bool {
        index < self.counted && self.cells.get(index).is_some_and(Cell::is_white_cell)
    }
}

/// What made a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The software that typed the cells, e.g. `leukoscope 0.1.0`.
    pub software: String,
    /// When the count started, ISO 8601 UTC (for a session: the journal's start).
    pub date: String,
    /// What was counted: the files and folders given, or the session's slide or board.
    pub inputs: Vec<String>,
}

/// This build's name and version, as reports and journals record it.
pub fn software() -> String {
    format!("leukoscope {}", env!("CARGO_PKG_VERSION"))
}

/// Seconds since the Unix epoch as ISO 8601 UTC (`2026-12-02T03:27:59Z`).
pub fn iso_date(unix: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

impl Provenance {
    /// This build, now, these inputs.
    pub fn now<S: ToString>(inputs: &[S]) -> Self {
        Provenance {
            software: software(),
            date: iso_date(crate::journal::unix_now()),
            inputs: inputs.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A crop that could not be encoded for the HTML gallery.
#[derive(Debug, thiserror::Error)]
#[error("{frame}: cell {cell}: cannot encode its crop as PNG")]
pub struct CropError {
    /// The frame's source.
    pub frame: String,
    /// The cell's index in the frame.
    pub cell: usize,
    /// The encoder's error.
    #[source]
    pub source: image::ImageError,
}

/// A whole count.
#[derive(Clone, Debug)]
pub struct Report {
    /// What made it.
    pub provenance: Provenance,
    /// Who typed the cells (model, classes, threshold).
    pub analysis: Analysis,
    /// Frames in the order analysed.
    pub frames: Vec<FrameCells>,
    /// The differential of counted cells.
    pub differential: Differential,
    /// The stop rule.
    pub stop: StopRule,
    /// Gallery cells `(frame, cell)` per class in class order, then unidentified.
    gallery: Vec<Vec<(usize, usize)>>,
}

/// A gallery cell: its frame's source, its index in the frame, the cell.
pub type GalleryCell<'a> = (&'a str, usize, &'a Cell);

/// Rounds to 4 decimals for reports.
pub fn round4(v: f32) -> f32 {
    (v * 10_000.0).round() / 10_000.0
}

impl Report {
    /// An empty report.
    pub fn new(analysis: Analysis, stop: StopRule, provenance: Provenance) -> Self {
        let n = analysis.classes.len();
        Report {
            provenance,
            differential: Differential::new(analysis.classes.clone()),
            analysis,
            frames: Vec::new(),
            stop,
            gallery: vec![Vec::new(); n + 1],
        }
    }

    /// The report of a session, from its journal: the same report the session printed when it ended.
    pub fn from_journal(state: &State) -> Self {
        let h = &state.header;
        let provenance = Provenance {
            software: h.software.clone(),
            date: iso_date(h.unix),
            inputs: vec![h.source.clone()],
        };
        let stop = StopRule { target: h.target };
        let mut r = Report::new(h.analysis.clone(), stop, provenance);
        for f in &state.frames {
            r.push_frame(f.name(), f.cells.clone(), false, f.clipping);
        }
        r
    }

    /// The classes counted.
    pub fn classes(&self) -> &Classes {
        &self.analysis.classes
    }

    /// Whether the target is reached.
    pub fn done(&self) -> bool {
        self.stop.reached(&self.differential)
    }

    /// Adds a frame's cells, counting each until the target is reached. Returns whether it is reached.
    pub fn add_frame(&mut self, path: &Path, result: FrameResult) -> bool {
        self.push_frame(
            path.display().to_string(),
            result.cells,
            result.overflow,
            result.clipping,
        );
        self.done()
    }

    fn push_frame(
        &mut self,
        source: String,
        mut cells: Vec<Cell>,
        overflow: bool,
        clipping: Option<Clipping>,
    ) {
        let frame = self.frames.len();
        let mut counted = 0;
        for (i, cell) in cells.iter_mut().enumerate() {
            let keep = !self.done();
            if keep {
                self.differential.add(cell);
                counted += 1;
                if !cell.is_white_cell() {
                    cell.crop = None;
                    continue;
                }
                let slot = cell
                    .class()
                    .filter(|&c| c < self.classes().len())
                    .unwrap_or(self.classes().len());
                if self.gallery[slot].len() < GALLERY_PER_CLASS && cell.crop.is_some() {
                    self.gallery[slot].push((frame, i));
                    continue;
                }
            }
            // Only the gallery's crops are kept: a long count must not hold every crop in memory.
            cell.crop = None;
        }
        self.frames.push(FrameCells {
            source,
            cells,
            counted,
            overflow,
            error: None,
            clipping,
        });
    }

    /// Records a frame that could not be analysed.
    pub fn add_error(&mut self, path: &Path, message: &str) {
        self.frames.push(FrameCells {
            source: path.display().to_string(),
            cells: Vec::new(),
            counted: 0,
            overflow: false,
            error: Some(message.to_string()),
            clipping: None,
        });
    }

    /// Frames that failed.
    pub fn errors(&self) -> usize {
        self.frames.iter().filter(|f| f.error.is_some()).count()
    }

    /// Frames the camera over-exposed ([`crate::exposure`]).
    pub fn over_exposed(&self) -> usize {
        self.frames.iter().filter(|f| f.clipping.is_some()).count()
    }

    /// `3 of 12 frames over-exposed (the worst: …)`, when any was.
    pub fn exposure_warning(&self) -> Option<String> {
        let worst = self
            .frames
            .iter()
            .filter_map(|f| f.clipping.map(|c| (f, c)))
            .max_by(|a, b| a.1.worst().total_cmp(&b.1.worst()))?;
        Some(format!(
            "{} of {} frames {}; the worst is {}",
            self.over_exposed(),
            self.frames.len(),
            worst.1,
            worst.0.source
        ))
    }

    /// Flags against the adult reference ranges.
    pub fn flags(&self) -> Vec<Flag> {
        self.differential.flags()
    }

    /// The gallery: per class in class order, then unidentified, the name and the cells shown, each with
    /// its frame's source and its index in the frame.
    pub fn gallery(&self) -> impl Iterator<Item = (&str, Vec<GalleryCell<'_>>)> + '_ {
        let names = self.classes().iter().chain([UNIDENTIFIED]);
        names.zip(&self.gallery).map(move |(name, items)| {
            let cells = items
                .iter()
                .map(|&(f, c)| {
                    let frame = &self.frames[f];
                    (frame.source.as_str(), c, &frame.cells[c])
                })
                .collect();
            (name, cells)
        })
    }

    /// `100 cells counted, 79 typed` and the target: `target 100 reached`, `target 100 not reached` or
    /// `no target`.
    pub fn headline(&self) -> String {
        let d = &self.differential;
        let target = if !self.stop.limited() {
            "no target (every cell counted)".to_string()
        } else if self.done() {
            format!("{} reached", self.stop)
        } else {
            format!("{} not reached", self.stop)
        };
        format!(
            "{} cells counted, {} typed, in {} frames ({} failed); {target}",
            d.total(),
            d.identified(),
            self.frames.len(),
            self.errors()
        )
    }

    /// One line naming what made the report: model and sha256, software, date, inputs.
    pub fn made_by(&self) -> String {
        let model = self.analysis.model.as_ref().map_or_else(
            || format!("analyzer {}", self.analysis.analyzer),
            ToString::to_string,
        );
        format!(
            "model {model}; {}; {}; inputs: {}",
            self.provenance.software,
            self.provenance.date,
            self.provenance.inputs.join(", ")
        )
    }

    /// A short plain-text summary (counts, percentages, flags, what made it).
    pub fn summary(&self) -> String {
        let d = &self.differential;
        let pct = d.percentages();
        let mut s = self.headline() + "\n";
        for (i, name) in self.classes().iter().enumerate() {
            s += &format!(
                "  {:<12} {:>4}  {:>5.1} %\n",
                name,
                d.count(Some(i)),
                pct[i]
            );
        }
        s += &format!("  {:<12} {:>4}\n", UNIDENTIFIED, d.unidentified());
        for f in self.flags() {
            s += &format!("  flag: {f}\n");
        }
        if let Some(w) = self.exposure_warning() {
            s += &format!("  warning: {w}\n");
        }
        s += &format!("  {}\n", self.made_by());
        s
    }
}

#[cfg(test)]
mod tests;
