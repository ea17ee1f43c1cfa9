//! Constructors for the few ONNX protobuf messages the writer emits, so that `mod.rs` reads as a list of
//! operators rather than a wall of struct literals.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// An integer attribute.
pub(super) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub(super) fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub(super) fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// A string attribute.
pub(super) fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// One of the nodes a graph node expands to: named `{node}/{part}`, with the single output `output`.
pub(super) fn part_node(
    op_type: &str,
    node: &str,
    part: &str,
    inputs: Vec<String>,
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    self::node(
        op_type,
        &format!("{node}/{part}"),
        inputs,
        vec![output.to_owned()],
        attribute,
    )
}

/// A node of the default (`ai.onnx`) domain.
pub(super) fn node(
    op_type: &str,
    name: &str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: name.into(),
        input: inputs,
        output: outputs,
        attribute,
        ..Default::default()
    }
}

/// A float tensor (row-major `data` of shape `dims`).
pub(super) fn float_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: data,
        ..Default::default()
    }
}

/// A tensor of `data_type` from its little-endian bytes (the quantized initialisers).
pub(super) fn raw_tensor(
    name: &str,
    dims: &[i64],
    data_type: DataType,
    raw: Vec<u8>,
) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// An int64 tensor (row-major `data` of shape `dims`).
pub(super) fn int64_tensor(name: &str, dims: &[i64], data: Vec<i64>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        int64_data: data,
        ..Default::default()
    }
}

/// One dimension of a value's declared shape.
pub(super) enum Dim<'a> {
    /// A named, free dimension (the batch).
    Param(&'a str),
    /// A fixed size.
    Value(i64),
}

/// A float tensor value of the given shape (graph inputs and outputs).
pub(super) fn float_value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Param(p) => dimension::Value::DimParam((*p).into()),
                Dim::Value(v) => dimension::Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
