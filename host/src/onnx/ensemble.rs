//! Ensembles: float models of one input, trained apart (`train --init-seed`), joined into one ONNX graph.
//!
//! Each member keeps its trunk, renamed under `m{i}.`; the members' heads (`Gemm(embedding, W, b)`, as
//! [`super::export`] writes them) become one `Gemm` over the concatenated embeddings whose weight is the
//! members' weights side by side, each divided by the number of members, and whose bias is their mean. So the
//! ensemble's logits are exactly the mean of its members' logits, and it still ends in the single linear head
//! that `leukoscope adapt` re-fits: to the device it is one more model file.
//!
//! What this module must not do: change what a member computes, accept a member whose head is not a float
//! `Gemm` of initialisers (quantize the ensemble after joining it), or accept members that differ in their
//! input or in the number of classes; each refusal is an [`EnsembleError`] naming the member.

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, TensorProto};

use super::proto::{attr_int, float_tensor, node};

/// Why members cannot be joined.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// Fewer than two members.
    #[error("an ensemble needs at least two members, got {0}")]
    TooFew(usize),
    /// A member that cannot be joined, and why.
    #[error("member {member}: {reason}")]
    Member {
        /// The member as the caller named it (its file).
        member: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A member's head: the embedding it reads and its weights as `[classes][dim]`.
struct Head {
    embedding: String,
    dim: usize,
    /// Row-major `[classes, dim]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    (t.raw_data.len() % 4 == 0).then(|| {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// The head that writes the graph's only output, and the index of its node.
fn head(
    g: &GraphProto,
    fail: &dyn Fn(String) -> EnsembleError,
) -> Result<(usize, Head), EnsembleError> {
    let [out] = g.output.as_slice() else {
        return Err(fail(format!(
            "has {} outputs, expected one",
            g.output.len()
        )));
    };
    let (ix, gemm) = g
        .node
        .iter()
        .enumerate()
        .find(|(_, n)| n.output.contains(&out.name))
        .ok_or_else(|| fail("its output has no producer".into()))?;
    if gemm.op_type != "Gemm" || gemm.input.len() != 3 {
        return Err(fail(format!(
            "its output comes from {} (expected the float Gemm head that export writes: join float models, then quantize the ensemble)",
            gemm.op_type
        )));
    }
    let attr = |name: &str, default: i64| {
        gemm.attribute
            .iter()
            .find(|a| a.name == name)
            .map_or(default, |a| a.i)
    };
    let scaled = gemm
        .attribute
        .iter()
        .any(|a| (a.name == "alpha" || a.name == "beta") && a.f != 1.0);
    if attr("transA", 0) != 0 || scaled {
        return Err(fail(
            "its Gemm head transposes its input or scales (alpha, beta)".into(),
        ));
    }
    let init = |name: &str| {
        g.initializer
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| floats(t).map(|v| (t.dims.clone(), v)))
            .ok_or_else(|| fail(format!("its head's {name} is not a float initialiser")))
    };
    let (wdims, w) = init(&gemm.input[1])?;
    let (_, bias) = init(&gemm.input[2])?;
    let [a, b] = wdims[..] else {
        return Err(fail(format!(
            "its head's weight has dims {wdims:?}, expected two"
        )));
    };
    let (a, b) = (a as usize, b as usize);
    // Gemm: Y = X·B (transB 0: B is [dim, classes]) or X·Bᵀ (transB 1: B is [classes, dim]).
    let (classes, dim, weight) = if attr("transB", 0) == 1 {
        (a, b, w)
    } else {
        (b, a, (0..a * b).map(|i| w[(i % a) * b + i / a]).collect())
    };
    if weight.len() != classes * dim || bias.len() != classes {
        return Err(fail(format!(
            "its head's weight ({} values) or bias ({}) does not match [{classes}, {dim}]",
            weight.len(),
            bias.len()
        )));
    }
    Ok((
        ix,
        Head {
            embedding: gemm.input[0].clone(),
            dim,
            weight,
            bias,
        },
    ))
}

/// Joins `members` (name, model) into one model whose logits are the mean of theirs. The graph input and
/// output keep the first member's names; everything else of member `i` is renamed `m{i}.{name}`.
pub fn join(members: &[(String, ModelProto)]) -> Result<ModelProto, EnsembleError> {
    if members.len() < 2 {
        return Err(EnsembleError::TooFew(members.len()));
    }
    let k = members.len();
    let mut joined = GraphProto {
        name: format!("ensemble of {k}"),
        ..Default::default()
    };
    let mut heads = Vec::with_capacity(k);
    let mut reference: Option<(
        tract_onnx::pb::ValueInfoProto,
        tract_onnx::pb::ValueInfoProto,
    )> = None;
    for (i, (name, model)) in members.iter().enumerate() {
        let fail = |reason: String| EnsembleError::Member {
            member: name.clone(),
            reason,
        };
        let g = model
            .graph
            .as_ref()
            .ok_or_else(|| fail("has no graph".into()))?;
        let inputs: Vec<_> = g
            .input
            .iter()
            .filter(|v| !g.initializer.iter().any(|t| t.name == v.name))
            .collect();
        let [input] = inputs[..] else {
            return Err(fail(format!("has {} inputs, expected one", inputs.len())));
        };
        let (head_ix, h) = head(g, &fail)?;
        match &reference {
            None => reference = Some((input.clone(), g.output[0].clone())),
            Some((first_in, _)) => {
                if input != first_in {
                    return Err(fail(format!(
                        "its input {:?} differs from the first member's {:?}",
                        input, first_in
                    )));
                }
                let classes = heads.first().map_or(0, |f: &Head| f.bias.len());
                if h.bias.len() != classes {
                    return Err(fail(format!(
                        "has {} classes, the first member {classes}",
                        h.bias.len()
                    )));
                }
            }
        }
        let input_name = input.name.clone();
        let rename = |s: &String| {
            if s.is_empty() || *s == input_name {
                s.clone()
            } else {
                format!("m{i}.{s}")
            }
        };
        for (ix, n) in g.node.iter().enumerate() {
            if ix == head_ix {
                continue;
            }
            joined.node.push(NodeProto {
                name: rename(&n.name),
                input: n.input.iter().map(rename).collect(),
                output: n.output.iter().map(rename).collect(),
                ..n.clone()
            });
        }
        let head_inputs = &g.node[head_ix].input;
        for t in g
            .initializer
            .iter()
            .filter(|t| !head_inputs[1..].contains(&t.name))
        {
            joined.initializer.push(TensorProto {
                name: rename(&t.name),
                ..t.clone()
            });
        }
        for v in &g.value_info {
            joined.value_info.push(tract_onnx::pb::ValueInfoProto {
                name: rename(&v.name),
                ..v.clone()
            });
        }
        heads.push(Head {
            embedding: rename(&h.embedding),
            ..h
        });
    }
    let (input, output) = reference.expect("two or more members");
    let classes = heads[0].bias.len();
    let total: usize = heads.iter().map(|h| h.dim).sum();
    let mut weight = vec![0f32; classes * total];
    let mut at = 0;
    for h in &heads {
        for c in 0..classes {
            for d in 0..h.dim {
                weight[c * total + at + d] = h.weight[c * h.dim + d] / k as f32;
            }
        }
        at += h.dim;
    }
    let bias: Vec<f32> = (0..classes)
        .map(|c| heads.iter().map(|h| h.bias[c]).sum::<f32>() / k as f32)
        .collect();
    let concat = "ensemble.embedding".to_string();
    joined.node.push(node(
        "Concat",
        "ensemble/concat",
        heads.iter().map(|h| h.embedding.clone()).collect(),
        vec![concat.clone()],
        vec![attr_int("axis", 1)],
    ));
    joined.initializer.push(float_tensor(
        "ensemble.head.weight",
        &[classes as i64, total as i64],
        weight,
    ));
    joined
        .initializer
        .push(float_tensor("ensemble.head.bias", &[classes as i64], bias));
    joined.node.push(node(
        "Gemm",
        "ensemble/head",
        vec![
            concat,
            "ensemble.head.weight".into(),
            "ensemble.head.bias".into(),
        ],
        vec![output.name.clone()],
        vec![attr_int("transB", 1)],
    ));
    joined.input = vec![input];
    joined.output = vec![output];
    let first = &members[0].1;
    Ok(ModelProto {
        doc_string: format!(
            "Leukoscope ensemble of {k} (mean of the members' logits): {}",
            members
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        graph: Some(joined),
        metadata_props: Vec::new(),
        ..first.clone()
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tch::{nn, Device, Kind, Tensor};

    use super::*;
    use crate::nets::Arch;
    use crate::onnx::{run_tract, to_model_proto, ExportOptions};

    fn member(seed: i64) -> ModelProto {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let g = Arch::Edge16.build(&vs.root(), 4);
        to_model_proto(&g, [64, 64], &ExportOptions::default()).expect("exports")
    }

    #[test]
    fn the_ensemble_computes_the_mean_of_its_members_logits() {
        let members: Vec<_> = (1..=3).map(|s| (format!("m{s}"), member(s))).collect();
        let joined = join(&members).expect("joins");
        let g = joined.graph.as_ref().unwrap();
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.output[0].name, crate::onnx::OUTPUT_NAME);
        assert_eq!(
            g.node.iter().filter(|n| n.op_type == "Gemm").count(),
            1,
            "one head over the joined embeddings"
        );
        tch::manual_seed(7);
        let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let got = run_tract(&joined.encode_to_vec(), &x).expect("tract runs the ensemble");
        let outs: Vec<Vec<f32>> = members
            .iter()
            .map(|(_, m)| run_tract(&m.encode_to_vec(), &x).expect("tract runs a member"))
            .collect();
        assert_eq!(got.len(), 8);
        for (i, v) in got.iter().enumerate() {
            let mean = outs.iter().map(|o| o[i]).sum::<f32>() / 3.0;
            assert!(
                (v - mean).abs() < 1e-4,
                "logit {i}: {v} against the mean {mean}"
            );
        }
        // The members differ, so the test would see a head that kept only one of them.
        assert!((outs[0][0] - outs[1][0]).abs() > 1e-4);
    }

    #[test]
    fn members_that_cannot_be_joined_are_named() {
        let one = vec![("a".to_string(), member(1))];
        assert!(matches!(join(&one), Err(EnsembleError::TooFew(1))));

        let mut no_head = member(2);
        let g = no_head.graph.as_mut().unwrap();
        let last = g.node.len() - 1;
        g.node[last].op_type = "MatMul".into();
        let err = join(&[("a".into(), member(1)), ("b.onnx".into(), no_head)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("member b.onnx: its output comes from MatMul"),
            "{err}"
        );

        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let other = to_model_proto(
            &Arch::Edge16.build(&vs.root(), 4),
            [32, 32],
            &ExportOptions::default(),
        )
        .expect("exports");
        let err = join(&[("a".into(), member(1)), ("c.onnx".into(), other)]).unwrap_err();
        assert!(
            err.to_string().contains("member c.onnx: its input"),
            "{err}"
        );

        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let five = to_model_proto(
            &Arch::Edge16.build(&vs.root(), 5),
            [64, 64],
            &ExportOptions::default(),
        )
        .expect("exports");
        let err = join(&[("a".into(), member(1)), ("d.onnx".into(), five)]).unwrap_err();
        assert!(
            err.to_string().contains("member d.onnx: has 5 classes"),
            "{err}"
        );
    }
}
