//! The fuzz targets of `leukoscope::testing::fuzz`, run on stable Rust: each target's seed corpus (real
//! images, the embedded model and card, a real journal, the shipped board file) replayed, then mutated by
//! proptest (bit flips, byte changes, truncations, insertions, deletions, splices of two seeds). The
//! pinned toolchain is stable, where cargo-fuzz cannot build (it needs nightly's sanitizer flags), so CI
//! runs this harness; `firmware/fuzz` runs the same targets under libFuzzer for the long runs
//! (`docs/reliability.md`). A crash found either way is saved under `firmware/fuzz/regressions/<target>/`
//! and replayed here for ever.
//!
//! `LEUKOSCOPE_FUZZ_CASES=N` sets the mutated inputs per target (default: a short CI run).
use std::path::{Path, PathBuf};
use std::time::Instant;

use leukoscope::journal::{Header, Journal};
use leukoscope::testing::fuzz;
use leukoscope::{Classifier, Frame};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if leukoscope::inputs::is_image(&p) {
            out.push(std::fs::read(&p).unwrap());
        }
    }
}

/// A real journal: two frames of real cells (crops and predictions from the embedded model).
fn journal_seed() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("leuko-fuzz-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("seed.journal");
    let _ = std::fs::remove_file(&p);
    let c = Classifier::embedded().unwrap();
    let mut pipeline = leukoscope::Pipeline::new(c);
    let mut j = Journal::create(&p, Header::new(10, "fuzz seed", pipeline.analysis())).unwrap();
    for (field, name) in ["BloodImage_00001.jpg", "BloodImage_00006.jpg"]
        .iter()
        .enumerate()
    {
        let f = Frame::open(&root().join("samples/smears").join(name)).unwrap();
        let r = pipeline.analyze(&f).unwrap();
        let id = j.next_frame();
        j.commit_frame(id, field as u32, None, 0, &r.cells, r.clipping)
            .unwrap();
    }
    j.finish().unwrap();
    drop(j);
    let bytes = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut s = Vec::new();
    match target {
        "image" => {
            files(&root().join("samples"), &mut s);
            let cell = image::load_from_memory(&s[0]).unwrap();
            for format in [
                image::ImageFormat::Png,
                image::ImageFormat::Bmp,
                image::ImageFormat::Tiff,
            ] {
                let mut b = std::io::Cursor::new(Vec::new());
                cell.write_to(&mut b, format).unwrap();
                s.push(b.into_inner());
            }
        }
        "model" => {
            s.push(leukoscope::model::DEFAULT_ONNX.to_vec());
            s.push(leukoscope::testing::graphs::nan_logits().onnx);
            s.push(leukoscope::testing::graphs::huge_constant([2, 2]).onnx);
        }
        "card" => s.push(leukoscope::model::DEFAULT_CARD.as_bytes().to_vec()),
        "journal" => s.push(journal_seed()),
        "board" => s.push(std::fs::read(root().join("deploy/board.toml")).unwrap()),
        other => panic!("no seeds for {other}"),
    }
    // Crashes found before, kept as regression inputs.
    let reg = root().join("firmware/fuzz/regressions").join(target);
    if let Ok(rd) = std::fs::read_dir(reg) {
        for e in rd {
            s.push(std::fs::read(e.unwrap().path()).unwrap());
        }
    }
    s
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 0u8..8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        3 => (at, any::<u8>()).prop_map(|(a, v)| Mutation::Set(a, v)),
        1 => at.prop_map(Mutation::Truncate),
        1 => (at, proptest::collection::vec(any::<u8>(), 1..64)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        1 => (at, 1usize..256).prop_map(|(a, n)| Mutation::Delete(a, n)),
        1 => (any::<usize>(), at, at).prop_map(|(s, a, b)| Mutation::Splice(s, a, b)),
    ]
}

fn apply(seed: &[u8], mutations: &[Mutation], all: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for m in mutations {
        let len = d.len().max(1);
        match m {
            Mutation::Flip(a, b) if !d.is_empty() => d[a % len] ^= 1 << b,
            Mutation::Set(a, v) if !d.is_empty() => d[a % len] = *v,
            Mutation::Truncate(a) => d.truncate(a % len),
            Mutation::Insert(a, v) => {
                let at = a % (d.len() + 1);
                d.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(a, n) if !d.is_empty() => {
                let at = a % len;
                let end = (at + n).min(d.len());
                d.drain(at..end);
            }
            Mutation::Splice(s, a, b) => {
                // This input's head, another seed's tail.
                let other = &all[s % all.len()];
                let head = a % (d.len() + 1);
                let tail = b % (other.len() + 1);
                d.truncate(head);
                d.extend_from_slice(&other[tail..]);
            }
            _ => {}
        }
    }
    d
}

fn fuzz_target(target: &str, default_cases: u32) {
    let cases = std::env::var("LEUKOSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let all = seeds(target);
    let t = Instant::now();
    for s in &all {
        fuzz::run(target, s);
    }
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (any::<usize>(), proptest::collection::vec(mutation(), 1..6));
    let result = runner.run(&strategy, |(i, mutations)| {
        let input = apply(&all[i % all.len()], &mutations, &all);
        fuzz::run(target, &input);
        Ok(())
    });
    eprintln!(
        "fuzz {target}: {} seeds and {cases} mutated inputs in {:.1?}",
        all.len(),
        t.elapsed()
    );
    if let Err(e) = result {
        panic!("fuzz target {target} failed: {e}");
    }
}

#[test]
fn every_target_has_seeds() {
    for t in fuzz::TARGETS {
        assert!(!seeds(t).is_empty(), "{t}");
    }
}

#[test]
fn fuzz_image() {
    fuzz_target("image", 300);
}

#[test]
fn fuzz_model() {
    fuzz_target("model", 400);
}

#[test]
fn fuzz_card() {
    fuzz_target("card", 2000);
}

#[test]
fn fuzz_journal() {
    fuzz_target("journal", 2000);
}

#[test]
fn fuzz_board() {
    fuzz_target("board", 20_000);
}
