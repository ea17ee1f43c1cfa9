//! Dumps what `scripts/bench_segment.py` compares against OpenCV and PyMaxflow:
//! for each 640×480 frame, the integer K-means nucleus mask at full resolution (`<stem>.kmeans.u8`, one byte
//! per pixel; `<stem>.kmeans-counts.u8` with plain-count bin weights, cv2's objective; `.labels.u8` every
//! pixel's cluster) with its times, and one cell crop's graph-cut graph (`<stem>.graph.txt`) with its flow value
//! and solve time; one JSON line per frame on stdout.
//!
//! ```text
//! cargo run --release -p leukoscope --features testing --example segment_dump -- OUT_DIR FRAME...
//! ```
//! (`testing`: the Dinic baseline is a test oracle, not part of the shipped API.)

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use leukoscope::rect::Rect;
use leukoscope::segment::graphcut::{GraphCutConfig, GridEdge, Refiner};
use leukoscope::segment::kmeans::{kmeans, Histogram, KMeansConfig};
use leukoscope::segment::maxflow::{FlowNetwork, MaxFlow};
use leukoscope::segment::Segmenter;
use leukoscope::testing::dinic::Dinic;
use leukoscope::Frame;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: segment_dump OUT_DIR FRAME...");
        return std::process::ExitCode::FAILURE;
    }
    let out = PathBuf::from(&args[0]);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: {}: {e}", out.display());
        return std::process::ExitCode::FAILURE;
    }
    const REPS: usize = 15;
    let mut seg = Segmenter::default();
    let refiner = Refiner::new(GraphCutConfig::default());
    for path in &args[1..] {
        let frame = match Frame::open(path.as_ref()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let stem = std::path::Path::new(path)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // Integer K-means on every pixel of the full frame: histogram, cluster, label each pixel. Twice: as
        // the device runs it (bins weighted by √count) and with plain counts, the objective cv2.kmeans
        // minimises over pixels (so the comparison measures the integer arithmetic, not the objective).
        let mut hist = Histogram::new();
        let mut mask = vec![0u8; (frame.width() * frame.height()) as usize];
        let mut labels = mask.clone();
        let mut kmeans_ms = [0.0; 2];
        for (i, (sqrt_weights, suffix)) in [(true, "kmeans"), (false, "kmeans-counts")]
            .into_iter()
            .enumerate()
        {
            let config = KMeansConfig {
                sqrt_weights,
                ..KMeansConfig::default()
            };
            let mut times = Vec::new();
            for _ in 0..REPS {
                let t = Instant::now();
                hist.clear();
                hist.add_frame(&frame);
                let c = kmeans(&hist, &config);
                let n = c.nucleus() as u8;
                for ((m, l), px) in mask
                    .iter_mut()
                    .zip(labels.iter_mut())
                    .zip(frame.data().chunks_exact(3))
                {
                    *l = c.label([px[0], px[1], px[2]]);
                    *m = (*l == n) as u8;
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            kmeans_ms[i] = median(times);
            let _ = std::fs::write(out.join(format!("{stem}.{suffix}.u8")), &mask);
            let _ = std::fs::write(out.join(format!("{stem}.{suffix}.labels.u8")), &labels);
        }
        let [kmeans_ms, kmeans_counts_ms] = kmeans_ms;

        // One crop's graph: around the first detected cell (or the frame centre).
        let found = seg.segment(&frame);
        let scaled = &found.scaled;
        let clustering = seg.cluster(scaled);
        let roi = found
            .cells
            .first()
            .and_then(|c| c.nucleus)
            .map_or(Rect::new(130, 90, 190, 150), |n| n.rect)
            .grown(12, scaled.width(), scaled.height());
        let g = refiner.graph(scaled, &clustering, roi);
        let mut flow = MaxFlow::new();
        let mut times = Vec::new();
        let mut value = 0;
        for _ in 0..REPS {
            g.load(&mut flow);
            let t = Instant::now();
            value = flow.solve();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let flow_ms = median(times);
        // The Dinic reference on the same graph, as a baseline in the same run.
        let mut dinic = Dinic::new();
        let mut times = Vec::new();
        for _ in 0..REPS {
            g.load(&mut dinic);
            let t = Instant::now();
            let v = dinic.solve();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if v != value {
                eprintln!("{stem}: Dinic flow {v} differs from Boykov–Kolmogorov {value}");
                return std::process::ExitCode::FAILURE;
            }
        }
        let dinic_ms = median(times);
        let gp = out.join(format!("{stem}.graph.txt"));
        let mut text = format!("{} {}\n", g.width, g.height);
        for e in &g.edges {
            match *e {
                GridEdge::Terminal(i, s, t) => text += &format!("t {i} {s} {t}\n"),
                GridEdge::Link(i, j, c) => text += &format!("n {i} {j} {c}\n"),
            }
        }
        let _ = std::fs::write(&gp, text);
        let line = serde_json::json!({
            "frame": path, "stem": stem, "width": frame.width(), "height": frame.height(),
            "kmeans_ms": kmeans_ms, "kmeans_counts_ms": kmeans_counts_ms, "graph_nodes": g.width * g.height, "flow": value, "flow_ms": flow_ms, "dinic_ms": dinic_ms,
        });
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    std::process::ExitCode::SUCCESS
}
