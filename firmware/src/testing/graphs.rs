//! Small hand-built ONNX graphs for the containment tests: each takes the device's input
//! (`[1, 3, 128, 128]` f32) and misbehaves in one way, with a card that matches it byte for byte.

use tract_onnx::pb;
use tract_onnx::prelude::tract_itertools::Itertools;

use crate::model::{sha256_hex, ModelBytes, ModelSource};
use crate::preprocess;

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attributes: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attributes,
        ..Default::default()
    }
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

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
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

/// A model of these nodes and initializers reading `x` and writing `y`, with the embedded default's card
/// (classes, preprocessing) re-hashed for it.
fn model(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    output: &[i64],
    name: &str,
) -> ModelBytes {
    use prost::Message;
    let input: Vec<i64> = preprocess::INPUT_SHAPE.iter().map(|&d| d as i64).collect();
    let graph = pb::GraphProto {
        name: name.into(),
        node: nodes,
        initializer,
        input: vec![value_info("x", &input)],
        output: vec![value_info("y", output)],
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
    let classes = 4;
    model(
        vec![
            node(
                "ReduceMean",
                &["x"],
                "m",
                vec![ints("axes", &[2, 3]), int("keepdims", 0)],
            ),
            node("MatMul", &["m", "w"], "y", vec![]),
        ],
        vec![float_tensor("w", &[3, classes], &[f32::NAN; 12])],
        &[1, classes],
        "nan-logits",
    )
}

/// The logits plus a constant tensor of `elements` f32 zeros (`ConstantOfShape`), so the graph holds one
/// tensor of that size.
pub fn huge_constant(elements: [i64; 2]) -> ModelBytes {
    let classes = 4;
    model(
        vec![
            node(
                "ReduceMean",
                &["x"],
                "m",
                vec![ints("axes", &[2, 3]), int("keepdims", 0)],
            ),
            node("MatMul", &["m", "w"], "logits", vec![]),
            node("ConstantOfShape", &["shape"], "big", vec![zero()]),
            node("ReduceSum", &["big"], "s", vec![int("keepdims", 1)]),
            node("Add", &["logits", "s"], "y", vec![]),
        ],
        vec![
            float_tensor("w", &[3, classes], &[0.5; 12]),
            int64_tensor("shape", &elements),
        ],
        &[1, classes],
        "huge-constant",
    )
}

/// Names of the ops each graph here uses (for messages).
pub fn ops(m: &ModelBytes) -> String {
    use prost::Message;
    pb::ModelProto::decode(m.onnx.as_slice())
        .map(|p| {
            p.graph
                .unwrap_or_default()
                .node
                .iter()
                .map(|n| n.op_type.clone())
                .join(", ")
        })
        .unwrap_or_default()
}
