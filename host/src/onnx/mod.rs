//! Float ONNX export of a [`Graph`]: the model file the device runs with tract.
//!
//! libtorch cannot write ONNX, so the host writes it itself by walking the same layer graph that training runs
//! with [`Graph::forward_t`]. The model computes what `forward_t(x, false)` computes, up to float rounding: a
//! batch norm whose input is a convolution read by nothing else is folded into that convolution's weights,
//! dropout disappears, and every other node maps onto the opset-13 operator (global pooling: two) that means
//! the same thing, chosen among those both tract and onnxruntime run. The graph has one input, `"input"` (f32 `[N, 3, H, W]`, `N` free), and one output,
//! `"logits"` (f32 `[N, classes]`). Parameters become float initialisers named after their node's path, which
//! is their tch variable's name for a net built at the var store's root (`stage1/conv1/conv` →
//! `stage1.conv1.conv.weight`); folded ones keep the convolution's name.
//!
//! What this module must not do: change what the net computes (no approximation, no quantisation: that is a
//! later, separate step), emit operators outside the default domain at opset 13, write to the var store (it
//! only reads parameters, under [`tch::no_grad`]), touch files, or panic on a graph it cannot express: that is
//! an [`ExportError`] naming the node.

pub mod ensemble;
mod proto;
pub mod quant;

/// Runs exported ONNX bytes with tract on a tch NCHW batch and returns the flat `f32` output: the check that
/// an export means what the tch graph computes (parity tests, host-side spot checks).
pub fn run_tract(bytes: &[u8], x: &tch::Tensor) -> tract_onnx::prelude::TractResult<Vec<f32>> {
    use tract_onnx::prelude::*;
    let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(x.to_kind(tch::Kind::Float).contiguous().view(-1))?;
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(&shape, &data)?;
    let out = plan.run(tvec!(input.into_tvalue()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;

use prost::Message;
use tch::{nn, Device, Kind, TchError, Tensor};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};

use crate::nets::graph::{
    lms_to_lab, ColourNorm, ConvSpec, Graph, Id, Node, Op, LUMA, MIN_LMS, MIN_WHITE, RGB_TO_LMS,
};
use leukoscope::preprocess;
use proto::{
    attr_float, attr_int, attr_ints, attr_string, float_tensor, float_value_info, int64_tensor, Dim,
};

/// ONNX operator set the models are written against.
pub const OPSET_VERSION: i64 = 13;
/// ONNX IR version of the written models (IR 7 is the one that introduced opset 13).
pub const IR_VERSION: i64 = 7;
/// `ModelProto.producer_name`.
pub const PRODUCER_NAME: &str = "leukoscope-train";
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "logits";
/// Symbolic name of the batch dimension of the input and the output.
pub const BATCH_DIM: &str = "N";
/// Channels of the graph input (RGB).
pub const INPUT_CHANNELS: i64 = 3;

/// Choices that do not change what the model computes.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Fold batch norms into the convolution that feeds them (default). Off, every batch norm becomes a
    /// `BatchNormalization` node; useful only to check the folding.
    pub fold_batch_norm: bool,
    /// `GraphProto.name`.
    pub graph_name: String,
    /// `ModelProto.doc_string`.
    pub doc_string: String,
    /// `ModelProto.model_version`.
    pub model_version: i64,
    /// `ModelProto.metadata_props`, in order.
    pub metadata: Vec<(String, String)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            fold_batch_norm: true,
            graph_name: "leukoscope".into(),
            doc_string: String::new(),
            model_version: 1,
            metadata: Vec::new(),
        }
    }
}

/// Why a graph could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The graph as a whole is unusable: no input node, an output out of range, a bad input size.
    #[error("cannot export graph: {0}")]
    Graph(String),
    /// A node does something this writer cannot express in ONNX.
    #[error("cannot export node {id} `{node}` ({op}): unsupported: {what}")]
    Unsupported {
        /// Index of the node.
        id: Id,
        /// Its name.
        node: String,
        /// Its operation.
        op: &'static str,
        /// What is unsupported.
        what: String,
    },
    /// A node is inconsistent: wrong number of inputs, mismatched shapes, parameters of the wrong shape, a name
    /// already taken.
    #[error("cannot export node {id} `{node}` ({op}): {what}")]
    Malformed {
        /// Index of the node.
        id: Id,
        /// Its name.
        node: String,
        /// Its operation.
        op: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A parameter could not be read from tch.
    #[error("cannot export node {id} `{node}` ({op}): reading `{tensor}` failed")]
    Tensor {
        /// Index of the node.
        id: Id,
        /// Its name.
        node: String,
        /// Its operation.
        op: &'static str,
        /// The parameter (initialiser name).
        tensor: String,
        /// The tch error (boxed: it is large and errors are rare).
        #[source]
        source: Box<TchError>,
    },
    /// A parameter (after folding) holds NaN or an infinity: the training diverged or the statistics are bad.
    #[error("cannot export node {id} `{node}` ({op}): `{tensor}` has non-finite values")]
    NonFinite {
        /// Index of the node.
        id: Id,
        /// Its name.
        node: String,
        /// Its operation.
        op: &'static str,
        /// The parameter (initialiser name).
        tensor: String,
    },
}

/// The ONNX model for `graph` on `input_hw` = `[H, W]` inputs (the batch stays free).
pub fn to_model_proto(
    graph: &Graph,
    input_hw: [i64; 2],
    opts: &ExportOptions,
) -> Result<ModelProto, ExportError> {
    let graph_proto = tch::no_grad(|| Writer::new(graph)?.write(input_hw, opts))?;
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        producer_name: PRODUCER_NAME.into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: opts.model_version,
        doc_string: opts.doc_string.clone(),
        graph: Some(graph_proto),
        metadata_props: opts
            .metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    })
}

/// [`to_model_proto`], encoded: the bytes of a `.onnx` file.
pub fn export(
    graph: &Graph,
    input_hw: [i64; 2],
    opts: &ExportOptions,
) -> Result<Vec<u8>, ExportError> {
    to_model_proto(graph, input_hw, opts).map(|m| m.encode_to_vec())
}

/// Shape of a value without its batch dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `[N, c, h, w]`.
    Map { c: i64, h: i64, w: i64 },
    /// `[N, c]`.
    Flat { c: i64 },
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map { c, h, w } => write!(f, "[N, {c}, {h}, {w}]"),
            Shape::Flat { c } => write!(f, "[N, {c}]"),
        }
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Input => "Input",
        Op::Conv(..) => "Conv",
        Op::BatchNorm(..) => "BatchNorm",
        Op::GroupNorm(..) => "GroupNorm",
        Op::Relu => "Relu",
        Op::Relu6 => "Relu6",
        Op::Add => "Add",
        Op::Concat => "Concat",
        Op::MaxPool { .. } => "MaxPool",
        Op::AvgPool { .. } => "AvgPool",
        Op::Pad(_) => "Pad",
        Op::GlobalAvgPool => "GlobalAvgPool",
        Op::Linear(_) => "Linear",
        Op::Dropout(_) => "Dropout",
        Op::Scale(_) => "Scale",
        Op::ColourNorm(_) => "ColourNorm",
    }
}

/// A node being exported, for error messages.
#[derive(Clone, Copy)]
struct At<'g> {
    id: Id,
    node: &'g Node,
}

impl At<'_> {
    fn unsupported(self, what: impl Into<String>) -> ExportError {
        ExportError::Unsupported {
            id: self.id,
            node: self.node.name.clone(),
            op: op_name(&self.node.op),
            what: what.into(),
        }
    }

    fn malformed(self, what: impl Into<String>) -> ExportError {
        ExportError::Malformed {
            id: self.id,
            node: self.node.name.clone(),
            op: op_name(&self.node.op),
            what: what.into(),
        }
    }

    fn tensor_error(self, tensor: &str, source: TchError) -> ExportError {
        ExportError::Tensor {
            id: self.id,
            node: self.node.name.clone(),
            op: op_name(&self.node.op),
            tensor: tensor.into(),
            source: Box::new(source),
        }
    }

    /// `data` unchanged, or [`ExportError::NonFinite`].
    fn finite(self, tensor: &str, data: Vec<f32>) -> Result<Vec<f32>, ExportError> {
        if data.iter().all(|v| v.is_finite()) {
            Ok(data)
        } else {
            Err(ExportError::NonFinite {
                id: self.id,
                node: self.node.name.clone(),
                op: op_name(&self.node.op),
                tensor: tensor.into(),
            })
        }
    }

    /// The initialiser name of this node's parameter `suffix`, as tch names the variable.
    fn param(self, suffix: &str) -> String {
        let mut path: Vec<&str> = self
            .node
            .name
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        path.push(suffix);
        path.join(".")
    }

    /// A parameter as `(shape, row-major f32 values)`.
    fn read(self, tensor: &str, t: &Tensor) -> Result<(Vec<i64>, Vec<f32>), ExportError> {
        let values = t
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_view([-1i64]))
            .and_then(Vec::<f32>::try_from)
            .map_err(|e| self.tensor_error(tensor, e))?;
        Ok((t.size(), values))
    }

    /// A per-channel parameter of `c` values.
    fn read_vector(self, tensor: &str, t: &Tensor, c: i64) -> Result<Vec<f32>, ExportError> {
        let (dims, values) = self.read(tensor, t)?;
        if dims != [c] {
            return Err(self.malformed(format!("`{tensor}` has shape {dims:?}, expected [{c}]")));
        }
        Ok(values)
    }
}

/// Output side of a sliding window, or `None` if the window does not fit (or the numbers overflow).
fn window_out(len: i64, kernel: i64, stride: i64, padding: i64) -> Option<i64> {
    let span = len
        .checked_add(padding.checked_mul(2)?)?
        .checked_sub(kernel)?;
    (span >= 0 && stride >= 1).then(|| span / stride + 1)
}

/// Batch-norm parameters as inference uses them.
struct BnParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

/// Walks a [`Graph`] once, in order, emitting ONNX nodes and initialisers.
struct Writer<'g> {
    graph: &'g Graph,
    /// For a convolution: the batch norm folded into it.
    fold_into: Vec<Option<Id>>,
    /// Whether a batch norm is folded into its convolution.
    folded: Vec<bool>,
    /// Whether a node contributes to the output (others are not exported).
    live: Vec<bool>,
    /// ONNX value holding each node's output, once emitted.
    values: Vec<Option<String>>,
    /// Shape of each node's output, once emitted.
    shapes: Vec<Option<Shape>>,
    /// Every value and initialiser name handed out.
    names: HashSet<String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The shared Clip bounds of ReLU6, once emitted.
    relu6_bounds: Option<[String; 2]>,
}

impl<'g> Writer<'g> {
    /// Checks the graph's structure (node 0 is the only input, inputs precede users, arities).
    fn new(graph: &'g Graph) -> Result<Self, ExportError> {
        let n = graph.nodes.len();
        match graph.nodes.first() {
            Some(Node { op: Op::Input, .. }) => {}
            Some(_) => return Err(ExportError::Graph("node 0 is not the input".into())),
            None => return Err(ExportError::Graph("no nodes".into())),
        }
        if graph.output >= n {
            return Err(ExportError::Graph(format!(
                "output {} is not a node (the graph has {n})",
                graph.output
            )));
        }
        for (id, node) in graph.nodes.iter().enumerate() {
            let at = At { id, node };
            if let Some(&bad) = node.inputs.iter().find(|&&i| i >= id) {
                return Err(at.malformed(format!("input {bad} does not precede the node")));
            }
            let arity_ok = match node.op {
                Op::Input => id == 0 && node.inputs.is_empty(),
                Op::Add => node.inputs.len() == 2,
                Op::Concat => !node.inputs.is_empty(),
                _ => node.inputs.len() == 1,
            };
            if !arity_ok {
                return Err(if matches!(node.op, Op::Input) {
                    at.unsupported("a second graph input")
                } else {
                    at.malformed(format!("{} inputs", node.inputs.len()))
                });
            }
        }
        let mut live = vec![false; n];
        live[graph.output] = true;
        for id in (0..n).rev() {
            if live[id] {
                for &i in &graph.nodes[id].inputs {
                    live[i] = true;
                }
            }
        }
        Ok(Writer {
            graph,
            fold_into: vec![None; n],
            folded: vec![false; n],
            live,
            values: vec![None; n],
            shapes: vec![None; n],
            names: HashSet::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            relu6_bounds: None,
        })
    }

    /// Marks the batch norms to fold: those whose input is a convolution that nothing else (live) reads.
    fn plan_folding(&mut self) {
        let n = self.graph.nodes.len();
        let mut uses = vec![0usize; n];
        uses[self.graph.output] += 1;
        for (id, node) in self.graph.nodes.iter().enumerate() {
            if self.live[id] {
                for &i in &node.inputs {
                    uses[i] += 1;
                }
            }
        }
        for (id, node) in self.graph.nodes.iter().enumerate() {
            if let (true, Op::BatchNorm(..), [conv]) = (self.live[id], &node.op, &node.inputs[..]) {
                if matches!(self.graph.nodes[*conv].op, Op::Conv(..)) && uses[*conv] == 1 {
                    self.fold_into[*conv] = Some(id);
                    self.folded[id] = true;
                }
            }
        }
    }

    fn write(
        mut self,
        input_hw: [i64; 2],
        opts: &ExportOptions,
    ) -> Result<GraphProto, ExportError> {
        let [h, w] = input_hw;
        if h < 1 || w < 1 {
            return Err(ExportError::Graph(format!(
                "input size {h}×{w} is not positive"
            )));
        }
        if opts.fold_batch_norm {
            self.plan_folding();
        }
        let graph = self.graph;
        self.names.insert(OUTPUT_NAME.into());
        self.names.insert(INPUT_NAME.into());
        self.values[0] = Some(INPUT_NAME.into());
        self.shapes[0] = Some(Shape::Map {
            c: INPUT_CHANNELS,
            h,
            w,
        });
        for (id, node) in graph.nodes.iter().enumerate().skip(1) {
            if self.live[id] {
                self.emit(At { id, node })?;
            }
        }
        let out = At {
            id: graph.output,
            node: &graph.nodes[graph.output],
        };
        let classes = match self.shapes[graph.output] {
            Some(Shape::Flat { c }) => c,
            Some(shape) => {
                return Err(out.unsupported(format!(
                    "the output must be [N, classes] logits, found {shape}"
                )))
            }
            None => return Err(out.malformed("the output was never computed")),
        };
        if self.values[graph.output].as_deref() != Some(OUTPUT_NAME) {
            return Err(out.malformed("the output value is not `logits`"));
        }
        Ok(GraphProto {
            name: opts.graph_name.clone(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![float_value_info(
                INPUT_NAME,
                &[
                    Dim::Param(BATCH_DIM),
                    Dim::Value(INPUT_CHANNELS),
                    Dim::Value(h),
                    Dim::Value(w),
                ],
            )],
            output: vec![float_value_info(
                OUTPUT_NAME,
                &[Dim::Param(BATCH_DIM), Dim::Value(classes)],
            )],
            ..Default::default()
        })
    }

    /// Reserves a value or initialiser name.
    fn claim(&mut self, at: At, name: String) -> Result<String, ExportError> {
        if name.is_empty() {
            return Err(at.malformed("empty name (node names name the ONNX values)"));
        }
        if !self.names.insert(name.clone()) {
            return Err(at.malformed(format!("the ONNX name `{name}` is already used")));
        }
        Ok(name)
    }

    /// The name of the value `id` computes: `logits` for the graph output, else the node's name.
    fn out_name(&mut self, id: Id) -> Result<String, ExportError> {
        let node = &self.graph.nodes[id];
        if id == self.graph.output {
            Ok(OUTPUT_NAME.into())
        } else {
            self.claim(At { id, node }, node.name.clone())
        }
    }

    /// Input `k` of the node: its ONNX value and shape.
    fn input(&self, at: At, k: usize) -> Result<(String, Shape), ExportError> {
        let id = at.node.inputs[k];
        match (&self.values[id], self.shapes[id]) {
            (Some(v), Some(s)) => Ok((v.clone(), s)),
            _ => Err(at.malformed(format!("input {id} has no value"))),
        }
    }

    fn float_init(
        &mut self,
        at: At,
        name: String,
        dims: &[i64],
        data: Vec<f32>,
    ) -> Result<String, ExportError> {
        let data = at.finite(&name, data)?;
        let name = self.claim(at, name)?;
        self.initializers.push(float_tensor(&name, dims, data));
        Ok(name)
    }

    fn push_node(
        &mut self,
        at: At,
        op_type: &str,
        inputs: Vec<String>,
        output: String,
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) {
        self.nodes.push(proto::node(
            op_type,
            &at.node.name,
            inputs,
            vec![output],
            attrs,
        ));
    }

    /// Records the output of node `id`.
    fn set(&mut self, id: Id, value: String, shape: Shape) {
        self.values[id] = Some(value);
        self.shapes[id] = Some(shape);
    }

    fn emit(&mut self, at: At<'g>) -> Result<(), ExportError> {
        match &at.node.op {
            Op::Input => Err(at.unsupported("a second graph input")),
            Op::Conv(conv, spec) => self.conv(at, conv, spec),
            Op::BatchNorm(bn, eps) => {
                if self.folded[at.id] {
                    // Emitted with its convolution.
                    Ok(())
                } else {
                    self.batch_norm(at, bn, *eps)
                }
            }
            Op::GroupNorm(gn, eps) => self.group_norm(at, gn, *eps),
            Op::Relu => self.unary(at, "Relu", vec![], vec![]),
            Op::Relu6 => {
                let bounds = match &self.relu6_bounds {
                    Some(b) => b.clone(),
                    None => {
                        let lo = self.float_init(at, "relu6.min".into(), &[], vec![0.0])?;
                        let hi = self.float_init(at, "relu6.max".into(), &[], vec![6.0])?;
                        self.relu6_bounds = Some([lo.clone(), hi.clone()]);
                        [lo, hi]
                    }
                };
                self.unary(at, "Clip", bounds.to_vec(), vec![])
            }
            Op::Scale(s) => {
                let s = self.float_init(at, at.param("scale"), &[], vec![*s as f32])?;
                self.unary(at, "Mul", vec![s], vec![])
            }
            Op::Add => {
                let (a, sa) = self.input(at, 0)?;
                let (b, sb) = self.input(at, 1)?;
                if sa != sb {
                    return Err(
                        at.unsupported(format!("adding {sa} to {sb} (shapes must be equal)"))
                    );
                }
                let out = self.out_name(at.id)?;
                self.push_node(at, "Add", vec![a, b], out.clone(), vec![]);
                self.set(at.id, out, sa);
                Ok(())
            }
            Op::Concat => self.concat(at),
            Op::ColourNorm(c) => self.colour_norm(at, *c),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => self.pool(at, "MaxPool", *kernel, *stride, *padding),
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => self.pool(at, "AveragePool", *kernel, *stride, *padding),
            Op::Pad(pads) => self.pad(at, *pads),
            Op::GlobalAvgPool => {
                let (x, shape) = self.input(at, 0)?;
                let Shape::Map { c, .. } = shape else {
                    return Err(at.unsupported(format!("global pooling of {shape}")));
                };
                let pooled = self.claim(at, format!("{}/pooled", at.node.name))?;
                let out = self.out_name(at.id)?;
                self.push_node(at, "GlobalAveragePool", vec![x], pooled.clone(), vec![]);
                self.nodes.push(proto::node(
                    "Flatten",
                    &format!("{}/flatten", at.node.name),
                    vec![pooled],
                    vec![out.clone()],
                    vec![attr_int("axis", 1)],
                ));
                self.set(at.id, out, Shape::Flat { c });
                Ok(())
            }
            Op::Linear(linear) => self.linear(at, linear),
            Op::Dropout(_) => {
                let (x, shape) = self.input(at, 0)?;
                if at.id == self.graph.output {
                    let out = self.out_name(at.id)?;
                    self.push_node(at, "Identity", vec![x], out.clone(), vec![]);
                    self.set(at.id, out, shape);
                } else {
                    // Identity at inference: users read the input directly.
                    self.set(at.id, x, shape);
                }
                Ok(())
            }
        }
    }

    /// An element-wise operator on input 0 plus extra constant inputs.
    fn unary(
        &mut self,
        at: At,
        op_type: &str,
        extra_inputs: Vec<String>,
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let out = self.out_name(at.id)?;
        let mut inputs = vec![x];
        inputs.extend(extra_inputs);
        self.push_node(at, op_type, inputs, out.clone(), attrs);
        self.set(at.id, out, shape);
        Ok(())
    }

    fn bn_params(
        &self,
        at: At,
        bn: &nn::BatchNorm,
        eps: f64,
        c: i64,
    ) -> Result<BnParams, ExportError> {
        let mean = at.read_vector(&at.param("running_mean"), &bn.running_mean, c)?;
        let var = at.read_vector(&at.param("running_var"), &bn.running_var, c)?;
        let gamma = match &bn.ws {
            Some(t) => at.read_vector(&at.param("weight"), t, c)?,
            None => vec![1.0; var.len()],
        };
        let beta = match &bn.bs {
            Some(t) => at.read_vector(&at.param("bias"), t, c)?,
            None => vec![0.0; var.len()],
        };
        if !(eps.is_finite() && var.iter().all(|&v| f64::from(v) + eps > 0.0)) {
            return Err(at.malformed(format!("running_var + eps (eps = {eps}) must be positive")));
        }
        Ok(BnParams {
            gamma,
            beta,
            mean,
            var,
        })
    }

    fn conv(&mut self, at: At<'g>, conv: &nn::Conv2D, spec: &ConvSpec) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Map { c, h, w } = shape else {
            return Err(at.unsupported(format!("convolution of {shape}")));
        };
        let ConvSpec {
            cin,
            cout,
            kernel: [kh, kw],
            stride: [sh, sw],
            padding: [ph, pw],
            groups,
            ..
        } = *spec;
        if cin != c {
            return Err(at.malformed(format!("expects {cin} channels, input is {shape}")));
        }
        if cout < 1 || groups < 1 || cin % groups != 0 || cout % groups != 0 {
            return Err(at.malformed(format!("{cin} → {cout} channels in {groups} groups")));
        }
        if kh < 1 || kw < 1 || ph < 0 || pw < 0 {
            return Err(at.malformed(format!("kernel {kh}×{kw}, padding {ph}×{pw}")));
        }
        let (Some(oh), Some(ow)) = (window_out(h, kh, sh, ph), window_out(w, kw, sw, pw)) else {
            return Err(at.malformed(format!(
                "kernel {kh}×{kw} stride {sh}×{sw} padding {ph}×{pw} does not fit {shape}"
            )));
        };
        let weight_name = at.param("weight");
        let bias_name = at.param("bias");
        let (dims, mut weight) = at.read(&weight_name, &conv.ws)?;
        let want = [cout, cin / groups, kh, kw];
        if dims != want {
            return Err(at.malformed(format!(
                "`{weight_name}` has shape {dims:?}, expected {want:?}"
            )));
        }
        let mut bias = match &conv.bs {
            Some(b) => Some(at.read_vector(&bias_name, b, cout)?),
            None => None,
        };
        let out_shape = Shape::Map {
            c: cout,
            h: oh,
            w: ow,
        };
        let mut out_id = at.id;
        if let Some(bn_id) = self.fold_into[at.id] {
            let bn_at = At {
                id: bn_id,
                node: &self.graph.nodes[bn_id],
            };
            let Op::BatchNorm(bn, eps) = &bn_at.node.op else {
                return Err(bn_at.malformed("folding target is not a batch norm"));
            };
            if bn.nd != 2 {
                return Err(bn_at.unsupported(format!("{}-d batch norm of {out_shape}", bn.nd)));
            }
            let p = self.bn_params(bn_at, bn, *eps, cout)?;
            let per_channel = weight.len() / p.var.len().max(1);
            let mut folded_bias = bias.unwrap_or_else(|| vec![0.0; p.var.len()]);
            for (o, (ws, b)) in weight
                .chunks_mut(per_channel.max(1))
                .zip(folded_bias.iter_mut())
                .enumerate()
            {
                let scale = f64::from(p.gamma[o]) / (f64::from(p.var[o]) + eps).sqrt();
                for v in ws {
                    *v = (f64::from(*v) * scale) as f32;
                }
                *b = ((f64::from(*b) - f64::from(p.mean[o])) * scale + f64::from(p.beta[o])) as f32;
            }
            bias = Some(folded_bias);
            out_id = bn_id;
        }
        let mut inputs = vec![x, self.float_init(at, weight_name, &want, weight)?];
        if let Some(bias) = bias {
            inputs.push(self.float_init(at, bias_name, &[cout], bias)?);
        }
        let out = self.out_name(out_id)?;
        let attrs = vec![
            attr_ints("kernel_shape", &[kh, kw]),
            attr_ints("strides", &[sh, sw]),
            attr_ints("pads", &[ph, pw, ph, pw]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", groups),
        ];
        self.push_node(at, "Conv", inputs, out.clone(), attrs);
        self.shapes[at.id] = Some(out_shape);
        self.set(out_id, out, out_shape);
        Ok(())
    }

    fn batch_norm(&mut self, at: At, bn: &nn::BatchNorm, eps: f64) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let c = match (bn.nd, shape) {
            (2, Shape::Map { c, .. }) | (1, Shape::Flat { c }) => c,
            _ => return Err(at.unsupported(format!("{}-d batch norm of {shape}", bn.nd))),
        };
        let p = self.bn_params(at, bn, eps, c)?;
        let inputs = vec![
            x,
            self.float_init(at, at.param("weight"), &[c], p.gamma)?,
            self.float_init(at, at.param("bias"), &[c], p.beta)?,
            self.float_init(at, at.param("running_mean"), &[c], p.mean)?,
            self.float_init(at, at.param("running_var"), &[c], p.var)?,
        ];
        let out = self.out_name(at.id)?;
        let attrs = vec![attr_float("epsilon", eps as f32)];
        self.push_node(at, "BatchNormalization", inputs, out.clone(), attrs);
        self.set(at.id, out, shape);
        Ok(())
    }

    /// A group norm in opset-13 operators: `[N, C, H, W]` reshaped to `[N, G, C/G·H·W]`, an
    /// `InstanceNormalization` per group (unit scale, zero shift), reshaped back, then the per-channel
    /// scale and shift.
    fn group_norm(&mut self, at: At, gn: &nn::GroupNorm, eps: f64) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Map { c, h, w } = shape else {
            return Err(at.unsupported(format!("group norm of {shape}")));
        };
        let g = gn.num_groups;
        if g < 1 || c % g != 0 || gn.num_channels != c {
            return Err(at.malformed(format!(
                "{g} groups of {} channels on {shape}",
                gn.num_channels
            )));
        }
        let gamma = match &gn.ws {
            Some(t) => at.read_vector(&at.param("weight"), t, c)?,
            None => vec![1.0; c as usize],
        };
        let beta = match &gn.bs {
            Some(t) => at.read_vector(&at.param("bias"), t, c)?,
            None => vec![0.0; c as usize],
        };
        let name = &at.node.name;
        let grouped_shape = self.claim(at, at.param("grouped_shape"))?;
        self.initializers
            .push(int64_tensor(&grouped_shape, &[3], vec![0, g, -1]));
        let map_shape = self.claim(at, at.param("map_shape"))?;
        self.initializers
            .push(int64_tensor(&map_shape, &[4], vec![0, c, h, w]));
        let ones = self.float_init(at, at.param("group_scale"), &[g], vec![1.0; g as usize])?;
        let zeros = self.float_init(at, at.param("group_bias"), &[g], vec![0.0; g as usize])?;
        let gamma = self.float_init(at, at.param("weight"), &[c, 1, 1], gamma)?;
        let beta = self.float_init(at, at.param("bias"), &[c, 1, 1], beta)?;
        let grouped = self.claim(at, format!("{name}/grouped"))?;
        let normed = self.claim(at, format!("{name}/normed"))?;
        let map = self.claim(at, format!("{name}/map"))?;
        let scaled = self.claim(at, format!("{name}/scaled"))?;
        let out = self.out_name(at.id)?;
        let node = |op: &str, part: &str, inputs: Vec<String>, output: &String, attrs| {
            proto::part_node(op, name, part, inputs, output, attrs)
        };
        self.nodes.extend([
            node("Reshape", "group", vec![x, grouped_shape], &grouped, vec![]),
            node(
                "InstanceNormalization",
                "normalise",
                vec![grouped, ones, zeros],
                &normed,
                vec![attr_float("epsilon", eps as f32)],
            ),
            node("Reshape", "ungroup", vec![normed, map_shape], &map, vec![]),
            node("Mul", "scale", vec![map, gamma], &scaled, vec![]),
            node("Add", "shift", vec![scaled, beta], &out, vec![]),
        ]);
        self.set(at.id, out, shape);
        Ok(())
    }

    /// [`ColourNorm`]: `InstanceNormalization` without affine; the white point's `Mul`/`Add` (back to
    /// `v / 255`), `AveragePool`, `GlobalMaxPool`, `Max`, `Div`, `Sub`, `Div`; grey's 1×1 `Conv` to
    /// three copies of the luma (the normalisation folded in) and `InstanceNormalization`; luma-chroma's
    /// white point, a 1×1 `Conv` (luma), `ReduceMax` − `ReduceMin` over the channels (chroma), `Concat`
    /// and `InstanceNormalization`.
    fn colour_norm(&mut self, at: At, c: ColourNorm) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Map { c: channels, h, w } = shape else {
            return Err(at.unsupported(format!("colour standardisation of {shape}")));
        };
        let name = at.node.name.clone();
        let node = |op: &str, part: &str, inputs: Vec<String>, output: &String, attrs| {
            proto::part_node(op, &name, part, inputs, output, attrs)
        };
        let out = self.out_name(at.id)?;
        match c {
            ColourNorm::Instance { eps } => self.standardise(at, x, channels, eps, &out)?,
            ColourNorm::Grey { eps } => {
                if channels != 3 {
                    return Err(at.malformed(format!("grey needs RGB, input is {shape}")));
                }
                // y = Σ luma[c]·(x[c]·std[c] + mean[c]) for each of the three outputs.
                let per_input: Vec<f32> = (0..3).map(|c| LUMA[c] * preprocess::STD[c]).collect();
                let bias: f32 = (0..3).map(|c| LUMA[c] * preprocess::MEAN[c]).sum();
                let weight = per_input.repeat(3);
                let weight = self.float_init(at, at.param("luma"), &[3, 3, 1, 1], weight)?;
                let bias = self.float_init(at, at.param("luma_bias"), &[3], vec![bias; 3])?;
                let luma = self.claim(at, format!("{name}/luma"))?;
                self.nodes.push(node(
                    "Conv",
                    "luma",
                    vec![x, weight, bias],
                    &luma,
                    vec![attr_ints("kernel_shape", &[1, 1])],
                ));
                self.standardise(at, luma, 3, eps, &out)?;
            }
            ColourNorm::Reinhard { eps } => {
                if channels != 3 {
                    return Err(at.malformed(format!("lαβ needs RGB, input is {shape}")));
                }
                // LMS of u = (x·std + mean)·255/256 + 1/256: the normalisation folded into a 1×1 conv.
                let k = 255.0 / 256.0;
                let mut weight = Vec::with_capacity(9);
                let mut bias = Vec::with_capacity(3);
                for row in &RGB_TO_LMS {
                    weight.extend((0..3).map(|c| row[c] * preprocess::STD[c] * k));
                    bias.push(
                        (0..3)
                            .map(|c| row[c] * (preprocess::MEAN[c] * k + 1.0 / 256.0))
                            .sum::<f32>(),
                    );
                }
                let weight = self.float_init(at, at.param("lms"), &[3, 3, 1, 1], weight)?;
                let bias = self.float_init(at, at.param("lms_bias"), &[3], bias)?;
                let floor = self.float_init(at, at.param("min_lms"), &[], vec![MIN_LMS])?;
                // log10 = ln / ln 10, folded into the rotation to lαβ.
                let rot: Vec<f32> = lms_to_lab()
                    .iter()
                    .flatten()
                    .map(|v| v / std::f32::consts::LN_10)
                    .collect();
                let rot = self.float_init(at, at.param("lab"), &[3, 3, 1, 1], rot)?;
                let part = |s: &mut Self, p: &str| s.claim(at, format!("{name}/{p}"));
                let lms = part(self, "lms")?;
                let floored = part(self, "lms_floored")?;
                let ln = part(self, "ln")?;
                let lab = part(self, "lab")?;
                let one_by_one = || vec![attr_ints("kernel_shape", &[1, 1])];
                self.nodes.extend([
                    node("Conv", "lms", vec![x, weight, bias], &lms, one_by_one()),
                    node("Max", "floor", vec![lms, floor], &floored, vec![]),
                    node("Log", "ln", vec![floored], &ln, vec![]),
                    node("Conv", "lab", vec![ln, rot], &lab, one_by_one()),
                ]);
                self.standardise(at, lab, 3, eps, &out)?;
            }
            ColourNorm::WhitePoint { block } => {
                let (ratio, mean, std) = self.white_balanced(at, x, shape, block)?;
                let centred = self.claim(at, format!("{name}/centred"))?;
                self.nodes.extend([
                    node("Sub", "shift", vec![ratio, mean], &centred, vec![]),
                    node("Div", "scale", vec![centred, std], &out, vec![]),
                ]);
            }
            ColourNorm::LumaChroma { block, eps } => {
                let (ratio, _, _) = self.white_balanced(at, x, shape, block)?;
                let weight = self.float_init(at, at.param("luma"), &[1, 3, 1, 1], LUMA.to_vec())?;
                let part = |s: &mut Self, p: &str| s.claim(at, format!("{name}/{p}"));
                let luma = part(self, "luma")?;
                let most = part(self, "most")?;
                let least = part(self, "least")?;
                let chroma = part(self, "chroma")?;
                let both = part(self, "both")?;
                let over_channels = || vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)];
                self.nodes.extend([
                    node(
                        "Conv",
                        "luma",
                        vec![ratio.clone(), weight],
                        &luma,
                        vec![attr_ints("kernel_shape", &[1, 1])],
                    ),
                    node(
                        "ReduceMax",
                        "most",
                        vec![ratio.clone()],
                        &most,
                        over_channels(),
                    ),
                    node("ReduceMin", "least", vec![ratio], &least, over_channels()),
                    node("Sub", "chroma", vec![most, least], &chroma, vec![]),
                    node(
                        "Concat",
                        "both",
                        vec![luma, chroma],
                        &both,
                        vec![attr_int("axis", 1)],
                    ),
                ]);
                self.standardise(at, both, 2, eps, &out)?;
            }
        }
        let shape = Shape::Map {
            c: c.channels(),
            h,
            w,
        };
        self.set(at.id, out, shape);
        Ok(())
    }

    /// Each channel's `v / 255` of the normalised RGB input `x` divided by the image's white point (the
    /// brightest `block`-square average, at least [`MIN_WHITE`]); returns the quotient's name and those of
    /// the pipeline's mean and std initialisers.
    fn white_balanced(
        &mut self,
        at: At,
        x: String,
        shape: Shape,
        block: i64,
    ) -> Result<(String, String, String), ExportError> {
        let Shape::Map { c: 3, h, w } = shape else {
            return Err(at.malformed(format!("a white point needs RGB, input is {shape}")));
        };
        if block < 1 || block > h.min(w) {
            return Err(at.malformed(format!("{block}-pixel squares on {shape}")));
        }
        let name = at.node.name.clone();
        let (mean, std) = (preprocess::MEAN.to_vec(), preprocess::STD.to_vec());
        let mean = self.float_init(at, at.param("mean"), &[1, 3, 1, 1], mean)?;
        let std = self.float_init(at, at.param("std"), &[1, 3, 1, 1], std)?;
        let floor = self.float_init(at, at.param("min_white"), &[], vec![MIN_WHITE as f32])?;
        let part = |s: &mut Self, p: &str| s.claim(at, format!("{name}/{p}"));
        let spread = part(self, "spread")?;
        let v = part(self, "v")?;
        let blocks = part(self, "blocks")?;
        let brightest = part(self, "brightest")?;
        let white = part(self, "white")?;
        let ratio = part(self, "ratio")?;
        let node = |op: &str, part: &str, inputs: Vec<String>, output: &String, attrs| {
            proto::part_node(op, &name, part, inputs, output, attrs)
        };
        self.nodes.extend([
            node("Mul", "unscale", vec![x, std.clone()], &spread, vec![]),
            node("Add", "unshift", vec![spread, mean.clone()], &v, vec![]),
            node(
                "AveragePool",
                "blocks",
                vec![v.clone()],
                &blocks,
                vec![
                    attr_ints("kernel_shape", &[block, block]),
                    attr_ints("strides", &[block, block]),
                ],
            ),
            node(
                "GlobalMaxPool",
                "brightest",
                vec![blocks],
                &brightest,
                vec![],
            ),
            node("Max", "floor", vec![brightest, floor], &white, vec![]),
            node("Div", "white", vec![v, white], &ratio, vec![]),
        ]);
        Ok((ratio, mean, std))
    }

    /// `InstanceNormalization` without affine of `x` (`channels` channels) into `out`: each image's channels
    /// to zero mean and unit variance.
    fn standardise(
        &mut self,
        at: At,
        x: String,
        channels: i64,
        eps: f64,
        out: &str,
    ) -> Result<(), ExportError> {
        let n = channels as usize;
        let ones = self.float_init(at, at.param("scale"), &[channels], vec![1.0; n])?;
        let zeros = self.float_init(at, at.param("bias"), &[channels], vec![0.0; n])?;
        self.nodes.push(proto::node(
            "InstanceNormalization",
            &format!("{}/normalise", at.node.name),
            vec![x, ones, zeros],
            vec![out.to_owned()],
            vec![attr_float("epsilon", eps as f32)],
        ));
        Ok(())
    }

    fn concat(&mut self, at: At) -> Result<(), ExportError> {
        let mut inputs = Vec::with_capacity(at.node.inputs.len());
        let mut shape: Option<Shape> = None;
        for k in 0..at.node.inputs.len() {
            let (x, s) = self.input(at, k)?;
            inputs.push(x);
            shape = Some(match (shape, s) {
                (None, s) => s,
                (
                    Some(Shape::Map { c, h, w }),
                    Shape::Map {
                        c: c2,
                        h: h2,
                        w: w2,
                    },
                ) if (h, w) == (h2, w2) => Shape::Map {
                    c: c.saturating_add(c2),
                    h,
                    w,
                },
                (Some(Shape::Flat { c }), Shape::Flat { c: c2 }) => Shape::Flat {
                    c: c.saturating_add(c2),
                },
                (Some(acc), s) => return Err(at.unsupported(format!("concatenating {s} to {acc}"))),
            });
        }
        let Some(shape) = shape else {
            return Err(at.malformed("no inputs"));
        };
        let out = self.out_name(at.id)?;
        self.push_node(at, "Concat", inputs, out.clone(), vec![attr_int("axis", 1)]);
        self.set(at.id, out, shape);
        Ok(())
    }

    fn pool(
        &mut self,
        at: At,
        op_type: &str,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Map { c, h, w } = shape else {
            return Err(at.unsupported(format!("pooling of {shape}")));
        };
        // libtorch's own rule; it also keeps every window over at least one real cell.
        if kernel < 1 || stride < 1 || padding < 0 || padding > kernel / 2 {
            return Err(at.malformed(format!(
                "kernel {kernel}, stride {stride}, padding {padding} (padding must be at most half the kernel)"
            )));
        }
        let (Some(oh), Some(ow)) = (
            window_out(h, kernel, stride, padding),
            window_out(w, kernel, stride, padding),
        ) else {
            return Err(at.malformed(format!("kernel {kernel} does not fit {shape}")));
        };
        let out = self.out_name(at.id)?;
        let mut attrs = vec![
            attr_ints("kernel_shape", &[kernel, kernel]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[padding; 4]),
        ];
        if op_type == "AveragePool" {
            attrs.push(attr_int("count_include_pad", 0));
        }
        self.push_node(at, op_type, vec![x], out.clone(), attrs);
        self.set(at.id, out, Shape::Map { c, h: oh, w: ow });
        Ok(())
    }

    fn pad(&mut self, at: At, [top, left, bottom, right]: [i64; 4]) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Map { c, h, w } = shape else {
            return Err(at.unsupported(format!("padding of {shape}")));
        };
        if [top, left, bottom, right].iter().any(|&p| p < 0) {
            return Err(at.unsupported(format!(
                "negative padding [{top}, {left}, {bottom}, {right}] (cropping)"
            )));
        }
        let (Some(oh), Some(ow)) = (
            h.checked_add(top).and_then(|v| v.checked_add(bottom)),
            w.checked_add(left).and_then(|v| v.checked_add(right)),
        ) else {
            return Err(at.malformed("padding overflows"));
        };
        let pads_name = self.claim(at, at.param("pads"))?;
        self.initializers.push(int64_tensor(
            &pads_name,
            &[8],
            vec![0, 0, top, left, 0, 0, bottom, right],
        ));
        let out = self.out_name(at.id)?;
        self.push_node(
            at,
            "Pad",
            vec![x, pads_name],
            out.clone(),
            vec![attr_string("mode", "constant")],
        );
        self.set(at.id, out, Shape::Map { c, h: oh, w: ow });
        Ok(())
    }

    fn linear(&mut self, at: At, linear: &nn::Linear) -> Result<(), ExportError> {
        let (x, shape) = self.input(at, 0)?;
        let Shape::Flat { c } = shape else {
            return Err(at.unsupported(format!("fully connected layer on {shape}")));
        };
        let weight_name = at.param("weight");
        let (dims, weight) = at.read(&weight_name, &linear.ws)?;
        let &[cout, cin] = &dims[..] else {
            return Err(at.malformed(format!("`{weight_name}` has shape {dims:?}")));
        };
        if cin != c {
            return Err(at.malformed(format!(
                "`{weight_name}` has shape {dims:?}, input is {shape}"
            )));
        }
        let mut inputs = vec![x, self.float_init(at, weight_name, &dims, weight)?];
        if let Some(b) = &linear.bs {
            let bias_name = at.param("bias");
            let bias = at.read_vector(&bias_name, b, cout)?;
            inputs.push(self.float_init(at, bias_name, &[cout], bias)?);
        }
        let out = self.out_name(at.id)?;
        self.push_node(at, "Gemm", inputs, out.clone(), vec![attr_int("transB", 1)]);
        self.set(at.id, out, Shape::Flat { c: cout });
        Ok(())
    }
}
