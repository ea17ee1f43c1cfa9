//! A small layer graph: the one definition of a net, interpreted twice.
//!
//! [`Graph::forward_t`] runs it with tch for training, and the ONNX writer walks the same nodes to emit the
//! device model, so the exported graph can never drift from what was trained. Nets are written against
//! [`Builder`], which creates each layer's parameters under a readable path (`stage2/block0/conv1` becomes
//! the variables `stage2.block0.conv1.weight` and the ONNX initialisers of the same name).

use tch::{nn, Tensor};

/// Index of a node in its graph.
pub type Id = usize;

/// Geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Kernel `[kh, kw]`.
    pub kernel: [i64; 2],
    /// Stride `[sh, sw]`.
    pub stride: [i64; 2],
    /// Symmetric zero padding `[ph, pw]`.
    pub padding: [i64; 2],
    /// Groups (`cin` for depthwise).
    pub groups: i64,
    /// Whether the convolution has a bias.
    pub bias: bool,
}

/// What a node computes.
#[derive(Debug)]
pub enum Op {
    /// The graph input, NCHW.
    Input,
    /// 2-D convolution.
    Conv(nn::Conv2D, ConvSpec),
    /// Batch normalisation over channels with its epsilon (inference uses the running statistics).
    BatchNorm(nn::BatchNorm, f64),
    /// Group normalisation with its epsilon: statistics of each image's channel groups, the same in
    /// training and inference (no running statistics to go stale on another lab's images).
    GroupNorm(nn::GroupNorm, f64),
    /// `max(0, x)`.
    Relu,
    /// `min(max(0, x), 6)`.
    Relu6,
    /// Element-wise sum of two inputs of equal shape.
    Add,
    /// Concatenation of the inputs along channels.
    Concat,
    /// Max pooling; padding counts as −∞.
    MaxPool {
        /// Kernel side.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Symmetric padding.
        padding: i64,
    },
    /// Average pooling; padded cells are not counted.
    AvgPool {
        /// Kernel side.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Symmetric padding.
        padding: i64,
    },
    /// Zero padding `[top, left, bottom, right]` (TensorFlow's asymmetric "same").
    Pad([i64; 4]),
    /// Global average pooling to `[N, C]`.
    GlobalAvgPool,
    /// Fully connected layer on `[N, C]`.
    Linear(nn::Linear),
    /// Dropout with this drop probability (identity at inference, not exported).
    Dropout(f64),
    /// Multiplication by a constant.
    Scale(f64),
    /// A per-image colour standardisation of the normalised input, without parameters ([`ColourNorm`]).
    ColourNorm(ColourNorm),
}

/// How a net standardises each image's colour before its first layer, so that another lab's stain, lamp
/// and camera reach it closer to the training lab's look. All work on the pipeline's normalised input
/// (`(v / 255 − MEAN) / STD`, [`leukoscope::preprocess::normalize`]) and are part of the exported graph, so
/// the device computes exactly what training saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColourNorm {
    /// Each channel to zero mean and unit variance over the image: Reinhard's statistics matching in the
    /// input's RGB (ONNX `InstanceNormalization` without affine).
    Instance {
        /// Added to the variance.
        eps: f64,
    },
    /// Each channel's `v / 255` divided by the image's white point, the brightest `block`-square average
    /// (the plasma between the cells), then normalised again with the pipeline's mean and std: a lamp's or
    /// camera's white balance and brightness cancel.
    WhitePoint {
        /// Side of the averaged squares (input pixels).
        block: i64,
    },
    /// Colour dropped: every channel becomes the image's luminance ([`LUMA`] of `v / 255`), standardised
    /// to zero mean and unit variance over the image, so that only shape, texture and lightness reach the
    /// net, whatever the stain's hue.
    Grey {
        /// Added to the variance.
        eps: f64,
    },
    /// Each image's channels in Reinhard's decorrelated `lαβ` space (LMS cone responses, their log10, a
    /// fixed rotation; the firmware's [`leukoscope::stain`] Reinhard), each standardised to zero mean and
    /// unit variance over the image: Reinhard et al.'s colour transfer, in the graph. A brighter or dimmer
    /// lamp only shifts `l`, which the standardisation removes.
    Reinhard {
        /// Added to the variance.
        eps: f64,
    },
    /// The white point divided out as [`ColourNorm::WhitePoint`] does, then two channels whatever the
    /// stain's hue: luminance ([`LUMA`]) and chroma (the largest channel minus the smallest, HSV's
    /// chroma), each standardised to zero mean and unit variance over the image. Lamp and camera cancel,
    /// hue is dropped, and how strongly a pixel is stained (eosinophil granules, a monocyte's grey
    /// cytoplasm) is kept.
    LumaChroma {
        /// Side of the averaged squares the white point is taken from (input pixels).
        block: i64,
        /// Added to the variance.
        eps: f64,
    },
}

pub use leukoscope::stain::{lms_to_lab, RGB_TO_LMS};

/// The smallest LMS response [`ColourNorm::Reinhard`] takes the log of (that of a black pixel, `1 / 256`
/// in every channel), so that an input pushed below black by augmentation stays finite.
pub const MIN_LMS: f32 = 1.0 / 256.0;

/// Rec. 601 luma weights of R, G and B ([`ColourNorm::Grey`]).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// The smallest white point [`ColourNorm::WhitePoint`] divides by (one grey level), so a black image stays
/// finite.
pub const MIN_WHITE: f64 = 1.0 / 255.0;

impl ColourNorm {
    /// Name used in files and cards.
    pub fn name(self) -> &'static str {
        match self {
            ColourNorm::Instance { .. } => "instance",
            ColourNorm::WhitePoint { .. } => "white-point",
            ColourNorm::Grey { .. } => "grey",
            ColourNorm::Reinhard { .. } => "reinhard",
            ColourNorm::LumaChroma { .. } => "luma-chroma",
        }
    }

    /// Channels out of the standardisation (the first convolution's input).
    pub fn channels(self) -> i64 {
        match self {
            ColourNorm::LumaChroma { .. } => 2,
            _ => 3,
        }
    }

    /// Applies the standardisation to an NCHW batch of normalised inputs.
    pub fn forward(self, x: &Tensor) -> Tensor {
        let standardise = |x: &Tensor, eps: f64| {
            let mean = x.mean_dim(&[2i64, 3][..], true, None);
            let centred = x - mean;
            let var = centred.square().mean_dim(&[2i64, 3][..], true, None);
            centred / (var + eps).sqrt()
        };
        match self {
            ColourNorm::Instance { eps } => standardise(x, eps),
            ColourNorm::Grey { eps } => {
                let (mean, std) = input_stats(x);
                standardise(&luma(&(x * &std + &mean)), eps).expand([-1, 3, -1, -1], false)
            }
            ColourNorm::WhitePoint { block } => {
                let (mean, std) = input_stats(x);
                (white_balanced(x, block) - mean) / std
            }
            ColourNorm::Reinhard { eps } => {
                let (mean, std) = input_stats(x);
                // The firmware's `(v + 1) / 256` of a u8 value v: v01 · 255/256 + 1/256.
                let u = (x * &std + &mean) * (255.0 / 256.0) + 1.0 / 256.0;
                let lms = mix(&u, &RGB_TO_LMS).clamp_min(f64::from(MIN_LMS));
                let log10 = lms.log() / std::f64::consts::LN_10;
                standardise(&mix(&log10, &lms_to_lab()), eps)
            }
            ColourNorm::LumaChroma { block, eps } => {
                let r = white_balanced(x, block);
                let chroma = r.amax(&[1i64][..], true) - r.amin(&[1i64][..], true);
                standardise(&Tensor::cat(&[luma(&r), chroma], 1), eps)
            }
        }
    }
}

/// `m · x` per pixel of an NCHW batch of three channels (a 1×1 convolution without bias).
fn mix(x: &Tensor, m: &[[f32; 3]; 3]) -> Tensor {
    let flat: Vec<f32> = m.iter().flatten().copied().collect();
    let w = Tensor::from_slice(&flat)
        .view([3, 3, 1, 1])
        .to_device(x.device())
        .to_kind(x.kind());
    x.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
}

/// The [`LUMA`]-weighted sum of an NCHW batch's three channels, `[N, 1, H, W]`.
fn luma(rgb: &Tensor) -> Tensor {
    let w = Tensor::from_slice(&LUMA)
        .view([1, 3, 1, 1])
        .to_device(rgb.device())
        .to_kind(rgb.kind());
    (rgb * w).sum_dim_intlist(&[1i64][..], true, None)
}

/// Each channel's `v / 255` of a normalised batch divided by the image's white point: the brightest
/// `block`-square average, at least [`MIN_WHITE`].
fn white_balanced(x: &Tensor, block: i64) -> Tensor {
    let (mean, std) = input_stats(x);
    let v = x * &std + &mean;
    let white = v
        .avg_pool2d([block, block], [block, block], [0, 0], false, true, None)
        .amax(&[2i64, 3][..], true)
        .clamp_min(MIN_WHITE);
    v / white
}

/// The pipeline's normalisation constants as `[1, 3, 1, 1]` tensors on `x`'s device.
fn input_stats(x: &Tensor) -> (Tensor, Tensor) {
    let t = |v: [f32; 3]| {
        Tensor::from_slice(&v)
            .view([1, 3, 1, 1])
            .to_device(x.device())
            .to_kind(x.kind())
    };
    (
        t(leukoscope::preprocess::MEAN),
        t(leukoscope::preprocess::STD),
    )
}

/// One node: an operation on the outputs of earlier nodes.
#[derive(Debug)]
pub struct Node {
    /// Readable path, `/`-separated.
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Inputs (ids of earlier nodes).
    pub inputs: Vec<Id>,
}

/// A net: nodes in topological order (every input precedes its user) and one output.
#[derive(Debug)]
pub struct Graph {
    /// Nodes; node 0 is the input.
    pub nodes: Vec<Node>,
    /// The output node (logits, `[N, classes]`).
    pub output: Id,
    /// For each node, the last node that reads it (frees activations early in `forward_t`).
    last_use: Vec<Id>,
}

impl Graph {
    /// Runs the graph on an NCHW batch.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let arg = |k: usize| {
                values[node.inputs[k]]
                    .as_ref()
                    .expect("graph input computed and alive")
            };
            let y = match &node.op {
                Op::Input => x.shallow_clone(),
                Op::Conv(c, _) => arg(0).apply(c),
                Op::BatchNorm(bn, _) => arg(0).apply_t(bn, train),
                Op::GroupNorm(gn, _) => arg(0).apply(gn),
                Op::Relu => arg(0).relu(),
                Op::Relu6 => arg(0).clamp(0.0, 6.0),
                Op::Add => arg(0) + arg(1),
                Op::Concat => {
                    let xs: Vec<&Tensor> = (0..node.inputs.len()).map(arg).collect();
                    Tensor::cat(&xs, 1)
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => arg(0).max_pool2d(
                    [*kernel, *kernel],
                    [*stride, *stride],
                    [*padding, *padding],
                    [1, 1],
                    false,
                ),
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                } => arg(0).avg_pool2d(
                    [*kernel, *kernel],
                    [*stride, *stride],
                    [*padding, *padding],
                    false,
                    false,
                    None,
                ),
                Op::Pad([t, l, b, r]) => arg(0).constant_pad_nd([*l, *r, *t, *b]),
                Op::GlobalAvgPool => arg(0).mean_dim(&[2i64, 3][..], false, None),
                Op::Linear(l) => arg(0).apply(l),
                Op::Dropout(p) => arg(0).dropout(*p, train),
                Op::Scale(s) => arg(0) * *s,
                Op::ColourNorm(c) => c.forward(arg(0)),
            };
            values.push(Some(y));
            for &inp in &node.inputs {
                if self.last_use[inp] == i && inp != self.output {
                    values[inp] = None;
                }
            }
        }
        values[self.output].take().expect("output computed")
    }

    /// The graph up to `output` (which becomes its output; later nodes are dropped), e.g. to read a net's
    /// features before its head.
    pub fn truncated(mut self, output: Id) -> Graph {
        self.nodes.truncate(output + 1);
        Graph::from_nodes(self.nodes, output)
    }

    /// A graph of `nodes` with `output` as its result, with each node's last reader worked out.
    fn from_nodes(nodes: Vec<Node>, output: Id) -> Graph {
        let mut last_use: Vec<Id> = (0..nodes.len()).collect();
        for (i, n) in nodes.iter().enumerate() {
            for &inp in &n.inputs {
                last_use[inp] = i;
            }
        }
        Graph {
            nodes,
            output,
            last_use,
        }
    }

    /// The ids of the nodes that read `id`.
    pub fn users(&self, id: Id) -> Vec<Id> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].inputs.contains(&id))
            .collect()
    }
}

impl nn::ModuleT for Graph {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Graph::forward_t(self, xs, train)
    }
}

/// Builds a [`Graph`], creating parameters under a var-store path as it goes.
pub struct Builder<'a> {
    root: nn::Path<'a>,
    nodes: Vec<Node>,
    /// Batch-norm settings for layers created from now on.
    pub bn: nn::BatchNormConfig,
    /// Where set, [`Builder::norm`] makes group norms of this many groups (capped at the channels)
    /// instead of batch norms.
    pub groups: Option<i64>,
}

impl<'a> Builder<'a> {
    /// A builder whose parameters live under `root`; node 0 is the input.
    pub fn new(root: &nn::Path<'a>) -> Self {
        Builder {
            root: root.clone(),
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: vec![],
            }],
            bn: Default::default(),
            groups: None,
        }
    }

    /// The input node.
    pub fn input(&self) -> Id {
        0
    }

    fn path(&self, name: &str) -> nn::Path<'a> {
        name.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.root.clone(), |p, s| p / s)
    }

    /// Appends a node.
    pub fn push(&mut self, name: &str, op: Op, inputs: &[Id]) -> Id {
        assert!(
            inputs.iter().all(|&i| i < self.nodes.len()),
            "{name}: inputs must precede the node"
        );
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
        });
        self.nodes.len() - 1
    }

    /// A convolution with explicit geometry.
    pub fn conv_with(&mut self, name: &str, x: Id, spec: ConvSpec) -> Id {
        let cfg = nn::ConvConfigND {
            stride: spec.stride,
            padding: spec.padding,
            dilation: [1, 1],
            groups: spec.groups,
            bias: spec.bias,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanOut,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        let conv = nn::conv(self.path(name), spec.cin, spec.cout, spec.kernel, cfg);
        self.push(name, Op::Conv(conv, spec), &[x])
    }

    /// A square convolution with "same" padding for odd kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: Id,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
        bias: bool,
    ) -> Id {
        let spec = ConvSpec {
            cin,
            cout,
            kernel: [k, k],
            stride: [stride, stride],
            padding: [k / 2, k / 2],
            groups,
            bias,
        };
        self.conv_with(name, x, spec)
    }

    /// Batch normalisation.
    pub fn batch_norm(&mut self, name: &str, x: Id, c: i64) -> Id {
        let bn = nn::batch_norm2d(self.path(name), c, self.bn);
        self.push(name, Op::BatchNorm(bn, self.bn.eps), &[x])
    }

    /// Group normalisation over `groups` groups of `c` channels (`groups` must divide `c`).
    pub fn group_norm(&mut self, name: &str, x: Id, c: i64, groups: i64) -> Id {
        assert!(
            groups > 0 && c % groups == 0,
            "{name}: {groups} groups do not divide {c} channels"
        );
        let eps = 1e-5;
        let cfg = nn::GroupNormConfig {
            eps,
            ..Default::default()
        };
        let gn = nn::group_norm(self.path(name), groups, c, cfg);
        self.push(name, Op::GroupNorm(gn, eps), &[x])
    }

    /// The builder's normalisation: a batch norm, or with [`Builder::groups`] set a group norm (at most
    /// one group per channel).
    pub fn norm(&mut self, name: &str, x: Id, c: i64) -> Id {
        match self.groups {
            Some(g) => self.group_norm(name, x, c, g.min(c)),
            None => self.batch_norm(name, x, c),
        }
    }

    /// Convolution without bias followed by the builder's normalisation (`name/conv`, `name/bn`: a batch
    /// norm unless [`Builder::groups`] is set).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn(
        &mut self,
        name: &str,
        x: Id,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
    ) -> Id {
        let c = self.conv(
            &format!("{name}/conv"),
            x,
            cin,
            cout,
            k,
            stride,
            groups,
            false,
        );
        self.norm(&format!("{name}/bn"), c, cout)
    }

    /// [`Builder::conv_bn`] then ReLU.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn_relu(
        &mut self,
        name: &str,
        x: Id,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
    ) -> Id {
        let y = self.conv_bn(name, x, cin, cout, k, stride, groups);
        self.relu(&format!("{name}/relu"), y)
    }

    /// ReLU.
    pub fn relu(&mut self, name: &str, x: Id) -> Id {
        self.push(name, Op::Relu, &[x])
    }

    /// ReLU6.
    pub fn relu6(&mut self, name: &str, x: Id) -> Id {
        self.push(name, Op::Relu6, &[x])
    }

    /// `a + b`.
    pub fn add(&mut self, name: &str, a: Id, b: Id) -> Id {
        self.push(name, Op::Add, &[a, b])
    }

    /// Channel concatenation.
    pub fn concat(&mut self, name: &str, xs: &[Id]) -> Id {
        self.push(name, Op::Concat, xs)
    }

    /// Max pooling.
    pub fn max_pool(&mut self, name: &str, x: Id, kernel: i64, stride: i64, padding: i64) -> Id {
        self.push(
            name,
            Op::MaxPool {
                kernel,
                stride,
                padding,
            },
            &[x],
        )
    }

    /// Average pooling (padding not counted).
    pub fn avg_pool(&mut self, name: &str, x: Id, kernel: i64, stride: i64, padding: i64) -> Id {
        self.push(
            name,
            Op::AvgPool {
                kernel,
                stride,
                padding,
            },
            &[x],
        )
    }

    /// Zero padding `[top, left, bottom, right]`.
    pub fn pad(&mut self, name: &str, x: Id, pads: [i64; 4]) -> Id {
        self.push(name, Op::Pad(pads), &[x])
    }

    /// Global average pooling to `[N, C]`.
    pub fn global_avg_pool(&mut self, name: &str, x: Id) -> Id {
        self.push(name, Op::GlobalAvgPool, &[x])
    }

    /// Dropout.
    pub fn dropout(&mut self, name: &str, x: Id, p: f64) -> Id {
        self.push(name, Op::Dropout(p), &[x])
    }

    /// A per-image colour standardisation ([`ColourNorm`]).
    pub fn colour_norm(&mut self, name: &str, x: Id, c: ColourNorm) -> Id {
        self.push(name, Op::ColourNorm(c), &[x])
    }

    /// Multiplication by a constant.
    pub fn scale(&mut self, name: &str, x: Id, s: f64) -> Id {
        self.push(name, Op::Scale(s), &[x])
    }

    /// Fully connected layer.
    pub fn linear(&mut self, name: &str, x: Id, cin: i64, cout: i64) -> Id {
        let l = nn::linear(self.path(name), cin, cout, Default::default());
        self.push(name, Op::Linear(l), &[x])
    }

    /// Finishes the graph with `output` as its result.
    pub fn finish(self, output: Id) -> Graph {
        Graph::from_nodes(self.nodes, output)
    }
}
