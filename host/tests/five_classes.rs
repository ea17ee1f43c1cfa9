//! A model with five classes (the Kaggle four and BASOPHIL) runs end to end through the device library:
//! classify one cell, count the bundled smears, a simulated microscope session into a journal, and the
//! session's report rebuilt from that journal; every step with the card's five classes (issue 12, point 4).
mod common;

use std::path::Path;

use leukoscope::board::sim::{microscope, SimConfig};
use leukoscope::count::StopRule;
use leukoscope::journal::{self, Header, Journal};
use leukoscope::report::{self, Provenance, Report};
use leukoscope::session::{self, Outcome, SessionConfig};
use leukoscope::{inputs, model, Classes, Classifier, Frame, ModelSource, Pipeline};
use leukoscope_host::export::{self, CardInfo};
use leukoscope_host::nets::Arch;
use tch::{nn, Device};

const FIVE: [&str; 5] = [
    "EOSINOPHIL",
    "LYMPHOCYTE",
    "MONOCYTE",
    "NEUTROPHIL",
    "BASOPHIL",
];

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn a_five_class_model_classifies_counts_runs_a_session_and_reports_from_its_journal() {
    let dir = common::scratch("five-classes");
    let onnx = dir.join("five.onnx");
    let vs = nn::VarStore::new(Device::Cpu);
    let graph = common::seeded(5, || Arch::Edge.build(&vs.root(), 5));
    let info = CardInfo {
        name: "five".into(),
        arch: "edge".into(),
        training_command: "none: seeded weights for a test".into(),
        unidentified_threshold: 0.0,
    };
    let mut card = export::write_float_model(&graph, &onnx, &info).expect("export");
    // The card names the classes; the sha256 is the exported file's, so the device accepts it.
    card.classes = Classes::new(FIVE).unwrap();
    export::write_card(&card, &model::card_path(&onnx)).unwrap();
    let classifier =
        Classifier::load(&ModelSource::File(onnx.clone())).expect("the device loads it");
    assert_eq!(classifier.classes().names(), FIVE);

    // classify: five probabilities; with threshold 0 every cell is typed.
    let cell = Frame::open(&repo().join("samples/cells/NEUTROPHIL/_0_1966.jpeg")).unwrap();
    let p = classifier.classify_frame(&cell).unwrap();
    assert_eq!(p.probs.len(), 5);
    assert_eq!(p.class, Some(p.predicted));

    // count the bundled smears: the report has five classes.
    let mut pipeline = Pipeline::new(classifier.clone());
    let smears = repo().join("samples/smears");
    let mut rep = Report::new(
        pipeline.analysis(),
        StopRule { target: 0 },
        Provenance::now(&[smears.display()]),
    );
    for path in inputs::list_images(&smears).unwrap() {
        let r = pipeline.analyze(&Frame::open(&path).unwrap()).unwrap();
        rep.add_frame(&path, r);
    }
    let v = report::json::to_value(&rep);
    assert_eq!(v["classes"], serde_json::json!(FIVE));
    assert_eq!(
        v["differential"].as_object().unwrap().len(),
        6,
        "five classes + UNIDENTIFIED"
    );
    assert!(v["differential"]["BASOPHIL"].is_u64());
    assert!(v["total"].as_u64().unwrap() > 0);
    for f in v["frames"].as_array().unwrap() {
        for c in f["cells"].as_array().unwrap() {
            assert_eq!(c["probs"].as_array().unwrap().len(), 5);
        }
    }
    assert!(report::csv::to_string(&rep).contains(",p_neutrophil,p_basophil,counted,error\n"));
    assert!(report::html::to_string(&rep)
        .unwrap()
        .contains("BASOPHIL: "));

    // A simulated session into a journal, and the report rebuilt from that journal.
    let sim = SimConfig {
        grid: Some((4, 4)),
        ..SimConfig::bundled()
    };
    let (mut scope, _handle) = microscope(sim).unwrap();
    let path = dir.join("session.jsonl");
    let mut j = Journal::create(&path, Header::new(6, "sim test", pipeline.analysis())).unwrap();
    let cfg = SessionConfig {
        target: 6,
        grid: (4, 4),
        refocus_every: 0,
        ..SessionConfig::default()
    };
    let out = session::run(&mut scope, &mut pipeline, &mut j, &cfg, &mut |_| {}).unwrap();
    assert_eq!(out, Outcome::Finished { counted: 6 });
    let live = report::json::to_value(&Report::from_journal(j.state()));
    drop(j);
    let state = journal::read(&path).unwrap();
    assert_eq!(state.header.analysis.classes.names(), FIVE);
    let rebuilt = report::json::to_value(&Report::from_journal(&state));
    assert_eq!(rebuilt, live);
    assert_eq!(rebuilt["classes"], serde_json::json!(FIVE));
    assert_eq!(rebuilt["total"], 6);
    assert_eq!(rebuilt["model"]["sha256"], card.sha256);
    let _ = std::fs::remove_dir_all(&dir);
}
