//! Static int8 quantization of the float models [`super::export`] writes.
//!
//! Three forms of one quantization, all opset 13 and default domain:
//!
//! - [`Format::Qop`], QOperator: every convolution becomes a `QLinearConv` (u8 activations, per-output-channel
//!   symmetric i8 weights, i32 bias) with a following `Relu`/`Clip(0, 6)` fused into its output range; the
//!   classifier head becomes a `QLinearMatMul` (per-tensor i8 weights) plus a float bias `Add`. Whatever tract
//!   has no integer kernel for (residual `Add`, pooling, `Concat`, `Pad`) runs in float between a
//!   `DequantizeLinear` and a `QuantizeLinear`, each emitted once per tensor.
//! - [`Format::Qdq`]: the same quantization written as float operators between `QuantizeLinear` /
//!   `DequantizeLinear` pairs (weights as i8 initialisers behind `DequantizeLinear`), the form onnxruntime
//!   fuses into integer kernels.
//! - [`Format::Weights`]: only the weights are i8 (behind `DequantizeLinear`, per output channel); activations
//!   stay float. A quarter of the file, float arithmetic.
//!
//! Activation ranges come from [`calibrate`]: the float model runs in tract on calibration images and every
//! tensor that will be quantized gets its minimum, maximum and a histogram, from which [`Calibrator::MinMax`]
//! or [`Calibrator::Percentile`] picks the range. A `Gemm` is first split into `MatMul` + `Add`
//! ([`split_gemm`]) so that the product before the bias is a tensor calibration can see.
//!
//! What this module must not do: quantize a tensor it has no range for (that is a [`QuantError`]), emit an
//! operator tract or onnxruntime cannot load, or change the model's input and output (float `input`,
//! float `logits`).

use std::collections::{HashMap, HashSet};
use std::fmt;

use prost::Message;
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, TensorProto};

use super::proto::{attr_int, node, raw_tensor};

/// Histogram bins per tensor for the percentile calibrator.
const BINS: usize = 4096;

/// Which int8 form to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// QOperator: `QLinearConv` / `QLinearMatMul` integer operators.
    Qop,
    /// QDQ: float operators between `QuantizeLinear` / `DequantizeLinear` pairs.
    Qdq,
    /// Weight-only: i8 weights behind `DequantizeLinear`, float activations.
    Weights,
}

impl Format {
    /// The name used in cards, tables and file names (`qop`, `qdq`, `weights`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Qop => "qop",
            Format::Qdq => "qdq",
            Format::Weights => "weights",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an activation's range is chosen from its calibration statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibrator {
    /// The smallest and largest value seen.
    MinMax,
    /// The `p` and `1 − p` quantiles of all values seen (e.g. `0.9999`): clips rare outliers so that the
    /// common values get finer steps.
    Percentile(f64),
}

impl fmt::Display for Calibrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calibrator::MinMax => f.write_str("minmax"),
            Calibrator::Percentile(p) => write!(f, "percentile-{}", p * 100.0),
        }
    }
}

impl std::str::FromStr for Calibrator {
    type Err = String;

    /// `minmax`, or `percentile` (99.99 %), or `percentile-P` with P in percent (`percentile-99.9`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Calibrator::MinMax),
            "percentile" => Ok(Calibrator::Percentile(0.9999)),
            _ => {
                let p = s
                    .strip_prefix("percentile-")
                    .and_then(|p| p.parse::<f64>().ok())
                    .filter(|p| *p > 50.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        format!("`{s}`: expected minmax, percentile or percentile-P (50 < P ≤ 100)")
                    })?;
                Ok(Calibrator::Percentile(p / 100.0))
            }
        }
    }
}

/// Why a model could not be calibrated or quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The float model does not have the shape this quantizer expects.
    #[error("cannot quantize: {0}")]
    Model(String),
    /// The calibration data cannot calibrate (none, or a tensor that holds NaN or infinity).
    #[error("calibration failed: {0}")]
    Calibration(String),
    /// tract could not load or run the float model during calibration.
    #[error("calibration failed: tract cannot run the float model")]
    Tract(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A tensor that must be quantized has no calibrated range.
    #[error("cannot quantize `{0}`: no calibrated range (calibrate the same float model)")]
    NoRange(String),
}

/// Calibration statistics of one tensor.
#[derive(Clone, Debug)]
struct TensorStats {
    min: f32,
    max: f32,
    /// Counts over `BINS` equal bins spanning `[min, max]`.
    hist: Vec<u64>,
    count: u64,
}

impl TensorStats {
    fn quantile(&self, q: f64) -> f32 {
        if self.max <= self.min || self.count == 0 {
            return self.min;
        }
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        let width = (self.max - self.min) / BINS as f32;
        for (i, &c) in self.hist.iter().enumerate() {
            seen += c;
            if seen >= target {
                return self.min + width * (i + 1) as f32;
            }
        }
        self.max
    }
}

/// Activation statistics of a float model over calibration images.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Images seen.
    pub images: usize,
    stats: HashMap<String, TensorStats>,
}

/// A real-valued range `[lo, hi]` with `lo ≤ 0 ≤ hi` (so that zero is exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// Lower end.
    pub lo: f32,
    /// Upper end.
    pub hi: f32,
}

impl Calibration {
    /// The range `calibrator` picks for `tensor`, widened to contain zero; `None` if it was not calibrated.
    pub fn range(&self, tensor: &str, calibrator: Calibrator) -> Option<Range> {
        let s = self.stats.get(tensor)?;
        let (lo, hi) = match calibrator {
            Calibrator::MinMax => (s.min, s.max),
            Calibrator::Percentile(p) => (s.quantile(1.0 - p), s.quantile(p)),
        };
        Some(Range {
            lo: lo.min(0.0),
            hi: hi.max(0.0),
        })
    }

    /// Names of the calibrated tensors, sorted.
    pub fn tensors(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.stats.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// u8 quantization parameters of a range: `real = scale · (q − zero_point)`.
fn u8_params(r: Range) -> (f32, u8) {
    let span = (r.hi - r.lo).max(f32::MIN_POSITIVE * 255.0);
    let scale = span / 255.0;
    let zp = (-r.lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Symmetric i8 quantization of `w` (row-major, `rows` output channels, or one group when `rows == 1`):
/// per-row scales `max|w| / 127` and the quantized values in `[−127, 127]`.
fn i8_symmetric(w: &[f32], rows: usize) -> (Vec<f32>, Vec<i8>) {
    let per = w.len() / rows.max(1);
    let mut scales = Vec::with_capacity(rows);
    let mut q = Vec::with_capacity(w.len());
    for row in w.chunks(per.max(1)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (scales, q)
}

/// The float values of an initialiser (`float_data` or little-endian `raw_data`).
fn floats(t: &TensorProto) -> Result<Vec<f32>, QuantError> {
    if t.data_type != DataType::Float as i32 {
        return Err(QuantError::Model(format!(
            "initialiser `{}` is not float (type {})",
            t.name, t.data_type
        )));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if t.raw_data.len() % 4 != 0 {
        return Err(QuantError::Model(format!(
            "initialiser `{}` has {} raw bytes",
            t.name,
            t.raw_data.len()
        )));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn graph_of(model: &ModelProto) -> Result<&GraphProto, QuantError> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| QuantError::Model("the model has no graph".into()))
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// Rewrites every `Gemm` (`transB = 1`, `alpha = beta = 1`, constant weights) as `MatMul` with the transposed
/// weights followed by `Add` of the bias. The model computes the same logits, and the product before the bias
/// becomes a named tensor (`<gemm output>/matmul`) that calibration can see.
pub fn split_gemm(model: &ModelProto) -> Result<ModelProto, QuantError> {
    let mut model = model.clone();
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| QuantError::Model("the model has no graph".into()))?;
    let inits: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut nodes = Vec::with_capacity(graph.node.len() + 1);
    let mut new_inits = Vec::new();
    for n in std::mem::take(&mut graph.node) {
        if n.op_type != "Gemm" {
            nodes.push(n);
            continue;
        }
        let bad = |what: &str| QuantError::Model(format!("Gemm `{}`: {what}", n.name));
        if attr_i(&n, "transA").unwrap_or(0) != 0
            || attr_i(&n, "transB").unwrap_or(0) != 1
            || attr_f(&n, "alpha").unwrap_or(1.0) != 1.0
            || attr_f(&n, "beta").unwrap_or(1.0) != 1.0
        {
            return Err(bad("only transB = 1, alpha = beta = 1 is supported"));
        }
        let w = inits
            .get(&n.input[1])
            .map(|&i| &graph.initializer[i])
            .ok_or_else(|| bad("weights are not an initialiser"))?;
        let &[cout, cin] = &w.dims[..] else {
            return Err(bad("weights are not 2-D"));
        };
        let data = floats(w)?;
        let (cout, cin) = (cout as usize, cin as usize);
        let mut t = vec![0f32; data.len()];
        for o in 0..cout {
            for i in 0..cin {
                t[i * cout + o] = data[o * cin + i];
            }
        }
        let wt = format!("{}/transposed", n.input[1]);
        new_inits.push(super::proto::float_tensor(
            &wt,
            &[cin as i64, cout as i64],
            t,
        ));
        let out = n.output[0].clone();
        let product = format!("{out}/matmul");
        nodes.push(node(
            "MatMul",
            &format!("{}/matmul", n.name),
            vec![n.input[0].clone(), wt],
            vec![if n.input.len() > 2 {
                product.clone()
            } else {
                out.clone()
            }],
            vec![],
        ));
        if n.input.len() > 2 {
            nodes.push(node(
                "Add",
                &format!("{}/bias", n.name),
                vec![product, n.input[2].clone()],
                vec![out],
                vec![],
            ));
        }
    }
    graph.node = nodes;
    graph.initializer.extend(new_inits);
    Ok(model)
}

/// Whether `node` is a Clip to `[0, 6]` given by initialisers (ReLU6).
fn is_relu6(node: &NodeProto, inits: &HashMap<&str, &TensorProto>) -> bool {
    let bound = |k: usize, want: f32| {
        node.input
            .get(k)
            .and_then(|n| inits.get(n.as_str()))
            .and_then(|t| floats(t).ok())
            .is_some_and(|v| v == [want])
    };
    node.op_type == "Clip" && node.input.len() == 3 && bound(1, 0.0) && bound(2, 6.0)
}

/// How the quantizer treats each node of a (Gemm-split) float graph.
struct Plan<'m> {
    graph: &'m GraphProto,
    inits: HashMap<&'m str, &'m TensorProto>,
    /// For a quantizable node, the activation fused into it (its index).
    fused: HashMap<usize, usize>,
    /// Activations fused into the node before them.
    absorbed: HashSet<usize>,
}

impl<'m> Plan<'m> {
    fn new(model: &'m ModelProto) -> Result<Self, QuantError> {
        let graph = graph_of(model)?;
        let inits: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for x in &n.input {
                readers.entry(x.as_str()).or_default().push(i);
            }
        }
        let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        let mut plan = Plan {
            graph,
            inits,
            fused: HashMap::new(),
            absorbed: HashSet::new(),
        };
        for (i, n) in graph.node.iter().enumerate() {
            if !plan.quantizable(n) || n.op_type != "Conv" || outputs.contains(n.output[0].as_str())
            {
                continue;
            }
            if let Some([r]) = readers.get(n.output[0].as_str()).map(Vec::as_slice) {
                let act = &graph.node[*r];
                if act.op_type == "Relu" || is_relu6(act, &plan.inits) {
                    plan.fused.insert(i, *r);
                    plan.absorbed.insert(*r);
                }
            }
        }
        Ok(plan)
    }

    /// A convolution or matrix product with constant weights.
    fn quantizable(&self, n: &NodeProto) -> bool {
        let weights = n.input.get(1).and_then(|w| self.inits.get(w.as_str()));
        match n.op_type.as_str() {
            "Conv" => weights.is_some_and(|w| w.dims.len() == 4),
            "MatMul" => weights.is_some_and(|w| w.dims.len() == 2),
            _ => false,
        }
    }

    /// The tensor a quantizable node's quantized output represents (after a fused activation).
    fn output_of(&self, i: usize) -> &'m str {
        let last = self.fused.get(&i).copied().unwrap_or(i);
        &self.graph.node[last].output[0]
    }

    /// Tensors whose ranges quantization needs: inputs and outputs of every quantizable node.
    fn calibrated_tensors(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        for (i, n) in self.graph.node.iter().enumerate() {
            if self.quantizable(n) {
                for t in [n.input[0].as_str(), self.output_of(i)] {
                    if seen.insert(t) {
                        names.push(t.to_string());
                    }
                }
            }
        }
        names
    }
}

/// Runs the float model (`split_gemm` is applied first) with tract on `images` (each one normalised CHW input
/// of `input_shape`, batch 1) and records the statistics of every tensor quantization will need.
pub fn calibrate(
    float: &ModelProto,
    images: &[Vec<f32>],
    input_shape: [usize; 4],
) -> Result<Calibration, QuantError> {
    use tract_onnx::prelude::*;
    let model = split_gemm(float)?;
    let plan = Plan::new(&model)?;
    let names = plan.calibrated_tensors();
    if images.is_empty() {
        return Err(QuantError::Calibration("no calibration images".into()));
    }
    let err = |e: TractError| QuantError::Tract(e.into());
    let bytes = model.encode_to_vec();
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(&bytes))
        .map_err(err)?
        .with_input_fact(0, f32::fact(input_shape).into())
        .map_err(err)?
        .with_outputs_by_name(&names)
        .map_err(err)?
        .into_optimized()
        .map_err(err)?
        .into_runnable()
        .map_err(err)?;
    let run = |img: &Vec<f32>| -> Result<TVec<TValue>, QuantError> {
        let x = Tensor::from_shape(&input_shape, img).map_err(err)?;
        runnable.run(tvec!(x.into_tvalue())).map_err(err)
    };
    let mut stats: Vec<TensorStats> = names
        .iter()
        .map(|_| TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: vec![0; BINS],
            count: 0,
        })
        .collect();
    // Pass 1: extremes. Pass 2: histograms over them.
    for img in images {
        for (s, v) in stats.iter_mut().zip(run(img)?) {
            for &x in v.to_plain_array_view::<f32>().map_err(err)?.iter() {
                if !x.is_finite() {
                    return Err(QuantError::Calibration(
                        "a tensor holds NaN or infinity".into(),
                    ));
                }
                s.min = s.min.min(x);
                s.max = s.max.max(x);
            }
        }
    }
    for img in images {
        for (s, v) in stats.iter_mut().zip(run(img)?) {
            let width = (s.max - s.min) / BINS as f32;
            for &x in v.to_plain_array_view::<f32>().map_err(err)?.iter() {
                let bin = if width > 0.0 {
                    (((x - s.min) / width) as usize).min(BINS - 1)
                } else {
                    0
                };
                s.hist[bin] += 1;
                s.count += 1;
            }
        }
    }
    Ok(Calibration {
        images: images.len(),
        stats: names.into_iter().zip(stats).collect(),
    })
}

/// Builds the quantized graph, node by node.
struct QWriter<'m> {
    plan: &'m Plan<'m>,
    calibration: &'m Calibration,
    calibrator: Calibrator,
    format: Format,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Float initialisers still read by float nodes (kept).
    float_inits: HashSet<String>,
    /// Original tensor name → the float tensor that now carries it.
    float_of: HashMap<String, String>,
    /// Tensor → its u8 tensor and its scale / zero-point initialisers (QOperator), or the fake-quantized float
    /// tensor (QDQ, in `.0`).
    quant_of: HashMap<String, [String; 3]>,
}

fn u8_scalar(name: &str, v: u8) -> TensorProto {
    raw_tensor(name, &[], DataType::Uint8, vec![v])
}

fn i8_tensor(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        DataType::Int8,
        v.iter().map(|&x| x as u8).collect(),
    )
}

fn i32_tensor(name: &str, dims: &[i64], v: &[i32]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        DataType::Int32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

impl<'m> QWriter<'m> {
    fn range(&self, tensor: &str) -> Result<Range, QuantError> {
        self.calibration
            .range(tensor, self.calibrator)
            .ok_or_else(|| QuantError::NoRange(tensor.into()))
    }

    /// The float tensor carrying `name` (dequantizing it once if only its u8 form exists).
    fn float(&mut self, name: &str) -> String {
        if let Some(f) = self.float_of.get(name) {
            return f.clone();
        }
        if let Some([q, s, z]) = self.quant_of.get(name).cloned() {
            if self.format == Format::Qop {
                self.nodes.push(node(
                    "DequantizeLinear",
                    &format!("{name}/dequantize"),
                    vec![q, s, z],
                    vec![name.into()],
                    vec![],
                ));
                self.float_of.insert(name.into(), name.into());
                return name.into();
            }
        }
        if self.plan.inits.contains_key(name) {
            self.float_inits.insert(name.into());
        }
        name.into()
    }

    /// Scale and zero-point initialisers for the activation `name`.
    fn act_params(&mut self, name: &str) -> Result<(String, String, f32), QuantError> {
        let (scale, zp) = u8_params(self.range(name)?);
        let s = format!("{name}/scale");
        let z = format!("{name}/zero_point");
        if !self.inits.iter().any(|t| t.name == s) {
            self.inits
                .push(super::proto::float_tensor(&s, &[], vec![scale]));
            self.inits.push(u8_scalar(&z, zp));
        }
        Ok((s, z, scale))
    }

    /// Emits `QuantizeLinear` of the float tensor carrying `name` with the given scale and zero point; returns
    /// the u8 tensor's name.
    fn emit_quantize(&mut self, name: &str, scale: &str, zero_point: &str) -> String {
        let f = self.float(name);
        let q = format!("{name}/quantized");
        self.nodes.push(node(
            "QuantizeLinear",
            &format!("{name}/quantize"),
            vec![f, scale.into(), zero_point.into()],
            vec![q.clone()],
            vec![],
        ));
        q
    }

    /// QOperator: the u8 form of the float tensor `name` (quantizing it once).
    fn quantized(&mut self, name: &str) -> Result<([String; 3], f32), QuantError> {
        let (s, z, scale) = self.act_params(name)?;
        if let Some(q) = self.quant_of.get(name) {
            return Ok((q.clone(), scale));
        }
        let q = self.emit_quantize(name, &s, &z);
        let triple = [q, s, z];
        self.quant_of.insert(name.into(), triple.clone());
        Ok((triple, scale))
    }

    /// QDQ: the fake-quantized float form of `name` (a Q/DQ pair, once).
    fn fake_quantized(&mut self, name: &str) -> Result<(String, f32), QuantError> {
        let (s, z, scale) = self.act_params(name)?;
        if let Some([dq, ..]) = self.quant_of.get(name) {
            return Ok((dq.clone(), scale));
        }
        let q = self.emit_quantize(name, &s, &z);
        let dq = format!("{name}/dequantized");
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{name}/dequantize"),
            vec![q, s, z.clone()],
            vec![dq.clone()],
            vec![],
        ));
        self.quant_of
            .insert(name.into(), [dq.clone(), String::new(), z]);
        Ok((dq, scale))
    }

    /// i8 weights (per output channel for a convolution, per tensor for a matrix product), written as an
    /// initialiser plus scale and zero point; returns the names and the scales.
    fn weights(
        &mut self,
        n: &NodeProto,
        per_channel: bool,
    ) -> Result<([String; 3], Vec<f32>, &'m TensorProto), QuantError> {
        let w = self.plan.inits[n.input[1].as_str()];
        let data = floats(w)?;
        let conv = n.op_type == "Conv";
        let rows = if !per_channel {
            1
        } else if conv {
            w.dims[0] as usize
        } else {
            // MatMul weights are [cin, cout]: per column; quantize the transpose row-wise.
            w.dims[1] as usize
        };
        let (scales, q) = if !conv && per_channel {
            let (cin, cout) = (w.dims[0] as usize, w.dims[1] as usize);
            let mut t = vec![0f32; data.len()];
            for i in 0..cin {
                for o in 0..cout {
                    t[o * cin + i] = data[i * cout + o];
                }
            }
            let (s, qt) = i8_symmetric(&t, rows);
            let mut q = vec![0i8; qt.len()];
            for i in 0..cin {
                for o in 0..cout {
                    q[i * cout + o] = qt[o * cin + i];
                }
            }
            (s, q)
        } else {
            i8_symmetric(&data, rows)
        };
        let name = &w.name;
        let (qn, sn, zn) = (
            format!("{name}/int8"),
            format!("{name}/scale"),
            format!("{name}/zero_point"),
        );
        self.inits.push(i8_tensor(&qn, &w.dims, &q));
        let scale_dims: Vec<i64> = if per_channel {
            vec![scales.len() as i64]
        } else {
            vec![]
        };
        self.inits
            .push(super::proto::float_tensor(&sn, &scale_dims, scales.clone()));
        self.inits
            .push(i8_tensor(&zn, &scale_dims, &vec![0i8; scales.len()]));
        Ok(([qn, sn, zn], scales, w))
    }

    /// Weights behind a `DequantizeLinear` (QDQ and weight-only forms).
    fn dequantized_weights(
        &mut self,
        n: &NodeProto,
        per_channel: bool,
    ) -> Result<(String, Vec<f32>), QuantError> {
        let ([q, s, z], scales, w) = self.weights(n, per_channel)?;
        let out = format!("{}/dequantized", w.name);
        let axis = if n.op_type == "Conv" { 0 } else { 1 };
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{}/dequantize", w.name),
            vec![q, s, z],
            vec![out.clone()],
            if per_channel {
                vec![attr_int("axis", axis)]
            } else {
                vec![]
            },
        ));
        Ok((out, scales))
    }

    /// i32 bias of a convolution: `round(b / (s_x · s_w[o]))`.
    fn bias_i32(
        &mut self,
        n: &NodeProto,
        x_scale: f32,
        w_scales: &[f32],
    ) -> Result<Option<(String, Vec<f32>)>, QuantError> {
        let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let t = self.plan.inits.get(b.as_str()).ok_or_else(|| {
            QuantError::Model(format!("`{}`: bias `{b}` is not an initialiser", n.name))
        })?;
        let data = floats(t)?;
        let scales: Vec<f32> = w_scales.iter().map(|s| s * x_scale).collect();
        let q: Vec<i32> = data
            .iter()
            .zip(&scales)
            .map(|(v, s)| {
                (f64::from(*v) / f64::from(*s))
                    .round()
                    .clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        let name = format!("{b}/int32");
        self.inits.push(i32_tensor(&name, &[q.len() as i64], &q));
        Ok(Some((name, scales)))
    }

    fn copy_float(&mut self, n: &NodeProto) {
        let mut n = n.clone();
        for x in n.input.iter_mut().filter(|x| !x.is_empty()) {
            *x = self.float(x);
        }
        for y in &n.output {
            self.float_of.insert(y.clone(), y.clone());
        }
        self.nodes.push(n);
    }

    fn qop(&mut self, i: usize, n: &NodeProto) -> Result<(), QuantError> {
        let out = self.plan.output_of(i).to_string();
        let ([x, xs, xz], x_scale) = self.quantized(&n.input[0])?;
        let conv = n.op_type == "Conv";
        let ([w, ws, wz], w_scales, _) = self.weights(n, conv)?;
        let (ys, yz, _) = self.act_params(&out)?;
        let y = format!("{out}/quantized");
        let mut inputs = vec![x, xs, xz, w, ws, wz, ys.clone(), yz.clone()];
        if conv {
            if let Some((b, _)) = self.bias_i32(n, x_scale, &w_scales)? {
                inputs.push(b);
            }
            self.nodes.push(NodeProto {
                op_type: "QLinearConv".into(),
                name: n.name.clone(),
                input: inputs,
                output: vec![y.clone()],
                attribute: n.attribute.clone(),
                ..Default::default()
            });
        } else {
            self.nodes.push(node(
                "QLinearMatMul",
                &n.name,
                inputs,
                vec![y.clone()],
                vec![],
            ));
        }
        self.quant_of.insert(out, [y, ys, yz]);
        Ok(())
    }

    fn qdq(&mut self, i: usize, n: &NodeProto) -> Result<(), QuantError> {
        let conv = n.op_type == "Conv";
        let (x, x_scale) = match self.format {
            Format::Weights => (self.float(&n.input[0]), 1.0),
            _ => self.fake_quantized(&n.input[0])?,
        };
        let (w, w_scales) = self.dequantized_weights(n, conv || self.format == Format::Weights)?;
        let mut inputs = vec![x, w];
        if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) {
            if self.format == Format::Weights {
                inputs.push(self.float(b));
            } else if let Some((bq, scales)) = self.bias_i32(n, x_scale, &w_scales)? {
                let bdq = format!("{b}/dequantized");
                let sname = format!("{b}/scale");
                self.inits.push(super::proto::float_tensor(
                    &sname,
                    &[scales.len() as i64],
                    scales,
                ));
                self.nodes.push(node(
                    "DequantizeLinear",
                    &format!("{b}/dequantize"),
                    vec![bq, sname],
                    vec![bdq.clone()],
                    vec![attr_int("axis", 0)],
                ));
                inputs.push(bdq);
            }
        }
        let mut n2 = n.clone();
        n2.input = inputs;
        self.nodes.push(n2);
        for y in &n.output {
            self.float_of.insert(y.clone(), y.clone());
        }
        if let Some(&act) = self.plan.fused.get(&i) {
            self.copy_float(&self.plan.graph.node[act]);
        }
        if self.format == Format::Qdq {
            // Consumers read the fake-quantized output, as onnxruntime's QDQ fusion expects.
            let out = self.plan.output_of(i).to_string();
            let (dq, _) = self.fake_quantized(&out)?;
            self.float_of.insert(out, dq);
        }
        Ok(())
    }
}

/// Quantizes a float model (as [`super::export`] writes it) with the ranges `calibrator` picks from
/// `calibration` (which must come from [`calibrate`] on the same model).
pub fn quantize(
    float: &ModelProto,
    calibration: &Calibration,
    calibrator: Calibrator,
    format: Format,
) -> Result<ModelProto, QuantError> {
    let model = split_gemm(float)?;
    let plan = Plan::new(&model)?;
    let graph = plan.graph;
    let mut w = QWriter {
        plan: &plan,
        calibration,
        calibrator,
        format,
        nodes: Vec::new(),
        inits: Vec::new(),
        float_inits: HashSet::new(),
        float_of: graph
            .input
            .iter()
            .map(|i| (i.name.clone(), i.name.clone()))
            .collect(),
        quant_of: HashMap::new(),
    };
    for (i, n) in graph.node.iter().enumerate() {
        if plan.absorbed.contains(&i) {
            // Fused into the convolution's output range (QOperator), or emitted by `qdq` right after it.
            continue;
        }
        if plan.quantizable(n) {
            match format {
                Format::Qop => w.qop(i, n)?,
                Format::Qdq | Format::Weights => w.qdq(i, n)?,
            }
        } else {
            w.copy_float(n);
        }
    }
    // The graph outputs keep their names and stay float.
    for o in &graph.output {
        let f = w.float(&o.name);
        if f != o.name {
            w.nodes.push(node(
                "Identity",
                &format!("{}/output", o.name),
                vec![f],
                vec![o.name.clone()],
                vec![],
            ));
        }
    }
    let mut inits: Vec<TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| w.float_inits.contains(&t.name))
        .cloned()
        .collect();
    inits.extend(w.inits);
    let mut out = model.clone();
    let g = out.graph.as_mut().expect("checked by Plan::new");
    g.node = w.nodes;
    g.initializer = inits;
    out.doc_string = format!(
        "{} Quantized ({format}, {calibrator} over {} calibration images).",
        out.doc_string, calibration.images
    )
    .trim()
    .to_string();
    Ok(out)
}
