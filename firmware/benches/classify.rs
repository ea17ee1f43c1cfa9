//! Latency of `classify` on one core: one 320×240 Kaggle image through preprocessing and the embedded model
//! (tract runs single-threaded), with the preprocessing alone alongside as the baseline it contains; the
//! embedded card's stain normalisation alone (when it has one); and the model step of the previous default
//! (`models/edge16-int8-weights.onnx`, no stain normalisation) as the baseline of the same run.
use criterion::{criterion_group, criterion_main, Criterion};
use leukoscope::{preprocess, Classifier, Frame, ModelSource};

fn sample() -> Frame {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/cells/NEUTROPHIL/_0_1966.jpeg"
    );
    Frame::open(std::path::Path::new(path)).expect("bundled sample decodes")
}

fn bench(c: &mut Criterion) {
    let frame = sample();
    let classifier = Classifier::embedded().expect("embedded model loads");
    let input = preprocess::frame_input(&frame).0;
    c.bench_function("preprocess 320x240 frame", |b| {
        b.iter(|| preprocess::frame_input(std::hint::black_box(&frame)))
    });
    if let Some(stain) = classifier.card().stain_norm.clone() {
        c.bench_function("stain normalisation only (128x128 input)", |b| {
            b.iter(|| stain.apply(std::hint::black_box(&input)))
        });
    }
    c.bench_function("model only (128x128 input)", |b| {
        b.iter(|| {
            classifier
                .classify_input(std::hint::black_box(&input))
                .unwrap()
        })
    });
    let previous = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/edge16-int8-weights.onnx"
    );
    let previous =
        Classifier::load(&ModelSource::File(previous.into())).expect("previous default loads");
    c.bench_function(
        "model only, previous default edge16-int8-weights (128x128 input)",
        |b| {
            b.iter(|| {
                previous
                    .classify_input(std::hint::black_box(&input))
                    .unwrap()
            })
        },
    );
    c.bench_function("classify 320x240 frame", |b| {
        b.iter(|| {
            classifier
                .classify_frame(std::hint::black_box(&frame))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
