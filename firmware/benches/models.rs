//! tract latency of one inference (`[1, 3, 128, 128]` normalised input → logits) for each model file, on one
//! core (tract runs single-threaded): the float model beside its int8 forms, in one run. Criterion ids are
//! `tract/<file stem>`; `scripts/model_table.sh` reads their medians and times the same files in onnxruntime.
//!
//! Models: `LEUKOSCOPE_BENCH_MODELS` (paths separated by `:`, each with its card beside it), or else every
//! `models/*.onnx` with a card.
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use leukoscope::preprocess::INPUT_SHAPE;
use leukoscope::{Classifier, ModelSource};

fn models() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os("LEUKOSCOPE_BENCH_MODELS") {
        return std::env::split_paths(&list).collect();
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.extension().is_some_and(|e| e == "onnx") && p.with_extension("json").exists()
    });
    found.sort();
    found
}

fn bench(c: &mut Criterion) {
    let len: usize = INPUT_SHAPE.iter().product();
    let side = INPUT_SHAPE[3];
    let chw: Vec<f32> = (0..len)
        .map(|i| (((i % side) as f32 * 0.05) + (i / (side * side)) as f32).sin() * 2.0)
        .collect();
    let mut group = c.benchmark_group("tract");
    for path in models() {
        let classifier = match Classifier::load(&ModelSource::File(path.clone())) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping {}: {e}", path.display());
                continue;
            }
        };
        let id = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        group.bench_function(id, |b| {
            b.iter(|| classifier.logits(std::hint::black_box(&chw)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
