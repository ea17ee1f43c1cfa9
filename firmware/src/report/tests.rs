use super::*;
use crate::cell::Prediction;
use crate::frame::Frame;
use crate::rect::Rect;

fn classes() -> Classes {
    Classes::new(["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]).unwrap()
}

fn analysis(classes: Classes) -> Analysis {
    Analysis {
        analyzer: "model".into(),
        model: Some(crate::model::ModelId {
            name: "test-model".into(),
            sha256: "0f".repeat(32),
        }),
        unidentified_threshold: 0.5,
        classes,
    }
}

fn provenance() -> Provenance {
    Provenance {
        software: software(),
        date: iso_date(0),
        inputs: vec!["frames/".into()],
    }
}

fn report(target: u32) -> Report {
    Report::new(analysis(classes()), StopRule { target }, provenance())
}

/// A cell typed `class` (or unidentified, predicted MONOCYTE) with confidence `conf`.
fn cell(class: Option<usize>, conf: f32) -> Cell {
    let predicted = class.unwrap_or(2);
    let mut probs = vec![(1.0 - conf) / 3.0; 4];
    probs[predicted] = conf;
    Cell {
        crop: Some(Frame::filled(128, 128, [200, 100, 150]).unwrap()),
        prediction: Some(Prediction {
            probs,
            predicted,
            confidence: conf,
            class,
        }),
        ..Cell::new(Rect::new(10, 20, 110, 120))
    }
}

fn result(cells: Vec<Cell>) -> FrameResult {
    FrameResult {
        cells,
        overflow: false,
        width: 640,
        height: 480,
        rbc_px: None,
        scale_error: None,
        clipping: None,
    }
}

#[test]
fn dates_are_iso_8601_utc() {
    assert_eq!(iso_date(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso_date(1_764_646_079), "2025-12-02T03:27:59Z");
}

#[test]
fn stop_rule_marks_late_cells_uncounted_but_keeps_them() {
    let mut r = report(2);
    assert!(!r.add_frame(Path::new("a.jpg"), result(vec![cell(Some(3), 0.9)])));
    let done = r.add_frame(
        Path::new("b.jpg"),
        result(vec![cell(None, 0.3), cell(Some(0), 0.8)]),
    );
    assert!(done);
    assert_eq!(r.differential.total(), 2);
    assert_eq!(r.frames[1].cells.len(), 2);
    assert_eq!(r.frames[1].counted, 1);
    assert!(
        r.frames[1].cells[1].crop.is_none(),
        "uncounted crops are not kept"
    );
    let v = json::to_value(&r);
    assert_eq!(v["frames"][1]["cells"][0]["class"], "UNIDENTIFIED");
    assert_eq!(v["frames"][1]["cells"][0]["predicted"], "MONOCYTE");
    assert_eq!(v["frames"][1]["cells"][1]["counted"], false);
    assert!(
        r.headline().contains("2 cells counted, 1 typed"),
        "{}",
        r.headline()
    );
    assert!(
        r.headline().contains("target 2 reached"),
        "{}",
        r.headline()
    );
}

#[test]
fn no_target_is_said_as_such() {
    let mut r = report(0);
    r.add_frame(Path::new("a.jpg"), result(vec![cell(Some(3), 0.9)]));
    assert!(r.summary().contains("no target"), "{}", r.summary());
    assert!(!r.summary().contains("not reached"), "{}", r.summary());
    let v = json::to_value(&r);
    assert!(v["target"].is_null());
    assert_eq!(v["target_reached"], false);
}

#[test]
fn json_has_the_promised_shape() {
    let mut r = report(100);
    r.add_frame(Path::new("a.jpg"), result(vec![cell(Some(3), 0.93)]));
    r.add_error(Path::new("bad.jpg"), "bad.jpg: not a decodable image");
    let v = json::to_value(&r);
    assert_eq!(v["frames"][0]["path"], "a.jpg");
    assert_eq!(
        v["frames"][0]["cells"][0]["bbox"],
        serde_json::json!([10, 20, 110, 120])
    );
    assert_eq!(v["frames"][0]["cells"][0]["class"], "NEUTROPHIL");
    assert!((v["frames"][0]["cells"][0]["confidence"].as_f64().unwrap() - 0.93).abs() < 1e-4);
    assert_eq!(v["differential"]["NEUTROPHIL"], 1);
    assert_eq!(v["differential"]["UNIDENTIFIED"], 0);
    assert_eq!(v["total"], 1);
    assert_eq!(v["typed"], 1);
    assert_eq!(v["errors"], 1);
    assert_eq!(v["model"]["name"], "test-model");
    assert_eq!(v["model"]["sha256"], "0f".repeat(32));
    assert_eq!(v["software"], software());
    assert_eq!(v["date"], "1970-01-01T00:00:00Z");
    assert_eq!(v["inputs"][0], "frames/");
    assert_eq!(v["classes"][3], "NEUTROPHIL");
    assert!(v["frames"][1]["error"]
        .as_str()
        .unwrap()
        .contains("bad.jpg"));
}

#[test]
fn an_over_exposed_frame_is_counted_and_warned_of_in_every_form() {
    let mut r = report(100);
    r.add_frame(Path::new("a.jpg"), result(vec![cell(Some(3), 0.93)]));
    let bright = FrameResult {
        clipping: Some(Clipping {
            share: [0.6234, 0.41, 0.0],
        }),
        ..result(vec![cell(Some(1), 0.9)])
    };
    r.add_frame(Path::new("bright.jpg"), bright);
    assert_eq!(r.differential.total(), 2, "its cells still count");
    assert_eq!(r.over_exposed(), 1);
    let v = json::to_value(&r);
    assert_eq!(v["over_exposed"], 1);
    assert!(v["frames"][0].get("clipped").is_none());
    assert_eq!(
        v["frames"][1]["clipped"],
        serde_json::json!([0.62, 0.41, 0.0])
    );
    let summary = r.summary();
    assert!(
        summary.contains("warning: 1 of 2 frames over-exposed: 62 % of red, 41 % of green")
            && summary.contains("bright.jpg"),
        "{summary}"
    );
    let html = html::to_string(&r).unwrap();
    assert!(
        html.contains("Warning: 1 of 2 frames over-exposed"),
        "{html}"
    );
    // A report with no clipped frame says nothing of exposure.
    let mut r = report(100);
    r.add_frame(Path::new("a.jpg"), result(vec![cell(Some(3), 0.93)]));
    assert_eq!(r.exposure_warning(), None);
    assert!(!r.summary().contains("over-exposed"));
}

#[test]
fn csv_names_what_made_it_has_one_row_per_cell_and_quotes() {
    let mut r = report(100);
    r.add_frame(
        Path::new("a,b.jpg"),
        result(vec![cell(Some(1), 0.9), cell(None, 0.2)]),
    );
    r.add_error(Path::new("c.jpg"), "broken");
    let text = csv::to_string(&r);
    let comments: Vec<_> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(comments
        .iter()
        .any(|l| l.contains("test-model") && l.contains(&"0f".repeat(32))));
    assert!(comments.iter().any(|l| l.contains("1970-01-01T00:00:00Z")));
    assert!(comments.iter().any(|l| l.contains("frames/")));
    let lines: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        "frame,cell,x0,y0,x1,y1,class,confidence,predicted,p_eosinophil,p_lymphocyte,p_monocyte,\
         p_neutrophil,counted,error"
    );
    assert!(lines[1].starts_with("\"a,b.jpg\",0,10,20,110,120,LYMPHOCYTE,0.9,LYMPHOCYTE,"));
    assert!(
        lines[2].contains("UNIDENTIFIED,0.2,MONOCYTE"),
        "{}",
        lines[2]
    );
    let columns = lines[0].split(',').count();
    for l in &lines[1..] {
        assert_eq!(
            l.replace("\"a,b.jpg\"", "x").split(',').count(),
            columns,
            "{l}"
        );
    }
}

#[test]
fn html_is_self_contained_with_inline_crops_and_says_how_many_are_shown() {
    let mut r = report(0);
    let many: Vec<Cell> = (0..GALLERY_PER_CLASS + 2)
        .map(|_| cell(Some(2), 0.9))
        .collect();
    r.add_frame(Path::new("<a>.jpg"), result(many));
    let page = html::to_string(&r).unwrap();
    assert!(page.contains("data:image/png;base64,iVBORw0KGgo"));
    assert!(page.contains("&lt;a&gt;.jpg"));
    assert!(!page.contains("<a>.jpg"));
    assert!(!page.contains("src=\"http"));
    assert!(page.contains("MONOCYTE: 48 of 50 shown"), "gallery heading");
    assert!(page.contains("NEUTROPHIL: 0 of 0 shown"));
    assert!(page.contains("test-model"));
}

#[test]
fn five_classes_with_a_basophil_report_and_flag_by_name() {
    let five = Classes::new([
        "EOSINOPHIL",
        "LYMPHOCYTE",
        "MONOCYTE",
        "NEUTROPHIL",
        "BASOPHIL",
    ])
    .unwrap();
    let mut r = Report::new(analysis(five), StopRule { target: 0 }, provenance());
    let basophil = || {
        let mut c = cell(Some(3), 0.9);
        let p = c.prediction.as_mut().unwrap();
        p.probs = vec![0.025; 5];
        p.probs[4] = 0.9;
        p.predicted = 4;
        p.class = Some(4);
        c
    };
    r.add_frame(
        Path::new("a.jpg"),
        result(vec![basophil(), cell(Some(3), 0.9)]),
    );
    let v = json::to_value(&r);
    assert_eq!(v["differential"]["BASOPHIL"], 1);
    assert_eq!(v["percent"]["BASOPHIL"], 50.0);
    assert_eq!(
        v["reference"]["percent_of_identified_cells"]["BASOPHIL"],
        serde_json::json!([0.5, 1.0])
    );
    assert!(v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["class"] == "BASOPHIL" && f["direction"] == "high"));
    assert_eq!(
        v["frames"][0]["cells"][0]["probs"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert!(csv::header(&r).contains("p_neutrophil,p_basophil,counted"));
    let page = html::to_string(&r).unwrap();
    assert!(page.contains("BASOPHIL: 1 of 1 shown"));
    assert!(page.contains("UNIDENTIFIED: 0 of 0 shown"));
}
