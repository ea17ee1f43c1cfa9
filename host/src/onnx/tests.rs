use super::*;

use tch::nn;
use tract_onnx::pb::{tensor_shape_proto::dimension, type_proto, ValueInfoProto};

use crate::nets::graph::Builder;
use crate::nets::Arch;

fn edge(vs: &nn::VarStore) -> Graph {
    Arch::Edge.build(&vs.root(), 4)
}

fn graph_of(model: &ModelProto) -> &GraphProto {
    model.graph.as_ref().expect("model has a graph")
}

fn dims(v: &ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        panic!("{} is not a tensor", v.name);
    };
    t.shape
        .as_ref()
        .expect("shape")
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimParam(p)) => p.clone(),
            Some(dimension::Value::DimValue(v)) => v.to_string(),
            None => "?".into(),
        })
        .collect()
}

fn op_types(model: &ModelProto) -> Vec<&str> {
    graph_of(model)
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect()
}

fn initializer<'m>(model: &'m ModelProto, name: &str) -> &'m TensorProto {
    graph_of(model)
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

/// Runs a model with tract on `x` (NCHW) and returns the flat output.
fn run_tract(bytes: &[u8], x: &Tensor) -> Vec<f32> {
    super::run_tract(bytes, x).expect("tract runs the export")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn header_input_and_output() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = edge(&vs);
    let opts = ExportOptions {
        metadata: vec![("arch".into(), "edge".into())],
        ..Default::default()
    };
    let m = to_model_proto(&g, [128, 96], &opts).unwrap();
    assert_eq!(m.ir_version, 7);
    assert_eq!(m.producer_name, "leukoscope-train");
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].domain, "");
    assert_eq!(m.opset_import[0].version, 13);
    assert_eq!(m.metadata_props[0].key, "arch");
    let gp = graph_of(&m);
    assert_eq!(gp.input.len(), 1);
    assert_eq!(gp.input[0].name, "input");
    assert_eq!(dims(&gp.input[0]), ["N", "3", "128", "96"]);
    assert_eq!(gp.output.len(), 1);
    assert_eq!(gp.output[0].name, "logits");
    assert_eq!(dims(&gp.output[0]), ["N", "4"]);
    assert!(gp.node.iter().all(|n| n.domain.is_empty()));
}

#[test]
fn export_encodes_the_model_proto() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = edge(&vs);
    let opts = ExportOptions::default();
    let bytes = export(&g, [128, 128], &opts).unwrap();
    let decoded = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(decoded, to_model_proto(&g, [128, 128], &opts).unwrap());
}

#[test]
fn edge_batch_norms_are_folded_into_named_convolutions() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = edge(&vs);
    let m = to_model_proto(&g, [128, 128], &ExportOptions::default()).unwrap();
    let ops = op_types(&m);
    assert!(!ops.contains(&"BatchNormalization"), "{ops:?}");
    assert!(
        !ops.contains(&"Dropout") && !ops.contains(&"Identity"),
        "{ops:?}"
    );
    let gp = graph_of(&m);
    let names: Vec<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(names.iter().all(|n| !n.contains(".bn.")), "{names:?}");
    assert_eq!(initializer(&m, "stem1.conv.weight").dims, [24, 3, 3, 3]);
    assert_eq!(initializer(&m, "stem1.conv.bias").dims, [24]);
    assert_eq!(
        initializer(&m, "stage2.down.conv.weight").dims,
        [64, 32, 1, 1]
    );
    assert_eq!(initializer(&m, "fc.weight").dims, [4, 256]);
    // Every parameter is exported (BN statistics folded away): conv weights + biases, fc weight + bias.
    let convs = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(..)))
        .count();
    assert_eq!(names.len(), 2 * convs + 2);
    // The folded BN's value keeps the BN's name, so the graph stays readable.
    assert!(gp
        .node
        .iter()
        .any(|n| n.op_type == "Conv" && n.name == "stem1/conv" && n.output == ["stem1/bn"]));
}

#[test]
fn unfolded_export_keeps_every_batch_norm() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = edge(&vs);
    let opts = ExportOptions {
        fold_batch_norm: false,
        ..Default::default()
    };
    let m = to_model_proto(&g, [128, 128], &opts).unwrap();
    let bns = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm(..)))
        .count();
    let ops = op_types(&m);
    assert_eq!(
        ops.iter().filter(|&&o| o == "BatchNormalization").count(),
        bns
    );
    assert_eq!(initializer(&m, "stem1.bn.running_var").dims, [24]);
}

/// A conv → BN → GAP → FC net with non-trivial statistics; `shared` gives the conv a second reader, which
/// must stop the folding.
fn conv_bn_net(vs: &nn::VarStore, shared: bool) -> Graph {
    let mut b = Builder::new(&vs.root());
    let x = b.input();
    let c = b.conv("conv", x, 3, 5, 3, 1, 1, true);
    let y = b.batch_norm("bn", c, 5);
    let y = if shared { b.add("add", y, c) } else { y };
    let y = b.global_avg_pool("pool", y);
    let y = b.linear("fc", y, 5, 2);
    let g = b.finish(y);
    tch::no_grad(|| {
        for node in &g.nodes {
            if let Op::BatchNorm(bn, _) = &node.op {
                let c = bn.running_mean.size()[0];
                let mut t = bn.running_mean.shallow_clone();
                t.copy_(&Tensor::from_slice(
                    &[0.3f32, -0.2, 0.5, 0.0, 1.0][..c as usize],
                ));
                let mut t = bn.running_var.shallow_clone();
                t.copy_(&Tensor::from_slice(
                    &[0.5f32, 2.0, 0.1, 1.5, 3.0][..c as usize],
                ));
                let mut t = bn.ws.as_ref().unwrap().shallow_clone();
                t.copy_(&Tensor::from_slice(
                    &[1.5f32, -0.5, 0.8, 2.0, 0.3][..c as usize],
                ));
                let mut t = bn.bs.as_ref().unwrap().shallow_clone();
                t.copy_(&Tensor::from_slice(
                    &[0.1f32, 0.2, -0.3, 0.4, -0.5][..c as usize],
                ));
            }
        }
    });
    g
}

#[test]
fn folding_matches_tch() {
    tch::manual_seed(1);
    for shared in [false, true] {
        let vs = nn::VarStore::new(Device::Cpu);
        let g = conv_bn_net(&vs, shared);
        let m = to_model_proto(&g, [9, 7], &ExportOptions::default()).unwrap();
        let has_bn = op_types(&m).contains(&"BatchNormalization");
        assert_eq!(has_bn, shared, "BN folded = {}", !has_bn);
        let x = Tensor::randn([2, 3, 9, 7], (Kind::Float, Device::Cpu));
        let want = Vec::<f32>::try_from(g.forward_t(&x, false).view(-1)).unwrap();
        let got = run_tract(&m.encode_to_vec(), &x);
        let diff = max_abs_diff(&want, &got);
        assert!(diff <= 1e-5, "shared = {shared}: max abs diff {diff}");
    }
}

#[test]
fn dead_nodes_are_not_exported_and_a_dropout_output_becomes_identity() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut b = Builder::new(&vs.root());
    let x = b.input();
    let _aux = b.conv("aux", x, 3, 4, 3, 1, 1, true);
    let y = b.global_avg_pool("pool", x);
    let y = b.linear("fc", y, 3, 2);
    let y = b.dropout("dropout", y, 0.5);
    let g = b.finish(y);
    let m = to_model_proto(&g, [8, 8], &ExportOptions::default()).unwrap();
    assert_eq!(
        op_types(&m),
        ["GlobalAveragePool", "Flatten", "Gemm", "Identity"]
    );
    let gp = graph_of(&m);
    assert!(gp.initializer.iter().all(|t| !t.name.starts_with("aux")));
    assert_eq!(gp.node.last().unwrap().output, ["logits"]);
}

fn export_err(g: &Graph, hw: [i64; 2]) -> ExportError {
    match to_model_proto(g, hw, &ExportOptions::default()) {
        Ok(_) => panic!("export should fail"),
        Err(e) => e,
    }
}

#[test]
fn spatial_output_is_refused_naming_the_node() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut b = Builder::new(&vs.root());
    let x = b.input();
    let y = b.conv("head/conv", x, 3, 4, 3, 1, 1, true);
    let g = b.finish(y);
    let e = export_err(&g, [8, 8]);
    assert!(matches!(e, ExportError::Unsupported { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("head/conv") && msg.contains("[N, 4, 8, 8]"),
        "{msg}"
    );
}

#[test]
fn bad_graphs_are_errors_not_panics() {
    let vs = nn::VarStore::new(Device::Cpu);

    // Non-positive input size.
    let g = edge(&vs);
    assert!(matches!(export_err(&g, [0, 128]), ExportError::Graph(_)));

    // An input too small for the first convolution's window.
    let mut b = Builder::new(&(vs.root() / "small"));
    let x = b.input();
    let spec = ConvSpec {
        cin: 3,
        cout: 2,
        kernel: [5, 5],
        stride: [1, 1],
        padding: [0, 0],
        groups: 1,
        bias: true,
    };
    let y = b.conv_with("conv", x, spec);
    let y = b.global_avg_pool("pool", y);
    let g = b.finish(y);
    let e = export_err(&g, [4, 4]);
    assert!(e.to_string().contains("does not fit"), "{e}");

    // Channel mismatch between a layer and its input.
    let mut b = Builder::new(&(vs.root() / "mismatch"));
    let x = b.input();
    let y = b.conv("conv", x, 4, 2, 3, 1, 1, true);
    let y = b.global_avg_pool("pool", y);
    let g = b.finish(y);
    assert!(matches!(
        export_err(&g, [8, 8]),
        ExportError::Malformed { .. }
    ));

    // Fully connected layer on a feature map.
    let mut b = Builder::new(&(vs.root() / "fc"));
    let x = b.input();
    let y = b.linear("fc", x, 3, 2);
    let g = b.finish(y);
    let e = export_err(&g, [8, 8]);
    assert!(
        matches!(e, ExportError::Unsupported { op: "Linear", .. }),
        "{e:?}"
    );

    // Negative (cropping) padding.
    let mut b = Builder::new(&(vs.root() / "crop"));
    let x = b.input();
    let y = b.pad("pad", x, [0, -1, 0, 0]);
    let y = b.global_avg_pool("pool", y);
    let g = b.finish(y);
    assert!(matches!(
        export_err(&g, [8, 8]),
        ExportError::Unsupported { op: "Pad", .. }
    ));

    // Two nodes with one name: the ONNX values would collide.
    let mut b = Builder::new(&(vs.root() / "dup"));
    let x = b.input();
    let y = b.relu("act", x);
    let y = b.relu("act", y);
    let y = b.global_avg_pool("pool", y);
    let g = b.finish(y);
    let e = export_err(&g, [8, 8]);
    assert!(e.to_string().contains("already used"), "{e}");

    // Adding maps of different shapes.
    let mut b = Builder::new(&(vs.root() / "add"));
    let x = b.input();
    let p = b.max_pool("pool0", x, 2, 2, 0);
    let y = b.add("add", x, p);
    let y = b.global_avg_pool("pool", y);
    let g = b.finish(y);
    assert!(matches!(
        export_err(&g, [8, 8]),
        ExportError::Unsupported { op: "Add", .. }
    ));
}

#[test]
fn diverged_parameters_are_refused() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = conv_bn_net(&vs, false);
    tch::no_grad(|| {
        let Op::Conv(conv, _) = &g.nodes[1].op else {
            unreachable!()
        };
        let _ = conv.ws.shallow_clone().fill_(f64::NAN);
    });
    let e = export_err(&g, [8, 8]);
    assert!(
        matches!(&e, ExportError::NonFinite { tensor, .. } if tensor == "conv.weight"),
        "{e:?}"
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let g = conv_bn_net(&vs, false);
    tch::no_grad(|| {
        let Op::BatchNorm(bn, _) = &g.nodes[2].op else {
            unreachable!()
        };
        let _ = bn.running_var.shallow_clone().fill_(-1.0);
    });
    let e = export_err(&g, [8, 8]);
    assert!(e.to_string().contains("running_var"), "{e}");
}

#[test]
fn group_norm_net_matches_tch_in_tract() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Arch::Edge16Gn.build(&vs.root(), 4);
    // Trained-looking affine parameters, not the initial ones and zeros.
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("bn.weight") || name.ends_with("bn.bias") {
                let r = Tensor::randn_like(&t) * 0.3;
                let _ = t.g_add_(&r);
            }
        }
    });
    let m = to_model_proto(&g, [128, 128], &ExportOptions::default()).unwrap();
    let ops = op_types(&m);
    assert!(ops.contains(&"InstanceNormalization"), "{ops:?}");
    assert!(!ops.contains(&"BatchNormalization"), "{ops:?}");
    // Inputs with another lab's colour: the statistics are each image's own.
    let x = Tensor::randn([2, 3, 128, 128], (Kind::Float, Device::Cpu)) * 1.5 + 0.7;
    let want = Vec::<f32>::try_from(g.forward_t(&x, false).view(-1)).unwrap();
    let got = run_tract(&m.encode_to_vec(), &x);
    let diff = max_abs_diff(&want, &got);
    assert!(diff <= 1e-4, "max abs diff {diff}");
    // Each image is normalised alone: the same image gives the same logits whatever shares its batch.
    let alone = Vec::<f32>::try_from(g.forward_t(&x.narrow(0, 0, 1), false).view(-1)).unwrap();
    assert!(max_abs_diff(&alone, &want[..4]) <= 1e-5);
}

/// The pipeline's normalised input for `v / 255` values.
fn normalised(v: &Tensor) -> Tensor {
    let t = |a: [f32; 3]| Tensor::from_slice(&a).view([1, 3, 1, 1]);
    (v - t(leukoscope::preprocess::MEAN)) / t(leukoscope::preprocess::STD)
}

#[test]
fn colour_standardised_nets_match_tch_in_tract_and_cancel_a_lamp() {
    for (arch, op) in [
        (Arch::Edge16In, "InstanceNormalization"),
        (Arch::Edge16Rh, "Log"),
        (Arch::Edge16Wp, "GlobalMaxPool"),
        (Arch::Edge16Grey, "InstanceNormalization"),
        (Arch::Edge16Lc, "ReduceMin"),
    ] {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let g = arch.build(&vs.root(), 4);
        let m = to_model_proto(&g, [128, 128], &ExportOptions::default()).unwrap();
        let ops = op_types(&m);
        assert!(ops.contains(&op), "{arch:?}: {ops:?}");
        // Two images in [0.1, 0.9] with a bright corner (the plasma the white point finds).
        let v = Tensor::rand([2, 3, 128, 128], (Kind::Float, Device::Cpu)) * 0.6 + 0.1;
        let _ = v.narrow(2, 0, 16).narrow(3, 0, 16).fill_(0.9);
        let x = normalised(&v);
        let want = Vec::<f32>::try_from(g.forward_t(&x, false).view(-1)).unwrap();
        let got = run_tract(&m.encode_to_vec(), &x);
        let diff = max_abs_diff(&want, &got);
        assert!(diff <= 1e-4, "{arch:?}: max abs diff {diff}");
        // Another lamp and camera: each channel scaled (a white balance), the same logits (grey: the
        // same scale in every channel, a brighter or dimmer lamp).
        // (Reinhard: the `+ 1/256` of black keeps a lamp from cancelling exactly; a dimmer lamp shifts
        // only l, so the logits move little.)
        let lamp: &[f32] = if matches!(arch, Arch::Edge16Grey | Arch::Edge16Rh) {
            &[0.8, 0.8, 0.8]
        } else {
            &[0.8, 0.95, 0.7]
        };
        let lamp = Tensor::from_slice(lamp).view([1, 3, 1, 1]);
        let shifted =
            Vec::<f32>::try_from(g.forward_t(&normalised(&(&v * lamp)), false).view(-1)).unwrap();
        let moved = max_abs_diff(&want, &shifted);
        assert!(
            moved <= 1e-3,
            "{arch:?}: a white balance moved the logits by {moved}"
        );
        // ... while the net without the standardisation does see it.
        if arch == Arch::Edge16Wp {
            let vs = nn::VarStore::new(Device::Cpu);
            let plain = Arch::Edge16.build(&vs.root(), 4);
            let a = Vec::<f32>::try_from(plain.forward_t(&x, false).view(-1)).unwrap();
            let lamp = Tensor::from_slice(&[0.8f32, 0.95, 0.7]).view([1, 3, 1, 1]);
            let b =
                Vec::<f32>::try_from(plain.forward_t(&normalised(&(&v * lamp)), false).view(-1))
                    .unwrap();
            assert!(max_abs_diff(&a, &b) > 1e-3);
        }
    }
}

#[test]
fn a_black_image_stays_finite_through_the_white_point() {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Arch::Edge16Wp.build(&vs.root(), 4);
    let x = normalised(&Tensor::zeros([1, 3, 128, 128], (Kind::Float, Device::Cpu)));
    let m = to_model_proto(&g, [128, 128], &ExportOptions::default()).unwrap();
    let got = run_tract(&m.encode_to_vec(), &x);
    assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
}
