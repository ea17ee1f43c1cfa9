use super::*;
use crate::cell::{Cell, Nucleus};
use crate::pipeline::CountedCell;
use crate::rect::Rect;

fn cell(class: Option<Class>, conf: f32) -> CountedCell {
    CountedCell {
        bbox: [10, 20, 110, 120],
        class,
        predicted: class.unwrap_or(Class::Monocyte),
        confidence: conf,
        probs: [0.1, 0.1, 0.1, 0.7],
        crop: Frame::filled(128, 128, [200, 100, 150]).unwrap(),
        detection: Cell {
            nucleus: Some(Nucleus {
                rect: Rect::new(0, 0, 1, 1),
                area: 1,
                centre: (0, 0),
            }),
            ..Cell::new(Rect::new(10, 20, 110, 120))
        },
    }
}

fn result(cells: Vec<CountedCell>) -> FrameResult {
    FrameResult {
        cells,
        overflow: false,
        width: 640,
        height: 480,
    }
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}

#[test]
fn stop_rule_marks_late_cells_uncounted_but_keeps_them() {
    let mut r = Report::new(StopRule { target: 2 });
    assert!(!r.add_frame(
        Path::new("a.jpg"),
        &result(vec![cell(Some(Class::Neutrophil), 0.9)])
    ));
    let done = r.add_frame(
        Path::new("b.jpg"),
        &result(vec![cell(None, 0.3), cell(Some(Class::Eosinophil), 0.8)]),
    );
    assert!(done);
    assert_eq!(r.differential.total(), 2);
    assert_eq!(r.frames[1].cells.len(), 2);
    assert!(!r.frames[1].cells[1].counted);
    assert_eq!(r.frames[1].cells[0].class, "UNIDENTIFIED");
}

#[test]
fn json_has_the_promised_shape() {
    let mut r = Report::new(StopRule { target: 100 });
    r.add_frame(
        Path::new("a.jpg"),
        &result(vec![cell(Some(Class::Neutrophil), 0.93)]),
    );
    r.add_error(
        Path::new("bad.jpg"),
        "bad.jpg: not a decodable JPEG/PNG image",
    );
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
    assert_eq!(v["errors"], 1);
    assert!(v["frames"][1]["error"]
        .as_str()
        .unwrap()
        .contains("bad.jpg"));
}

#[test]
fn csv_has_one_row_per_cell_and_quotes() {
    let mut r = Report::new(StopRule::default());
    r.add_frame(
        Path::new("a,b.jpg"),
        &result(vec![cell(Some(Class::Lymphocyte), 0.9), cell(None, 0.2)]),
    );
    let text = csv::to_string(&r);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], csv::HEADER);
    assert!(lines[1].starts_with("\"a,b.jpg\",0,10,20,110,120,LYMPHOCYTE,"));
    assert!(lines[2].contains("UNIDENTIFIED"));
}

#[test]
fn html_is_self_contained_with_inline_crops() {
    let mut r = Report::new(StopRule::default());
    r.add_frame(
        Path::new("<a>.jpg"),
        &result(vec![cell(Some(Class::Monocyte), 0.9)]),
    );
    let page = html::to_string(&r);
    assert!(page.contains("data:image/png;base64,iVBORw0KGgo"));
    assert!(page.contains("&lt;a&gt;.jpg"));
    assert!(!page.contains("<a>.jpg"));
    assert!(!page.contains("src=\"http"));
}
