//! Small hand-built ONNX graphs for the containment tests: each takes the device's input
//! (`[1, 3, 128, 128]` f32) and misbehaves in one way, with a card that matches it byte for byte. The
//! graph pieces are [`crate::adapt`]'s own.

use tract_onnx::pb;

use crate::adapt::{float_output, float_tensor, node};
use crate::model::{sha256_hex, ModelBytes, ModelSource};
use crate::preprocess;

/// The classes of the embedded card.
const CLASSES: usize = 4;

fn with(mut n: pb::NodeProto, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    n.attribute = attribute;
    n
}

fn ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// The `value` attribute of `ConstantOfShape`: one f32 zero.
fn zero() -> pb::AttributeProto {
    pb::AttributeProto {
        name: "value".into(),
        r#type: pb::attribute_proto::AttributeType::Tensor as i32,
        t: Some(float_tensor("", &[1], &[0.0])),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Logits `output` = (mean of each channel of `x`) · `weight` (`[3, CLASSES]`, all `w`).
fn logits(output: &str, w: f32) -> (Vec<pb::NodeProto>, pb::TensorProto) {
    (
        vec![
            with(
                node("ReduceMean", &["x"], "m"),
                vec![ints("axes", &[2, 3]), int("keepdims", 0)],
            ),
            node("MatMul", &["m", "weight"], output),
        ],
        float_tensor("weight", &[3, CLASSES], &[w; 3 * CLASSES]),
    )
}

/// A model of these nodes and initializers reading `x` and writing `y` (`[1, CLASSES]`), with the
/// embedded default's card (classes, preprocessing) re-hashed for it.
fn model(nodes: Vec<pb::NodeProto>, initializer: Vec<pb::TensorProto>, name: &str) -> ModelBytes {
    use prost::Message;
    let graph = pb::GraphProto {
        name: name.into(),
        node: nodes,
        initializer,
        input: vec![float_output("x", &preprocess::INPUT_SHAPE)],
        output: vec![float_output("y", &[1, CLASSES])],
        ..Default::default()
    };
    let proto = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let onnx = proto.encode_to_vec();
    let mut card = ModelSource::Embedded
        .load()
        .expect("the embedded model loads")
        .card;
    card.name = name.into();
    card.sha256 = sha256_hex(&onnx);
    ModelBytes {
        onnx,
        card,
        path: format!("{name}.onnx").into(),
    }
}

/// Mean of each channel times a matrix of NaN: NaN logits for every input.
pub fn nan_logits() -> ModelBytes {
    let (nodes, weight) = logits("y", f32::NAN);
    model(nodes, vec![weight], "nan-logits")
}

/// The logits plus a constant tensor of `elements` f32 zeros (`ConstantOfShape`), so the graph holds one
/// tensor of that size.
pub fn huge_constant(elements: [i64; 2]) -> ModelBytes {
    let (mut nodes, weight) = logits("logits", 0.5);
    nodes.extend([
        with(node("ConstantOfShape", &["shape"], "big"), vec![zero()]),
        with(node("ReduceSum", &["big"], "s"), vec![int("keepdims", 1)]),
        node("Add", &["logits", "s"], "y"),
    ]);
    model(
        nodes,
        vec![weight, int64_tensor("shape", &elements)],
        "huge-constant",
    )
}
