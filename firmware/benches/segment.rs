//! Segmentation speed: integer K-means on a 640×480 frame (histogram + clustering), max-flow on one cell's
//! crop, and a whole frame segmented and classified. Uses the bundled BCCD sample frames; the whole-frame
//! case also needs a real embedded model and is skipped (with a message) while that is a placeholder. The
//! Dinic baseline of the max-flow solver is a test oracle: it runs with `--features testing`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use leukoscope::preprocess::to_training_scale;
use leukoscope::rect::Rect;
use leukoscope::segment::graphcut::{GraphCutConfig, Refiner};
use leukoscope::segment::kmeans::{kmeans, Histogram, KMeansConfig};
use leukoscope::segment::maxflow::{FlowNetwork, MaxFlow};
use leukoscope::segment::{SegmentConfig, Segmenter};
use leukoscope::{Classifier, Frame, Pipeline};

fn sample() -> Frame {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/smears/BloodImage_00001.jpg");
    Frame::open(&p).expect("bundled sample frame decodes")
}

fn bench(c: &mut Criterion) {
    let frame = sample();
    c.bench_function("kmeans_640x480_full_res_histogram", |b| {
        let mut h = Histogram::new();
        b.iter(|| {
            h.clear();
            h.add_frame(&frame);
            kmeans(&h, &KMeansConfig::default())
        })
    });
    let scaled = to_training_scale(&frame);
    c.bench_function("kmeans_640x480_via_training_scale", |b| {
        let mut seg = Segmenter::default();
        b.iter(|| {
            let s = to_training_scale(&frame);
            seg.cluster(&s)
        })
    });
    let mut seg = Segmenter::default();
    let clustering = seg.cluster(&scaled);
    let found = seg.segment(&frame);
    let roi = found
        .cells
        .first()
        .and_then(|c| c.nucleus)
        .map_or(Rect::new(100, 80, 180, 160), |n| n.rect)
        .grown(12, scaled.width(), scaled.height());
    c.bench_function("maxflow_cell_crop", |b| {
        let mut r = Refiner::new(GraphCutConfig::default());
        let mut out = Vec::new();
        b.iter(|| r.refine(&scaled, &clustering, roi, &mut out))
    });
    let graph = Refiner::new(GraphCutConfig::default()).graph(&scaled, &clustering, roi);
    // The same crop's graph solved by the Dinic reference, the baseline of the solver above.
    #[cfg(feature = "testing")]
    c.bench_function("maxflow_cell_crop_dinic_baseline", |b| {
        let mut d = leukoscope::testing::dinic::Dinic::new();
        b.iter(|| {
            graph.load(&mut d);
            d.solve()
        })
    });
    c.bench_function("maxflow_cell_crop_bk_solve_only", |b| {
        let mut m = MaxFlow::new();
        b.iter(|| {
            graph.load(&mut m);
            m.solve()
        })
    });
    c.bench_function("segment_frame_640x480", |b| {
        let mut s = Segmenter::new(SegmentConfig::default());
        b.iter(|| s.segment(&frame).cells.len())
    });
    match Classifier::embedded() {
        Ok(cl) => {
            let mut p = Pipeline::new(cl);
            c.bench_function("segment_and_classify_frame_640x480", |b| {
                b.iter(|| p.analyze(&frame).map(|r| r.cells.len()).unwrap_or(0))
            });
        }
        Err(e) => eprintln!(
            "skipping segment_and_classify_frame_640x480: embedded model unavailable: {e}"
        ),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
