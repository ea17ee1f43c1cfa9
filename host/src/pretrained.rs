//! Pretrained weights: copies the tensors of a converted file into a freshly built net, by variable name.
//!
//! The file is a `.safetensors` (what `scripts/efficientnet_lite0.py` writes), an `.npz`, or tch's own format
//! (a `best.ot` of an earlier run). Every variable of the net except its head (the last linear layer, which
//! stays randomly initialised for the new classes) must be in the file with the same shape, and every tensor
//! of the file must be used: a file for another architecture is refused with the file and the first tensor
//! that does not fit, never half-loaded.
//!
//! A file may say which input normalisation its weights expect (`normalisation.mean`, `normalisation.std`,
//! `[3]` each, in the pipeline's convention `(v / 255 − mean) / std`). The loader then folds the difference to
//! the pipeline's own normalisation ([`leukoscope::preprocess::MEAN`], [`leukoscope::preprocess::STD`]) into
//! the net's first convolution (scaling its weights per input channel, and moving the constant into the
//! following batch norm's running mean, or the convolution's bias), so training and the device keep feeding
//! the one normalisation the preprocessing contract defines, at no cost. The fold is exact wherever the first
//! convolution does not read padding; where it does (EfficientNet-Lite0's stem pads one row and column after
//! the image), a padded zero of the pipeline's normalisation stands for a pixel of value `MEAN`, not for the
//! weights' zero, so the outermost output row and column of the stem differ slightly from the original net.
//! A net that standardises each image itself before its first convolution (a
//! [`ColourNorm`](crate::nets::graph::ColourNorm) node right after the input) never sees the pipeline's
//! normalisation there, so nothing is folded and [`Loaded::standardised`] names that node.
//!
//! Nothing here downloads anything: `scripts/setup.sh` converts the weights once.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use tch::{nn, Kind, Tensor};

use crate::nets::graph::{Graph, Id, Op};

/// The names of the tensors that declare the weights' input normalisation.
pub const NORMALISATION_MEAN: &str = "normalisation.mean";
/// See [`NORMALISATION_MEAN`].
pub const NORMALISATION_STD: &str = "normalisation.std";

/// An input normalisation `(mean, std)` per RGB channel, in the pipeline's convention `(v / 255 − mean) / std`.
pub type MeanStd = ([f32; 3], [f32; 3]);

/// Why pretrained weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    /// The file could not be read as tensors.
    #[error("{}: cannot read pretrained weights", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// tch's error.
        source: tch::TchError,
    },
    /// A variable of the net has no tensor in the file.
    #[error("{}: no tensor `{name}` (a variable of the net; weights for another architecture?)", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The variable.
        name: String,
    },
    /// A tensor has another shape than the net's variable.
    #[error("{}: tensor `{name}` has shape {found:?}, the net's variable has {want:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The variable.
        name: String,
        /// The file's shape.
        found: Vec<i64>,
        /// The net's shape.
        want: Vec<i64>,
    },
    /// A tensor of the file is no variable of the net.
    #[error("{}: tensor `{name}` is not a variable of the net (weights for another architecture?)", path.display())]
    Unused {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The declared input normalisation is malformed.
    #[error("{}: `{NORMALISATION_MEAN}` and `{NORMALISATION_STD}` must both be 3 finite values, std above 0", path.display())]
    Normalisation {
        /// The file.
        path: PathBuf,
    },
    /// The declared input normalisation cannot be folded into this net.
    #[error("{}: cannot fold the weights' input normalisation into the net: {why}", path.display())]
    Fold {
        /// The file.
        path: PathBuf,
        /// What the net lacks.
        why: String,
    },
    /// A tensor could not be copied (dtype, device).
    #[error("{}: copying `{name}`", path.display())]
    Copy {
        /// The file.
        path: PathBuf,
        /// The variable.
        name: String,
        /// tch's error.
        source: tch::TchError,
    },
}

/// What happens to the net's head (the variables of its output linear layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Keep the new head's random initialisation; the file's head tensors, if any, are ignored.
    Fresh,
    /// Copy the head too (same classes as the file, e.g. ImageNet's 1000 to check the weights).
    Copy,
}

/// Which input normalisation the loaded net expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalisation {
    /// The pipeline's: fold the file's declared normalisation into the first convolution.
    Pipeline,
    /// The file's own: copy the weights unchanged.
    File,
}

/// How [`load_with`] loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The head's fate.
    pub head: Head,
    /// The input normalisation of the loaded net.
    pub normalisation: Normalisation,
}

impl Default for Options {
    /// Fine-tuning: a fresh head, the pipeline's normalisation.
    fn default() -> Self {
        Options {
            head: Head::Fresh,
            normalisation: Normalisation::Pipeline,
        }
    }
}

/// What [`load_with`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Variables copied from the file.
    pub tensors: usize,
    /// Their elements.
    pub elements: i64,
    /// Variables left as initialised (the fresh head), sorted.
    pub fresh: Vec<String>,
    /// The file's declared normalisation `(mean, std)` when it was folded into the first convolution, and
    /// that convolution's node name.
    pub folded: Option<([f32; 3], [f32; 3], String)>,
    /// The node that standardises each image before the first convolution, when the net has one: the file's
    /// declared normalisation is then not folded (the first convolution reads that node's output).
    pub standardised: Option<String>,
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pretrained: {} tensors ({} values) from {}",
            self.tensors,
            self.elements,
            self.path.display()
        )?;
        if !self.fresh.is_empty() {
            write!(f, "; new head {}", self.fresh.join(", "))?;
        }
        if let Some((mean, std, node)) = &self.folded {
            write!(
                f,
                "; input normalisation mean {mean:?} std {std:?} folded into {node}"
            )?;
        }
        if let Some(node) = &self.standardised {
            write!(
                f,
                "; each image standardised by {node}: input normalisation not folded"
            )?;
        }
        Ok(())
    }
}

/// Loads `path` into `vs` (which holds `graph`'s variables) for fine-tuning: [`Options::default`].
pub fn load(vs: &nn::VarStore, graph: &Graph, path: &Path) -> Result<Loaded, PretrainedError> {
    load_with(vs, graph, path, Options::default())
}

/// Reads the tensors of a weights file by its extension (`.safetensors`, `.npz`, else tch's format).
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, PretrainedError> {
    let read = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path),
        Some("npz") => Tensor::read_npz(path),
        _ => Tensor::load_multi(path),
    };
    read.map_err(|source| PretrainedError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The variable-name prefix of a node (`block3/expand/conv` → `block3.expand.conv`).
fn var_prefix(graph: &Graph, id: Id) -> String {
    graph.nodes[id]
        .name
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// Loads `path` into `vs`, which holds the variables of `graph`.
pub fn load_with(
    vs: &nn::VarStore,
    graph: &Graph,
    path: &Path,
    opts: Options,
) -> Result<Loaded, PretrainedError> {
    let file: HashMap<String, Tensor> = read_tensors(path)?.into_iter().collect();
    let vars = vs.variables();
    let head_prefix = match graph.nodes[graph.output].op {
        Op::Linear(_) => Some(format!("{}.", var_prefix(graph, graph.output))),
        _ => None,
    };
    let is_head = |name: &str| {
        opts.head == Head::Fresh && head_prefix.as_ref().is_some_and(|p| name.starts_with(p))
    };
    let normalisation_names = [NORMALISATION_MEAN, NORMALISATION_STD];

    // Check everything before changing anything, in a stable order.
    let names: BTreeSet<&String> = vars.keys().collect();
    let err_path = || path.to_owned();
    for name in &names {
        if is_head(name) {
            continue;
        }
        let src = file.get(*name).ok_or_else(|| PretrainedError::Missing {
            path: err_path(),
            name: name.to_string(),
        })?;
        let want = vars[*name].size();
        if src.size() != want {
            return Err(PretrainedError::Shape {
                path: err_path(),
                name: name.to_string(),
                found: src.size(),
                want,
            });
        }
    }
    let unused: BTreeSet<&String> = file
        .keys()
        .filter(|n| {
            !vars.contains_key(*n) && !is_head(n) && !normalisation_names.contains(&n.as_str())
        })
        .collect();
    if let Some(name) = unused.into_iter().next() {
        return Err(PretrainedError::Unused {
            path: err_path(),
            name: name.clone(),
        });
    }
    let declared = declared_normalisation(&file, path)?;
    let standardised = match graph.users(0)[..] {
        [only] if matches!(graph.nodes[only].op, Op::ColourNorm(_)) => {
            Some(graph.nodes[only].name.clone())
        }
        _ => None,
    };
    let fold_target = match (declared, opts.normalisation) {
        (Some(_), Normalisation::Pipeline) if standardised.is_none() => {
            Some(first_conv(graph).map_err(|why| PretrainedError::Fold {
                path: err_path(),
                why,
            })?)
        }
        _ => None,
    };

    let (mut tensors, mut elements, mut fresh) = (0, 0i64, Vec::new());
    for name in names {
        if is_head(name) {
            fresh.push(name.clone());
            continue;
        }
        let mut var = vars[name].shallow_clone();
        tch::no_grad(|| var.f_copy_(&file[name])).map_err(|source| PretrainedError::Copy {
            path: err_path(),
            name: name.clone(),
            source,
        })?;
        tensors += 1;
        elements += var.numel() as i64;
    }
    let folded = match (declared, fold_target) {
        (Some((mean, std)), Some((conv, after))) => {
            let to = (leukoscope::preprocess::MEAN, leukoscope::preprocess::STD);
            fold(graph, conv, after, (mean, std), to);
            Some((mean, std, graph.nodes[conv].name.clone()))
        }
        _ => None,
    };
    Ok(Loaded {
        path: path.to_owned(),
        tensors,
        elements,
        fresh,
        folded,
        standardised,
    })
}

/// The file's declared input normalisation, if any.
fn declared_normalisation(
    file: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<Option<MeanStd>, PretrainedError> {
    let bad = || PretrainedError::Normalisation {
        path: path.to_owned(),
    };
    let three = |t: &Tensor| -> Result<[f32; 3], PretrainedError> {
        let v = Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view(-1))
            .map_err(|_| bad())?;
        let a: [f32; 3] = v.try_into().map_err(|_| bad())?;
        if a.iter().all(|x| x.is_finite()) {
            Ok(a)
        } else {
            Err(bad())
        }
    };
    match (file.get(NORMALISATION_MEAN), file.get(NORMALISATION_STD)) {
        (None, None) => Ok(None),
        (Some(m), Some(s)) => {
            let (mean, std) = (three(m)?, three(s)?);
            if std.iter().all(|&s| s > 0.0) {
                Ok(Some((mean, std)))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

/// The net's first convolution (reached from the input through zero padding only, 3 input channels, no
/// groups) and what absorbs its constant: the batch norm that alone reads it, or its own bias.
fn first_conv(graph: &Graph) -> Result<(Id, Option<Id>), String> {
    let mut id: Id = 0; // the input
    loop {
        let users = graph.users(id);
        let [next] = users[..] else {
            return Err(format!(
                "`{}` feeds {} nodes, not one convolution",
                graph.nodes[id].name,
                users.len()
            ));
        };
        match &graph.nodes[next].op {
            Op::Pad(_) => id = next,
            Op::Conv(conv, spec) => {
                if spec.cin != 3 || spec.groups != 1 {
                    return Err(format!(
                        "`{}` is not a 3-channel dense convolution",
                        graph.nodes[next].name
                    ));
                }
                let after = graph.users(next);
                return match (&after[..], &conv.bs) {
                    ([bn], _) if matches!(graph.nodes[*bn].op, Op::BatchNorm(..)) => {
                        Ok((next, Some(*bn)))
                    }
                    (_, Some(_)) => Ok((next, None)),
                    _ => Err(format!(
                        "`{}` has no bias and no batch norm of its own to absorb the shift",
                        graph.nodes[next].name
                    )),
                };
            }
            _ => {
                return Err(format!(
                    "the input reaches `{}` before any convolution",
                    graph.nodes[next].name
                ))
            }
        }
    }
}

/// Makes `conv` (with `after`, the batch norm absorbing its constant, or its bias when `None`) compute on
/// inputs normalised with `to` what it computed on inputs normalised with `from`: per input channel
/// `u = a z + b` with `a = to.std / from.std`, `b = (to.mean − from.mean) / from.std`, so the weights scale by
/// `a` and the constant `Σ W b` moves into the running mean (subtracted) or the bias (added).
fn fold(graph: &Graph, conv: Id, after: Option<Id>, from: MeanStd, to: MeanStd) {
    let Op::Conv(c, _) = &graph.nodes[conv].op else {
        unreachable!("first_conv returns a convolution")
    };
    let a: Vec<f32> = (0..3).map(|i| to.1[i] / from.1[i]).collect();
    let b: Vec<f32> = (0..3).map(|i| (to.0[i] - from.0[i]) / from.1[i]).collect();
    tch::no_grad(|| {
        let w = c.ws.shallow_clone();
        let dev = w.device();
        let kind = w.kind();
        let a = Tensor::from_slice(&a)
            .to_device(dev)
            .to_kind(kind)
            .view([1, 3, 1, 1]);
        let b = Tensor::from_slice(&b)
            .to_device(dev)
            .to_kind(kind)
            .view([1, 3, 1, 1]);
        let shift = (&w * &b).sum_dim_intlist(&[1i64, 2, 3][..], false, kind);
        let mut w_mut = w.shallow_clone();
        w_mut.copy_(&(&w * &a));
        match after.map(|bn| &graph.nodes[bn].op) {
            Some(Op::BatchNorm(bn, _)) => {
                let mut m = bn.running_mean.shallow_clone();
                m.copy_(&(&bn.running_mean - &shift));
            }
            _ => {
                let bias = c.bs.as_ref().expect("first_conv checked the bias");
                let mut bm = bias.shallow_clone();
                bm.copy_(&(bias + &shift));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::graph::Builder;
    use tch::Device;

    /// A tiny net shaped like EfficientNet-Lite0's stem: pad (0, 1) → conv 3×3/2 → BN → ReLU6 → pool → fc.
    fn tiny(vs: &nn::VarStore) -> (Graph, Id) {
        let mut b = Builder::new(&vs.root());
        let x = b.input();
        let p = b.pad("stem/pad", x, [0, 0, 1, 1]);
        let c = b.conv_with(
            "stem/conv",
            p,
            crate::nets::graph::ConvSpec {
                cin: 3,
                cout: 4,
                kernel: [3, 3],
                stride: [2, 2],
                padding: [0, 0],
                groups: 1,
                bias: false,
            },
        );
        let bn = b.batch_norm("stem/bn", c, 4);
        let r = b.relu6("stem/relu6", bn);
        let g = b.global_avg_pool("pool", r);
        let y = b.linear("fc", g, 4, 2);
        (b.finish(y), bn)
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "leukoscope-pretrained-{}-{name}",
            std::process::id()
        ))
    }

    /// Random values in every variable (running statistics too), so a copy is visible.
    fn randomise(vs: &nn::VarStore) {
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                let r = Tensor::rand(v.size(), (Kind::Float, Device::Cpu)) + 0.5;
                let r = if name.ends_with("running_mean") {
                    r - 1.0
                } else {
                    r
                };
                v.copy_(&r);
            }
        });
    }

    fn save(vs: &nn::VarStore, path: &Path, drop: &[&str], extra: &[(&str, Tensor)]) {
        let mut ts: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| !drop.contains(&n.as_str()))
            .collect();
        ts.extend(
            extra
                .iter()
                .map(|(n, t)| (n.to_string(), t.shallow_clone())),
        );
        Tensor::write_safetensors(&ts, path).unwrap();
    }

    fn value(vs: &nn::VarStore, name: &str) -> Vec<f32> {
        Vec::<f32>::try_from(vs.variables()[name].contiguous().view(-1)).unwrap()
    }

    #[test]
    fn copies_the_backbone_and_keeps_the_fresh_head() {
        let src = nn::VarStore::new(Device::Cpu);
        let _ = tiny(&src);
        randomise(&src);
        let path = temp("copy.safetensors");
        save(&src, &path, &[], &[]);
        let dst = nn::VarStore::new(Device::Cpu);
        let (g, _) = tiny(&dst);
        let head_before = value(&dst, "fc.weight");
        let loaded = load(&dst, &g, &path).unwrap();
        assert_eq!(loaded.tensors, 5, "{loaded}");
        assert_eq!(
            loaded.fresh,
            vec!["fc.bias".to_string(), "fc.weight".to_string()]
        );
        assert_eq!(loaded.folded, None, "the file declares no normalisation");
        assert_eq!(loaded.elements, 4 * 27 + 4 * 4);
        for name in ["stem.conv.weight", "stem.bn.running_var", "stem.bn.bias"] {
            assert_eq!(value(&dst, name), value(&src, name), "{name}");
        }
        assert_eq!(
            value(&dst, "fc.weight"),
            head_before,
            "the head stays as initialised"
        );
        let all = load_with(
            &dst,
            &g,
            &path,
            Options {
                head: Head::Copy,
                normalisation: Normalisation::File,
            },
        )
        .unwrap();
        assert_eq!(all.tensors, 7);
        assert_eq!(value(&dst, "fc.weight"), value(&src, "fc.weight"));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_missing_tensor_is_named_with_the_file() {
        let src = nn::VarStore::new(Device::Cpu);
        let _ = tiny(&src);
        let path = temp("missing.safetensors");
        save(&src, &path, &["stem.bn.running_var"], &[]);
        let dst = nn::VarStore::new(Device::Cpu);
        let (g, _) = tiny(&dst);
        let before = value(&dst, "stem.conv.weight");
        let err = load(&dst, &g, &path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PretrainedError::Missing { .. }), "{msg}");
        assert!(msg.contains("stem.bn.running_var"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(
            value(&dst, "stem.conv.weight"),
            before,
            "nothing is half-loaded"
        );
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_wrong_shape_or_a_stray_tensor_is_refused() {
        let src = nn::VarStore::new(Device::Cpu);
        let _ = tiny(&src);
        let dst = nn::VarStore::new(Device::Cpu);
        let (g, _) = tiny(&dst);

        let path = temp("shape.safetensors");
        let wide = Tensor::zeros([8, 3, 3, 3], (Kind::Float, Device::Cpu));
        save(
            &src,
            &path,
            &["stem.conv.weight"],
            &[("stem.conv.weight", wide)],
        );
        let msg = load(&dst, &g, &path).unwrap_err().to_string();
        assert!(
            msg.contains("`stem.conv.weight` has shape [8, 3, 3, 3]"),
            "{msg}"
        );
        assert!(msg.contains("[4, 3, 3, 3]"), "{msg}");

        let stray = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        save(&src, &path, &[], &[("block9.conv.weight", stray)]);
        let msg = load(&dst, &g, &path).unwrap_err().to_string();
        assert!(
            msg.contains("`block9.conv.weight` is not a variable of the net"),
            "{msg}"
        );

        let odd = Tensor::from_slice(&[0.5f32, 0.5]);
        let std = Tensor::from_slice(&[0.5f32, 0.5, 0.5]);
        save(
            &src,
            &path,
            &[],
            &[(NORMALISATION_MEAN, odd), (NORMALISATION_STD, std)],
        );
        let msg = load(&dst, &g, &path).unwrap_err().to_string();
        assert!(msg.contains("must both be 3 finite values"), "{msg}");

        std::fs::write(&path, b"not tensors").unwrap();
        let msg = load(&dst, &g, &path).unwrap_err().to_string();
        assert!(msg.contains("cannot read pretrained weights"), "{msg}");
        std::fs::remove_file(path).ok();
        let msg = load(&dst, &g, Path::new("/nonexistent/w.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/w.safetensors"), "{msg}");
    }

    /// The folded net on pipeline-normalised inputs computes what the original computes on inputs normalised
    /// the weights' way, exactly wherever the stem reads no padding (all but the last output row and column).
    #[test]
    fn folding_the_normalisation_is_exact_off_the_padded_border() {
        let src = nn::VarStore::new(Device::Cpu);
        let _ = tiny(&src);
        randomise(&src);
        let (from_mean, from_std) = ([0.5f32, 0.45, 0.4], [0.25f32, 0.3, 0.2]);
        let path = temp("fold.safetensors");
        let extra = [
            (NORMALISATION_MEAN, Tensor::from_slice(&from_mean)),
            (NORMALISATION_STD, Tensor::from_slice(&from_std)),
        ];
        save(&src, &path, &[], &extra);

        let plain = nn::VarStore::new(Device::Cpu);
        let (g_plain, bn_plain) = tiny(&plain);
        let opts = Options {
            head: Head::Copy,
            normalisation: Normalisation::File,
        };
        assert_eq!(
            load_with(&plain, &g_plain, &path, opts).unwrap().folded,
            None
        );
        let folded = nn::VarStore::new(Device::Cpu);
        let (g_folded, bn_folded) = tiny(&folded);
        let opts = Options {
            normalisation: Normalisation::Pipeline,
            ..opts
        };
        let loaded = load_with(&folded, &g_folded, &path, opts).unwrap();
        assert_eq!(
            loaded.folded,
            Some((from_mean, from_std, "stem/conv".to_string()))
        );

        // The same pixels, normalised both ways.
        let v = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let norm = |(m, s): MeanStd| {
            (&v - Tensor::from_slice(&m).view([1, 3, 1, 1]))
                / Tensor::from_slice(&s).view([1, 3, 1, 1])
        };
        let u = norm((from_mean, from_std));
        let z = norm((leukoscope::preprocess::MEAN, leukoscope::preprocess::STD));
        let upto = |g: Graph, bn: Id| g.truncated(bn);
        let a = tch::no_grad(|| upto(g_plain, bn_plain).forward_t(&u, false));
        let b = tch::no_grad(|| upto(g_folded, bn_folded).forward_t(&z, false));
        assert_eq!(a.size(), vec![2, 4, 8, 8]);
        let inner = |t: &Tensor| t.narrow(2, 0, 7).narrow(3, 0, 7);
        let diff = (inner(&a) - inner(&b)).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "interior differs by {diff}");
        let border = (a.narrow(2, 7, 1) - b.narrow(2, 7, 1))
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            border > 1e-3,
            "the padded border is where the fold is not exact ({border})"
        );
        std::fs::remove_file(path).ok();
    }
}
