//! The exported ONNX model computes what the tch graph computes, in tract (the device's runtime) and in
//! onnxruntime (an independent reading of the ONNX spec), to 1e-4 on the logits.
//!
//! The onnxruntime tests need the Python oracle from `scripts/setup.sh` (`LEUKOSCOPE_PYTHON`); without it they
//! fail rather than pass silently.

mod common;

use common::{edge_net, flat, op_zoo, run_onnxruntime, seeded};
use leukoscope_host::nets::graph::Graph;
use leukoscope_host::onnx::{export, to_model_proto, ExportOptions};
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f32 = 1e-4;

fn max_abs_diff(want: &[f32], got: &[f32]) -> f32 {
    assert_eq!(want.len(), got.len(), "output sizes differ");
    want.iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Checks `got` against tch's logits and reports the difference.
fn assert_close(what: &str, want: &[f32], got: &[f32]) {
    let diff = max_abs_diff(want, got);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("{what}: max abs diff {diff:e} (max |logit| {scale:.3})");
    assert!(
        scale > 1e-2,
        "{what}: logits are all ~0, the comparison would prove nothing"
    );
    assert!(
        diff <= TOLERANCE,
        "{what}: max abs diff {diff:e} > {TOLERANCE:e}"
    );
}

/// Runs an ONNX model with tract on `x` (NCHW) and returns the flat output.
fn run_tract(bytes: &[u8], x: &Tensor) -> Vec<f32> {
    leukoscope_host::onnx::run_tract(bytes, x).expect("tract runs the export")
}

fn edge_case() -> (Graph, Tensor, Vec<u8>, nn::VarStore) {
    let vs = nn::VarStore::new(Device::Cpu);
    let (g, x) = seeded(7, || {
        let g = edge_net(&vs);
        (
            g,
            Tensor::randn([2, 3, 128, 128], (Kind::Float, Device::Cpu)),
        )
    });
    let onnx = export(&g, [128, 128], &ExportOptions::default()).expect("export edge");
    (g, x, onnx, vs)
}

fn zoo_case() -> (Graph, Tensor, Vec<u8>, nn::VarStore) {
    let vs = nn::VarStore::new(Device::Cpu);
    let (g, x) = seeded(11, || {
        let g = op_zoo(&vs);
        // Large enough that Relu6 clips, odd sizes so that padding and pooling borders matter.
        (
            g,
            Tensor::randn([2, 3, 33, 30], (Kind::Float, Device::Cpu)) * 4.0,
        )
    });
    let onnx = export(&g, [33, 30], &ExportOptions::default()).expect("export zoo");
    (g, x, onnx, vs)
}

#[test]
fn edge_matches_tch_in_tract() {
    let (g, x, onnx, _vs) = edge_case();
    let want = flat(&g.forward_t(&x, false));
    assert_eq!(want.len(), 2 * 4);
    assert_close("edge, tract", &want, &run_tract(&onnx, &x));
}

#[test]
fn edge_matches_tch_in_onnxruntime() {
    let (g, x, onnx, _vs) = edge_case();
    let want = flat(&g.forward_t(&x, false));
    assert_close(
        "edge, onnxruntime",
        &want,
        &run_onnxruntime("edge", &onnx, &x),
    );
}

#[test]
fn edge_export_has_no_batch_normalization() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = seeded(7, || edge_net(&vs));
    let model = to_model_proto(&g, [128, 128], &ExportOptions::default()).expect("export edge");
    let nodes = &model.graph.expect("graph").node;
    assert!(nodes.iter().any(|n| n.op_type == "Conv"));
    let bns: Vec<&str> = nodes
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .map(|n| n.name.as_str())
        .collect();
    assert!(bns.is_empty(), "batch norms left unfolded: {bns:?}");
}

#[test]
fn op_zoo_matches_tch_in_tract() {
    let (g, x, onnx, _vs) = zoo_case();
    let want = flat(&g.forward_t(&x, false));
    assert_eq!(want.len(), 2 * 5);
    assert_close("op zoo, tract", &want, &run_tract(&onnx, &x));
}

#[test]
fn op_zoo_matches_tch_in_onnxruntime() {
    let (g, x, onnx, _vs) = zoo_case();
    let want = flat(&g.forward_t(&x, false));
    assert_close(
        "op zoo, onnxruntime",
        &want,
        &run_onnxruntime("zoo", &onnx, &x),
    );
}

#[test]
fn op_zoo_keeps_the_unfoldable_batch_norms() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = seeded(11, || op_zoo(&vs));
    let model = to_model_proto(&g, [33, 30], &ExportOptions::default()).expect("export zoo");
    let graph = model.graph.expect("graph");
    let mut bns: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .map(|n| n.name.as_str())
        .collect();
    bns.sort_unstable();
    assert_eq!(bns, ["head/bn", "pre/bn"]);
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    for op in [
        "Pad",
        "Clip",
        "MaxPool",
        "AveragePool",
        "Concat",
        "Mul",
        "Add",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    assert!(graph
        .node
        .iter()
        .any(|n| n.op_type == "Conv" && n.attribute.iter().any(|a| a.name == "group" && a.i == 8)));
}
