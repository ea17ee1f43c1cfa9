//! Models the device must refuse with one clear error (no panic): random bytes, another input size, another
//! number of classes, an operator tract does not implement, a card that does not match. Each model carries a
//! card whose sha256 matches, so the refusal comes from the model itself, not from the checksum.

mod common;

use common::seeded;
use leukoscope::model::{sha256_hex, ModelBytes, ModelError, ModelSource};
use leukoscope::Classifier;
use leukoscope_host::nets::Arch;
use leukoscope_host::onnx::{export, ExportOptions};
use prost::Message;
use tch::{nn, Device};
use tract_onnx::pb::ModelProto;

/// `onnx` with the embedded model's card, re-hashed for these bytes.
fn with_card(onnx: Vec<u8>, name: &str) -> ModelBytes {
    let mut card = ModelSource::Embedded.load().expect("embedded model").card;
    card.sha256 = sha256_hex(&onnx);
    ModelBytes {
        onnx,
        card,
        path: name.into(),
    }
}

fn refusal(m: ModelBytes) -> String {
    let name = m.path.display().to_string();
    let err = Classifier::from_verified(m).expect_err("must be refused");
    // The whole chain: tract's own message is the cause, not the headline.
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains(&name), "the error names the file: {text}");
    println!("{text}");
    text
}

fn edge_onnx(side: i64, classes: i64) -> Vec<u8> {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = seeded(3, || Arch::Edge.build(&vs.root(), classes));
    export(&g, [side, side], &ExportOptions::default()).expect("exports")
}

#[test]
fn random_bytes_are_refused() {
    let bytes: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let text = refusal(with_card(bytes, "random.onnx"));
    assert!(text.contains("cannot load ONNX model"), "{text}");
}

#[test]
fn another_input_size_is_refused_by_name() {
    let m = with_card(edge_onnx(64, 4), "small-input.onnx");
    let err = Classifier::from_verified(m).expect_err("64 px model refused");
    assert!(matches!(err, ModelError::Incompatible { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("model input is [N, 3, 64, 64]"), "{text}");
    assert!(text.contains("[1, 3, 128, 128]"), "{text}");
}

#[test]
fn another_number_of_classes_is_refused() {
    let m = with_card(edge_onnx(128, 5), "five-classes.onnx");
    let err = Classifier::from_verified(m).expect_err("5-class model refused");
    assert!(matches!(err, ModelError::Incompatible { .. }), "{err}");
    assert!(
        err.to_string().contains("expected f32 [1, 4] logits"),
        "{err}"
    );
}

#[test]
fn an_unsupported_operator_is_named() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/edge.onnx"))
        .expect("edge.onnx");
    let mut proto = ModelProto::decode(&bytes[..]).expect("decodes");
    let graph = proto.graph.as_mut().expect("graph");
    let relu = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "Relu")
        .expect("a Relu");
    relu.op_type = "GeluTanhApprox".into();
    let text = refusal(with_card(proto.encode_to_vec(), "exotic-op.onnx"));
    assert!(
        text.contains("GeluTanhApprox"),
        "the operator is named: {text}"
    );
}

#[test]
fn a_card_for_other_bytes_is_refused_before_loading() {
    let dir = std::env::temp_dir().join(format!("leuko-bad-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("swapped.onnx");
    let embedded = ModelSource::Embedded.load().expect("embedded");
    std::fs::write(&model, edge_onnx(128, 4)).expect("write model");
    std::fs::write(
        model.with_extension("json"),
        serde_json::to_string(&embedded.card).expect("card json"),
    )
    .expect("write card");
    let err = Classifier::load(&ModelSource::File(model.clone())).expect_err("refused");
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("swapped.onnx"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
