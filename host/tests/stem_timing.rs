//! A measurement, not a check (ignored by default): tract's time for a one-convolution net, 3 → C channels,
//! 3×3 stride 2 on a 128×128 input (the edge net's stem, C = 24), for several C, on one core. It shows where
//! the edge net's gap to onnxruntime comes from (see models/README.md):
//!
//! ```text
//! cargo test --release -p leukoscope-host --test stem_timing -- --ignored --nocapture
//! ```

use leukoscope_host::nets::graph::Builder;
use leukoscope_host::onnx::{export, ExportOptions};
use tch::{nn, Device};
use tract_onnx::prelude::*;

fn median_ms(bytes: &[u8]) -> f64 {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 128, 128]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("the one-layer net loads");
    let x =
        Tensor::from_shape(&[1usize, 3, 128, 128], &vec![0.5f32; 3 * 128 * 128]).expect("input");
    let mut times: Vec<f64> = (0..320)
        .map(|_| {
            let t = std::time::Instant::now();
            plan.run(tvec!(x.clone().into_tvalue())).expect("runs");
            t.elapsed().as_secs_f64() * 1e3
        })
        .skip(20)
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[test]
#[ignore = "a timing, run by hand"]
fn stem_width_versus_tract_time() {
    for (cout, k, stride) in [
        (8, 3, 2),
        (16, 3, 2),
        (20, 3, 2),
        (24, 3, 2),
        (32, 3, 2),
        (48, 3, 2),
        (24, 4, 4),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut b = Builder::new(&vs.root());
        let x = b.input();
        let y = b.conv_bn_relu("stem", x, 3, cout, k, stride, 1);
        let y = b.global_avg_pool("pool", y);
        let y = b.linear("fc", y, cout, 4);
        let g = b.finish(y);
        let bytes = export(&g, [128, 128], &ExportOptions::default()).expect("exports");
        println!(
            "3 → {cout:2} channels, {k}×{k} stride {stride}: {:.3} ms",
            median_ms(&bytes)
        );
    }
}

#[test]
#[ignore = "a timing, run by hand"]
fn whole_edge_net_versus_stem_width() {
    for stem in [8, 12, 16, 20, 24, 32, 48] {
        let vs = nn::VarStore::new(Device::Cpu);
        let g = leukoscope_host::nets::edge::edge_with_stem(&vs.root(), 4, stem);
        let bytes = export(&g, [128, 128], &ExportOptions::default()).expect("exports");
        println!(
            "edge net, stem 3 → {stem:2} channels: {:.3} ms",
            median_ms(&bytes)
        );
    }
}
