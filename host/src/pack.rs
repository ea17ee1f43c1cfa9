//! A compact, self-contained copy of TRAIN for a remote GPU: the device's own `u8` model inputs (already
//! scaled, located, cropped and resized by [`leukoscope::preprocess`]), each with its class, file name and
//! source smear, so the smear-grouped split on the far side is the same as here.
//!
//! The lent GPU machine takes at most 64 MiB of files, and the 9,957 TRAIN inputs are 489 MB raw, so each
//! input is stored as a JPEG of the 128×128 crop. That is lossy: [`write()`] measures and returns the mean and
//! worst absolute pixel error against the exact inputs, and the model chosen from a packed run is evaluated
//! again here on the exact pixels (`leukoscope-train eval`) before its numbers are reported.
//!
//! Layout (little-endian): the magic `LKPACK1\n`, a `u32` record count, then per record a `u8` class index,
//! a `u16`-length file name, a `u16`-length source smear (empty when unknown) and a `u32`-length JPEG.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use leukoscope::preprocess;

use crate::data::{self, Class, DataError, Inputs, Sample, CLASSES};

const MAGIC: &[u8; 8] = b"LKPACK1\n";

/// The split a pack holds.
pub const SPLIT: &str = "TRAIN";

/// One packed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The label.
    pub class: Class,
    /// File name within the class folder.
    pub file: String,
    /// Source smear (empty when `source_smears.csv` has none).
    pub smear: String,
    /// JPEG of the `INPUT × INPUT` model input.
    pub jpeg: Vec<u8>,
}

/// A pack read back into memory.
#[derive(Clone, Debug, Default)]
pub struct Pack {
    /// Where it was read from (named in errors and in the samples' paths).
    pub path: PathBuf,
    /// The records, in the order of [`data::list`].
    pub records: Vec<Record>,
}

/// What [`write()`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct PackStats {
    /// Records written.
    pub images: usize,
    /// Files that could not be decoded (named, skipped).
    pub skipped: Vec<(PathBuf, String)>,
    /// Bytes of the pack.
    pub bytes: u64,
    /// Mean absolute error of the decoded JPEGs against the exact inputs, in 0–255 levels.
    pub mean_abs_error: f64,
    /// Worst mean absolute error of one image.
    pub worst_image_error: f64,
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Pack {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn encode(px: &[u8], quality: u8) -> Vec<u8> {
    let side = preprocess::INPUT;
    let mut out = Vec::with_capacity(8 << 10);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(px, side, side, image::ExtendedColorType::Rgb8)
        .expect("encoding an in-memory RGB buffer of the right size cannot fail");
    out
}

fn decode(jpeg: &[u8]) -> Result<Vec<u8>, String> {
    let side = preprocess::INPUT;
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| e.to_string())?
        .into_rgb8();
    if img.width() != side || img.height() != side {
        return Err(format!(
            "{}×{} image, expected {side}×{side}",
            img.width(),
            img.height()
        ));
    }
    Ok(img.into_raw())
}

/// Packs TRAIN under `root` into `out` as JPEGs of quality `quality` (1–100), on `threads` threads.
pub fn write(root: &Path, out: &Path, quality: u8, threads: usize) -> Result<PackStats, DataError> {
    let samples = data::list(root, SPLIT)?;
    let smears = data::source_smears(root)?;
    let inputs = data::load_inputs(&samples, threads);
    let n = preprocess::INPUT as usize * preprocess::INPUT as usize * 3;
    let io = |source| DataError::Io {
        path: out.to_owned(),
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    file.write_all(MAGIC).map_err(io)?;
    file.write_all(&(inputs.len() as u32).to_le_bytes())
        .map_err(io)?;
    let (mut err_sum, mut worst) = (0f64, 0f64);
    for (k, &i) in inputs.index.iter().enumerate() {
        let s = &samples[i];
        let px = &inputs.pixels[k * n..(k + 1) * n];
        let jpeg = encode(px, quality.clamp(1, 100));
        let back = decode(&jpeg).map_err(|e| bad(out, e))?;
        let err = back
            .iter()
            .zip(px)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / n as f64;
        err_sum += err;
        worst = worst.max(err);
        let smear = smears
            .get(&(s.split.clone(), s.class, s.file.clone()))
            .cloned()
            .unwrap_or_default();
        file.write_all(&[s.class.index() as u8]).map_err(io)?;
        for text in [&s.file, &smear] {
            file.write_all(&(text.len() as u16).to_le_bytes())
                .map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
        }
        file.write_all(&(jpeg.len() as u32).to_le_bytes())
            .map_err(io)?;
        file.write_all(&jpeg).map_err(io)?;
    }
    file.flush().map_err(io)?;
    drop(file);
    let bytes = std::fs::metadata(out).map_err(io)?.len();
    let images = inputs.len();
    Ok(PackStats {
        images,
        skipped: inputs.skipped,
        bytes,
        mean_abs_error: err_sum / images.max(1) as f64,
        worst_image_error: worst,
    })
}

struct Reader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DataError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| {
            bad(
                self.path,
                format!("truncated at byte {} (reading {what})", self.at),
            )
        })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn text(&mut self, what: &str) -> Result<String, DataError> {
        let len = u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")) as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            bad(
                self.path,
                format!("{what} at byte {} is not UTF-8", self.at),
            )
        })
    }
}

/// Reads a pack written by [`write()`]; a wrong magic, a truncated file or an unknown class is one error naming
/// the file.
pub fn read(path: &Path) -> Result<Pack, DataError> {
    let buf = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut r = Reader {
        path,
        buf: &buf,
        at: 0,
    };
    if r.take(MAGIC.len(), "the header")? != MAGIC {
        return Err(bad(path, "not a leukoscope pack (bad magic)"));
    }
    let count = u32::from_le_bytes(r.take(4, "the count")?.try_into().expect("4 bytes")) as usize;
    let mut records = Vec::with_capacity(count.min(1 << 20));
    for k in 0..count {
        let c = r.take(1, "a class")?[0] as usize;
        let class = *CLASSES
            .get(c)
            .ok_or_else(|| bad(path, format!("record {k}: class index {c} out of range")))?;
        let file = r.text("a file name")?;
        let smear = r.text("a smear name")?;
        let len = u32::from_le_bytes(r.take(4, "a JPEG length")?.try_into().expect("4 bytes"));
        let jpeg = r.take(len as usize, "a JPEG")?.to_vec();
        records.push(Record {
            class,
            file,
            smear,
            jpeg,
        });
    }
    if r.at != buf.len() {
        return Err(bad(
            path,
            format!("{} bytes after the last record", buf.len() - r.at),
        ));
    }
    Ok(Pack {
        path: path.to_owned(),
        records,
    })
}

impl Pack {
    /// The records as samples of [`SPLIT`], each with the path `<pack>#<file>`.
    pub fn samples(&self) -> Vec<Sample> {
        self.records
            .iter()
            .map(|r| Sample {
                path: PathBuf::from(format!("{}#{}", self.path.display(), r.file)),
                split: SPLIT.to_string(),
                class: r.class,
                file: r.file.clone(),
            })
            .collect()
    }

    /// `(split, class, file)` → source smear, as [`data::source_smears`] gives for the folder.
    pub fn smears(&self) -> HashMap<(String, Class, String), String> {
        self.records
            .iter()
            .filter(|r| !r.smear.is_empty())
            .map(|r| {
                (
                    (SPLIT.to_string(), r.class, r.file.clone()),
                    r.smear.clone(),
                )
            })
            .collect()
    }

    /// Decodes the inputs of `samples` (from [`Pack::samples`]) on `threads` threads; a record that fails to
    /// decode is skipped with a warning naming it, as [`data::load_inputs`] does for files.
    pub fn load_inputs(&self, samples: &[Sample], threads: usize) -> Inputs {
        let by_key: HashMap<(Class, &str), &Record> = self
            .records
            .iter()
            .map(|r| ((r.class, r.file.as_str()), r))
            .collect();
        let decode_one = |s: &Sample| -> Result<Vec<u8>, String> {
            let rec = by_key
                .get(&(s.class, s.file.as_str()))
                .ok_or_else(|| format!("{}: not in the pack", s.path.display()))?;
            decode(&rec.jpeg).map_err(|e| format!("{}: {e}", s.path.display()))
        };
        data::load_with(samples, threads, decode_one)
    }
}

/// Checks that a frame-sized buffer round-trips; used by tests.
#[doc(hidden)]
pub fn roundtrip_error(px: &[u8], quality: u8) -> f64 {
    let back = decode(&encode(px, quality)).expect("own JPEG decodes");
    back.iter()
        .zip(px)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / px.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leuko-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn fake_input(seed: u32) -> Vec<u8> {
        let side = preprocess::INPUT;
        (0..side * side * 3)
            .map(|i| {
                let (x, y) = ((i / 3) % side, (i / 3) / side);
                (128.0 + 60.0 * ((x + seed) as f64 / 9.0).sin() * ((y as f64) / 13.0).cos()) as u8
            })
            .collect()
    }

    fn write_records(path: &Path, records: &[Record]) {
        let mut b = MAGIC.to_vec();
        b.extend((records.len() as u32).to_le_bytes());
        for r in records {
            b.push(r.class.index() as u8);
            for t in [&r.file, &r.smear] {
                b.extend((t.len() as u16).to_le_bytes());
                b.extend(t.as_bytes());
            }
            b.extend((r.jpeg.len() as u32).to_le_bytes());
            b.extend(&r.jpeg);
        }
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn records_round_trip_with_their_smears() {
        let path = tmp("ok.pack");
        let recs: Vec<Record> = (0..4)
            .map(|i| Record {
                class: CLASSES[i],
                file: format!("_{i}_1.jpeg"),
                smear: if i == 3 {
                    String::new()
                } else {
                    format!("BloodImage_{i:05}.jpg")
                },
                jpeg: encode(&fake_input(i as u32), 92),
            })
            .collect();
        write_records(&path, &recs);
        let pack = read(&path).unwrap();
        assert_eq!(pack.records, recs);
        let samples = pack.samples();
        assert_eq!(pack.smears().len(), 3, "unknown smears are left out");
        let inputs = pack.load_inputs(&samples[1..], 2);
        assert_eq!(inputs.labels, vec![1, 2, 3]);
        assert_eq!(inputs.index, vec![0, 1, 2]);
        let n = (preprocess::INPUT * preprocess::INPUT * 3) as usize;
        assert_eq!(inputs.pixels.len(), 3 * n);
        let err = roundtrip_error(&fake_input(1), 92);
        assert!(err < 3.0, "JPEG 92 of a smooth image: mean error {err}");
    }

    #[test]
    fn bad_packs_are_one_error_naming_the_file() {
        let path = tmp("bad.pack");
        std::fs::write(&path, b"PK\x03\x04 not a pack").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("bad.pack") && e.contains("magic"), "{e}");

        let rec = Record {
            class: Class::Monocyte,
            file: "m.jpeg".into(),
            smear: "s".into(),
            jpeg: encode(&fake_input(0), 90),
        };
        write_records(&path, std::slice::from_ref(&rec));
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("bad.pack") && e.contains("truncated"), "{e}");

        let mut wrong = full.clone();
        wrong[12] = 9;
        std::fs::write(&path, &wrong).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("class index 9"), "{e}");

        let mut corrupt = rec;
        corrupt.jpeg = b"\xFF\xD8\xFF garbage".to_vec();
        write_records(&path, &[corrupt]);
        let pack = read(&path).unwrap();
        let inputs = pack.load_inputs(&pack.samples(), 1);
        assert!(inputs.is_empty());
        assert!(inputs.skipped[0].1.contains("bad.pack#m.jpeg"));
    }
}
