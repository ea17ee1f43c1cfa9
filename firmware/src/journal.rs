//! The count journal: an append-only, fsync'd record of every counted cell, so a power cut or `kill -9`
//! loses nothing and a resumed session counts nothing twice.
//!
//! **Format**: one record per line, `CCCCCCCC {json}\n`, where `CCCCCCCC` is the CRC-32 (IEEE, written
//! here, no dependency) of the JSON bytes in lower-case hex. Records ([`Record`]): a `start` header, `cell`
//! (with its crop as base64 PNG), `frame_done`, `paused`, `resumed`, `finished`.
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

use crate::frame::Frame;
use crate::preprocess::Class;

/// Journal format version written in the `start` record.
pub const VERSION: u32 = 1;

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The header: first line of every journal.
    Start {
        /// Format version.
        version: u32,
        /// Cells to count.
        target: u32,
        /// Seconds since the Unix epoch.
        unix: u64,
        /// What is being counted (board, slide, model).
        source: String,
    },
    /// A counted cell; it counts once its frame's `frame_done` follows.
    Cell {
        /// Frame id (unique within the journal).
        frame: u64,
        /// Field index (position in the stage's visiting order, or the n-th field the user moved to).
        field: u32,
        /// Position within the frame's list of cells.
        index: u32,
        /// `[x0, y0, x1, y1]` in frame pixels, as the analyzer gave it.
        bbox: [u32; 4],
        /// Type, or `null` for unidentified.
        class: Option<Class>,
        /// Classifier confidence.
        confidence: f32,
        /// The crop as base64 PNG.
        crop_png: String,
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
    },
    /// The session stopped waiting for a person (camera gone, stalled motor).
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
    /// The target was reached (or the slide exhausted).
    Finished {
        /// Cells counted.
        counted: u32,
        /// Seconds since the Unix epoch.
        unix: u64,
    },
}

/// A committed cell, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct CellEntry {
    /// Frame id.
    pub frame: u64,
    /// Field index.
    pub field: u32,
    /// Index within the frame.
    pub index: u32,
    /// Bounding box.
    pub bbox: [u32; 4],
    /// Type, or `None` for unidentified.
    pub class: Option<Class>,
    /// Confidence.
    pub confidence: f32,
    /// Base64 PNG crop.
    pub crop_png: String,
}

/// Everything a journal says, replayed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Target from the header.
    pub target: u32,
    /// What the header says is being counted.
    pub source: String,
    /// Committed cells, in journal order.
    pub cells: Vec<CellEntry>,
    /// Fields whose frame is committed.
    pub done_fields: BTreeSet<u32>,
    /// Next unused frame id.
    pub next_frame: u64,
    /// Cell records ignored because their frame never committed (crash mid-frame).
    pub orphan_cells: u32,
    /// A `finished` record is present.
    pub finished: bool,
    /// Bytes of a torn last line that were ignored.
    pub torn_bytes: u64,
    /// Valid records.
    pub records: usize,
    /// Byte length of the valid prefix.
    valid_len: u64,
}

impl State {
    /// Committed cells.
    pub fn counted(&self) -> u32 {
        self.cells.len() as u32
    }
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O error.
    #[error("{path}: journal I/O error: {source}")]
    Io {
        /// The journal.
        path: PathBuf,
        /// The error.
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
    /// A cell's crop could not be encoded.
    #[error("cannot encode crop as PNG: {0}")]
    Encode(String),
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
    /// Starts a new journal; fails with [`JournalError::Exists`] if the file exists.
    pub fn create(path: &Path, target: u32, source: &str) -> Result<Self, JournalError> {
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
        let mut j = Journal {
            file,
            path: path.to_owned(),
            state: State {
                target,
                source: source.to_owned(),
                ..State::default()
            },
        };
        j.append(&Record::Start {
            version: VERSION,
            target,
            unix: unix_now(),
            source: source.to_owned(),
        })?;
        j.sync()?;
        Ok(j)
    }

    /// Opens an existing journal to continue it: replays it, cuts off a torn last line, and appends a
    /// `resumed` record.
    pub fn resume(path: &Path) -> Result<Self, JournalError> {
        let state = read(path)?;
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
        let mut j = Journal {
            file,
            path: path.to_owned(),
            state,
        };
        j.append(&Record::Resumed { unix: unix_now() })?;
        j.sync()?;
        Ok(j)
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
    /// and may be shown.
    pub fn commit_frame(
        &mut self,
        frame: u64,
        field: u32,
        stage: Option<(i32, i32)>,
        focus: i32,
        cells: &[CellEntry],
    ) -> Result<(), JournalError> {
        for c in cells {
            self.append(&Record::Cell {
                frame,
                field,
                index: c.index,
                bbox: c.bbox,
                class: c.class,
                confidence: c.confidence,
                crop_png: c.crop_png.clone(),
            })?;
        }
        self.sync()?;
        self.append(&Record::FrameDone {
            frame,
            field,
            stage,
            focus,
            cells: cells.len() as u32,
        })?;
        self.sync()?;
        self.state.done_fields.insert(field);
        self.state.cells.extend(cells.iter().cloned().map(|mut c| {
            c.frame = frame;
            c.field = field;
            c
        }));
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

/// `CCCCCCCC {json}\n`.
pub fn encode_line(record: &Record) -> String {
    let json = serde_json::to_string(record).expect("records serialise");
    format!("{:08x} {json}\n", crc32(json.as_bytes()))
}

fn decode_line(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let (crc, json) = text
        .split_once(' ')
        .ok_or_else(|| "no checksum".to_string())?;
    let want = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum field {crc:?}"))?;
    if crc.len() != 8 || crc32(json.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    serde_json::from_str(json).map_err(|e| format!("bad record: {e}"))
}

/// Reads and replays a journal without changing it.
pub fn read(path: &Path) -> Result<State, JournalError> {
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
    let valid_len = lines.get(valid).map_or(bytes.len(), |l| l.0) as u64;
    let mut st = State {
        torn_bytes: bytes.len() as u64 - valid_len,
        valid_len,
        records: valid,
        ..State::default()
    };
    let corrupt = |line: usize, reason: String| JournalError::Corrupt {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut pending: BTreeMap<u64, Vec<CellEntry>> = BTreeMap::new();
    for (i, rec) in decoded.into_iter().take(valid).enumerate() {
        let rec = rec.map_err(|e| corrupt(i + 1, e))?;
        match rec {
            Record::Start {
                version,
                target,
                source,
                ..
            } => {
                if i != 0 {
                    return Err(corrupt(i + 1, "a second start record".into()));
                }
                if version != VERSION {
                    return Err(corrupt(
                        i + 1,
                        format!("journal version {version}, expected {VERSION}"),
                    ));
                }
                st.target = target;
                st.source = source;
            }
            _ if i == 0 => return Err(corrupt(1, "does not begin with a start record".into())),
            Record::Cell {
                frame,
                field,
                index,
                bbox,
                class,
                confidence,
                crop_png,
            } => {
                st.next_frame = st.next_frame.max(frame + 1);
                pending.entry(frame).or_default().push(CellEntry {
                    frame,
                    field,
                    index,
                    bbox,
                    class,
                    confidence,
                    crop_png,
                });
            }
            Record::FrameDone {
                frame,
                field,
                cells,
                ..
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
                st.cells.extend(got);
            }
            Record::Finished { .. } => st.finished = true,
            Record::Paused { .. } | Record::Resumed { .. } => {}
        }
    }
    if valid == 0 {
        return Err(corrupt(1, "empty journal (no start record)".into()));
    }
    st.orphan_cells = pending.values().map(|v| v.len() as u32).sum();
    Ok(st)
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and PNG use), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on a bad character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A crop as base64 PNG.
pub fn crop_to_png_base64(crop: &Frame) -> Result<String, JournalError> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            crop.data(),
            crop.width(),
            crop.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| JournalError::Encode(e.to_string()))?;
    Ok(base64_encode(&png))
}

/// Decodes a journal crop back into a frame.
pub fn crop_from_png_base64(text: &str) -> Option<Frame> {
    Frame::decode(&base64_decode(text)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leuko-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn cell(index: u32) -> CellEntry {
        let crop = Frame::filled(4, 3, [10, 20, 30]).unwrap();
        CellEntry {
            frame: 0,
            field: 0,
            index,
            bbox: [1, 2, 3, 4],
            class: if index % 2 == 0 {
                Some(Class::Monocyte)
            } else {
                None
            },
            confidence: 0.5,
            crop_png: crop_to_png_base64(&crop).unwrap(),
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..20u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert!(base64_decode("not*base64").is_none());
    }

    #[test]
    fn committed_frames_survive_and_crops_decode() {
        let p = tmp("commit.jsonl");
        let mut j = Journal::create(&p, 10, "test").unwrap();
        let f = j.next_frame();
        j.commit_frame(f, 0, Some((0, 0)), 5, &[cell(0), cell(1)])
            .unwrap();
        drop(j);
        let st = read(&p).unwrap();
        assert_eq!(st.counted(), 2);
        assert_eq!(st.target, 10);
        assert!(st.done_fields.contains(&0));
        assert_eq!(st.cells[0].class, Some(Class::Monocyte));
        let crop = crop_from_png_base64(&st.cells[1].crop_png).unwrap();
        assert_eq!(crop.pixel(3, 2), [10, 20, 30]);
        assert!(matches!(
            Journal::create(&p, 10, "x").unwrap_err(),
            JournalError::Exists { .. }
        ));
    }

    /// Regression guard for the crash window between a frame's cells and its `frame_done`: those cells
    /// must not count, and the frame id must not be reused.
    #[test]
    fn cells_without_frame_done_are_orphans_and_ids_move_on() {
        let p = tmp("orphan.jsonl");
        let mut j = Journal::create(&p, 10, "test").unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)]).unwrap();
        j.append(&Record::Cell {
            frame: 1,
            field: 1,
            index: 0,
            bbox: [0; 4],
            class: None,
            confidence: 0.1,
            crop_png: String::new(),
        })
        .unwrap();
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
        let mut j = Journal::create(&p, 10, "test").unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)]).unwrap();
        drop(j);
        let good_len = std::fs::metadata(&p).unwrap().len();
        let line = encode_line(&Record::FrameDone {
            frame: 1,
            field: 1,
            stage: None,
            focus: 0,
            cells: 0,
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
        bad[20] ^= 1;
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&bad).unwrap();
        drop(f);
        assert_eq!(read(&p).unwrap().counted(), 1);
    }

    #[test]
    fn damage_in_the_middle_is_corruption_with_a_line_number() {
        let p = tmp("corrupt.jsonl");
        let mut j = Journal::create(&p, 10, "test").unwrap();
        j.commit_frame(0, 0, None, 0, &[cell(0)]).unwrap();
        j.commit_frame(1, 1, None, 0, &[cell(0)]).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&p).unwrap();
        let at = text.find("\"frame\":0").unwrap();
        text.replace_range(at..at + 9, "\"frame\":7");
        std::fs::write(&p, text).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("checksum"), "{err}");
    }
}
