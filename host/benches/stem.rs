//! tract's time for the edge net's first convolution and for the whole edge net, by stem width, side by side
//! in one run on one core (the 24-channel stem of `edge` is the baseline; `edge16` uses 16). Random weights:
//! the time does not depend on them. It shows where the edge net's gap to onnxruntime comes from (see
//! models/README.md):
//!
//! ```text
//! eval "$(scripts/setup.sh)" && taskset -c 0 cargo bench -p leukoscope-host --bench stem
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use leukoscope_host::nets::edge::edge_with_stem;
use leukoscope_host::nets::graph::{Builder, Graph};
use leukoscope_host::onnx::{export, ExportOptions};
use tch::{nn, Device};
use tract_onnx::prelude::*;

type Plan = Arc<TypedRunnableModel>;

fn plan(g: &Graph) -> Plan {
    let bytes = export(g, [128, 128], &ExportOptions::default()).expect("exports");
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 128, 128]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("the net loads in tract")
}

/// A one-convolution net: 3 → `cout` channels, 3×3 stride 2 (the edge stem), then pooling and a head.
fn stem_only(vs: &nn::VarStore, cout: i64) -> Graph {
    let mut b = Builder::new(&vs.root());
    let x = b.input();
    let y = b.conv_bn_relu("stem", x, 3, cout, 3, 2, 1);
    let y = b.global_avg_pool("pool", y);
    let y = b.linear("fc", y, cout, 4);
    b.finish(y)
}

fn run(c: &mut Criterion, group: &str, widths: &[i64], net: impl Fn(&nn::VarStore, i64) -> Graph) {
    let x =
        Tensor::from_shape(&[1usize, 3, 128, 128], &vec![0.5f32; 3 * 128 * 128]).expect("input");
    let mut g = c.benchmark_group(group);
    for &w in widths {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = plan(&net(&vs, w));
        g.bench_with_input(BenchmarkId::from_parameter(w), &w, |b, _| {
            b.iter(|| p.run(tvec!(x.clone().into_tvalue())).expect("runs"))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let widths = [8, 16, 20, 24, 32, 48];
    run(c, "tract_stem_conv_3_to_c", &widths, stem_only);
    run(c, "tract_edge_net_stem_c", &widths, |vs, w| {
        edge_with_stem(&vs.root(), 4, w)
    });
}

criterion_group!(stem, benches);
criterion_main!(stem);
