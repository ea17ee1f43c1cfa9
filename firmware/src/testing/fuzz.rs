//! Fuzz targets: every parser an outsider can feed, as one function of arbitrary bytes each. The same
//! functions run under libFuzzer (`firmware/fuzz`, `cargo +nightly fuzz run <target>`: coverage-guided,
//! for long runs) and under the stable test harness `firmware/tests/fuzz.rs` (seeded mutations by
//! proptest, a short run in CI). A target fails only by panicking (or by an abort or a timeout the
//! fuzzer sees); every error it meets must be an ordinary `Err`.

use std::path::Path;
use std::sync::OnceLock;

use crate::board::config::BoardConfig;
use crate::classify::Classifier;
use crate::frame::{Frame, MIN_SIDE};
use crate::journal;
use crate::model::{sha256_hex, ModelBytes, ModelSource};
use crate::pipeline::Pipeline;
use crate::preprocess;
use crate::report::{self, Report};

/// The names of the targets, as `firmware/fuzz` and `firmware/tests/fuzz.rs` know them.
pub const TARGETS: [&str; 5] = ["image", "model", "card", "journal", "board"];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "image" => image(data),
        "model" => model(data),
        "card" => card(data),
        "journal" => journal(data),
        "board" => board(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| Classifier::embedded().expect("the embedded model loads"))
}

/// Image bytes → decode → (if it holds a cell) the Kaggle-crop path and a smear frame's whole pipeline:
/// segment, crop, classify. Every typed cell has one finite probability per class.
pub fn image(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    if frame.width() < MIN_SIDE || frame.height() < MIN_SIDE {
        return;
    }
    // Bound the work per input (a fuzzer's 16k x 16k frame is legal but slow, not a bug).
    if u64::from(frame.width()) * u64::from(frame.height()) > 4_000_000 {
        return;
    }
    let c = classifier();
    let p = c.classify_frame(&frame).expect("a decoded frame types");
    assert_eq!(p.probs.len(), c.classes().len());
    assert!(p.probs.iter().all(|v| v.is_finite()));
    let _ = preprocess::frame_input(&frame);
    let mut pipeline = Pipeline::new(c.clone());
    let r = pipeline.analyze(&frame).expect("a decoded frame analyses");
    for cell in &r.cells {
        let p = cell.prediction.as_ref().expect("typed");
        assert!(p.probs.iter().all(|v| v.is_finite()));
    }
}

/// ONNX bytes with the embedded card (re-hashed for them) → load, verify, plan, one grey cell.
pub fn model(data: &[u8]) {
    let mut card = ModelSource::Embedded.load().expect("embedded").card;
    card.sha256 = sha256_hex(data);
    let m = ModelBytes {
        onnx: data.to_vec(),
        card,
        path: "fuzz.onnx".into(),
    };
    if let Ok(c) = Classifier::from_verified(m) {
        let grey = vec![0.0; preprocess::INPUT_SHAPE.iter().product()];
        let _ = c.logits(&grey);
    }
}

/// Card bytes beside the embedded ONNX → parse, verify against this build, load.
pub fn card(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(card) = serde_json::from_str::<crate::model::ModelCard>(text) else {
        return;
    };
    let onnx = crate::model::DEFAULT_ONNX;
    if crate::model::verify(onnx, &card, Path::new("fuzz.onnx")).is_ok() {
        let _ = Classifier::from_verified(ModelBytes {
            onnx: onnx.to_vec(),
            card,
            path: "fuzz.onnx".into(),
        });
    }
}

/// Journal bytes → replay → the report from it in every format.
pub fn journal(data: &[u8]) {
    let path = scratch_file("journal");
    std::fs::write(&path, data).expect("scratch file");
    if let Ok(state) = journal::read(&path) {
        let r = Report::from_journal(&state);
        assert_eq!(r.differential.total(), state.counted());
        let _ = report::json::to_string(&r);
        let _ = report::csv::to_string(&r);
        let _ = report::html::to_string(&r);
    }
}

/// Board-file text → parse and check.
pub fn board(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = BoardConfig::parse(text, Path::new("fuzz.toml")) {
            let _ = cfg.led.led_config();
        }
    }
}

/// One scratch file per thread and process (tmpfs where there is one).
fn scratch_file(name: &str) -> std::path::PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!(
        "leukoscope-fuzz-{}-{thread}.{name}",
        std::process::id()
    ))
}
