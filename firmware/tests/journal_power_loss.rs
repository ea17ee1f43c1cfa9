//! Power loss at every byte: a real journal (a simulated session with the embedded model, real crops) cut
//! at every byte offset of its last records, and bits flipped in them, then resumed. Never a cell more or
//! fewer than the complete records hold, never a cell counted twice, and the report rebuilt from the
//! journal agrees with the session's own.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use leukoscope::journal::{self, Journal, JournalError};
use leukoscope::report::Report;
use serde_json::Value;

/// A scratch folder, on tmpfs where there is one: every resume fsyncs, and 20,000 of them on a disk would
/// test the disk, not the journal.
fn scratch(name: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("leuko-power-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the original journal's lines say, read independently of `journal::read`: per line its bytes
/// (with the newline), its record type, and for cells their frame and class.
struct Line {
    bytes: Vec<u8>,
    kind: String,
    frame: Option<u64>,
    class: Option<Option<usize>>,
}

fn lines(bytes: &[u8]) -> Vec<Line> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("the session wrote JSON lines");
            Line {
                bytes: l.to_vec(),
                kind: v["type"].as_str().unwrap().to_string(),
                frame: v["frame"].as_u64(),
                class: (v["type"] == "cell")
                    .then(|| v["prediction"]["class"].as_u64().map(|c| c as usize)),
            }
        })
        .collect()
}

/// The oracle: given which original lines survive intact, in order, the classes that must be counted
/// (one entry per counted cell), or `None` when the journal must be refused as corrupt.
fn expected(original: &[Line], mutated: &[u8]) -> Option<Vec<Option<usize>>> {
    let by_content: std::collections::HashMap<&[u8], usize> = original
        .iter()
        .enumerate()
        .map(|(i, l)| (l.bytes.as_slice(), i))
        .collect();
    let got: Vec<Option<usize>> = mutated
        .split_inclusive(|&b| b == b'\n')
        .map(|l| by_content.get(l).copied())
        .collect();
    let first_bad = got.iter().position(Option::is_none).unwrap_or(got.len());
    if got[first_bad..].iter().any(Option::is_some) {
        return None; // damage with intact lines after it: corruption, not a torn write
    }
    let intact: Vec<usize> = got[..first_bad].iter().map(|i| i.unwrap()).collect();
    let done: HashSet<u64> = intact
        .iter()
        .filter(|&&i| original[i].kind == "frame_done")
        .map(|&i| original[i].frame.unwrap())
        .collect();
    Some(
        intact
            .iter()
            .filter(|&&i| original[i].kind == "cell" && done.contains(&original[i].frame.unwrap()))
            .map(|&i| original[i].class.unwrap())
            .collect(),
    )
}

fn counts(classes: &[Option<usize>], n: usize) -> (Vec<u32>, u32) {
    let mut c = vec![0; n];
    let mut unidentified = 0;
    for k in classes {
        match k {
            Some(k) => c[*k] += 1,
            None => unidentified += 1,
        }
    }
    (c, unidentified)
}

/// Resumes `bytes` as a journal and checks it against the oracle; returns whether it was refused.
fn check(path: &Path, original: &[Line], bytes: &[u8], what: &str) -> bool {
    std::fs::write(path, bytes).unwrap();
    let want = expected(original, bytes);
    match (Journal::resume(path), want) {
        (Err(e), None) => {
            assert!(matches!(e, JournalError::Corrupt { .. }), "{what}: {e}");
            assert_eq!(
                std::fs::read(path).unwrap(),
                bytes,
                "{what}: a refused journal is kept as it was"
            );
            true
        }
        (Err(e), Some(w)) => panic!("{what}: refused ({e}) but {} cells are intact", w.len()),
        (Ok(j), None) => panic!(
            "{what}: resumed with {} cells although damaged lines precede intact ones",
            j.state().counted()
        ),
        (Ok(j), Some(want)) => {
            let st = j.state().clone();
            drop(j);
            let n = st.header.analysis.classes.len();
            assert_eq!(st.counted() as usize, want.len(), "{what}: cells counted");
            let report = Report::from_journal(&st);
            let (per_class, unidentified) = counts(&want, n);
            assert_eq!(
                report.differential.counts(),
                per_class.as_slice(),
                "{what}: differential"
            );
            assert_eq!(
                report.differential.unidentified(),
                unidentified,
                "{what}: unidentified"
            );
            // Resuming cut the torn tail and added one `resumed` record: reading again gives the same cells.
            let again = journal::read(path).unwrap();
            assert_eq!(again.torn_bytes, 0, "{what}");
            assert_eq!(
                again.frames, st.frames,
                "{what}: the same cells after resuming"
            );
            false
        }
    }
}

#[test]
fn a_real_journal_cut_at_every_byte_of_its_last_records_or_bit_flipped_resumes_exactly() {
    let dir = scratch("journal");
    let full = dir.join("session.journal");
    let out = Command::new(env!("CARGO_BIN_EXE_leukoscope"))
        .args(["run", "--sim", "--slide"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/smears"))
        .args(["--target", "3", "--json", "--journal"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let original = lines(&bytes);
    let kinds: Vec<&str> = original.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");

    // The whole journal: the report rebuilt from it is the one the session printed.
    let st = journal::read(&full).unwrap();
    let rebuilt = leukoscope::report::json::to_value(&Report::from_journal(&st));
    assert_eq!(rebuilt["differential"], session["differential"]);
    assert_eq!(rebuilt["total"], session["total"]);

    // Every byte offset from the start of the last frame's first cell record to the end.
    let last_frame = original.iter().rev().find_map(|l| l.frame).unwrap();
    let first = original
        .iter()
        .position(|l| l.frame == Some(last_frame))
        .unwrap();
    let from: usize = original[..first].iter().map(|l| l.bytes.len()).sum();
    let path = dir.join("cut.journal");
    for cut in from..=bytes.len() {
        check(
            &path,
            &original,
            &bytes[..cut],
            &format!("cut at byte {cut}"),
        );
    }
    let cuts = bytes.len() + 1 - from;

    // One flipped bit at every byte of the small records (frame_done, finished) and every 13th byte of the
    // last cell record (its crop is base64 text), each of the eight bits in turn.
    let small_from = from
        + original[first..original.len() - 2]
            .iter()
            .map(|l| l.bytes.len())
            .sum::<usize>();
    let (mut flips, mut refused) = (0, 0);
    for at in (from..bytes.len()).filter(|&i| i >= small_from || (i - from) % 13 == 0) {
        let mut bad = bytes.clone();
        bad[at] ^= 1 << (at % 8);
        refused += check(
            &path,
            &original,
            &bad,
            &format!("bit {} of byte {at} flipped", at % 8),
        ) as u32;
        flips += 1;
    }
    eprintln!(
        "journal of {} bytes: {cuts} cuts (bytes {from}..={}), {flips} bit flips ({refused} refused as corrupt)",
        bytes.len(),
        bytes.len()
    );
    assert!(refused > 0, "a flip before the last record is corruption");
    let _ = std::fs::remove_dir_all(&dir);
}
