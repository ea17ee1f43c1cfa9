//! `leukoscope count`, `run` and `report` as a user runs them: one report schema for all three, a session's
//! report rebuilt from its journal identical to what the session printed, and what a session and a report
//! say about themselves.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leukoscope"))
}

fn smears() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/smears")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leuko-count-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report on stdout")
}

/// The keys every report has, whatever made it.
const SCHEMA: [&str; 17] = [
    "frames",
    "differential",
    "total",
    "typed",
    "percent",
    "flags",
    "target",
    "target_reached",
    "errors",
    "reference",
    "classes",
    "unidentified_threshold",
    "analyzer",
    "model",
    "software",
    "date",
    "inputs",
];

fn has_schema(v: &Value) {
    for k in SCHEMA {
        assert!(v.get(k).is_some(), "no {k:?} in {v}");
    }
    assert_eq!(
        v["software"],
        format!("leukoscope {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(v["date"].as_str().unwrap().ends_with('Z'), "{}", v["date"]);
    assert_eq!(v["model"]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn count_names_what_made_it_and_writes_csv_and_html() {
    let dir = scratch("count");
    let (csv, html) = (dir.join("r.csv"), dir.join("r.html"));
    let out = bin()
        .args(["count", "--json", "--csv"])
        .arg(&csv)
        .arg("--html")
        .arg(&html)
        .arg(smears())
        .output()
        .unwrap();
    let v = ok(&out);
    has_schema(&v);
    assert_eq!(v["frames"].as_array().unwrap().len(), 8);
    assert_eq!(v["target"], 100);
    assert_eq!(v["inputs"][0], smears().display().to_string());
    let csv = std::fs::read_to_string(csv).unwrap();
    assert!(csv.starts_with("# leukoscope "), "{csv}");
    assert!(csv.contains(v["model"]["sha256"].as_str().unwrap()));
    assert!(csv.contains("\nframe,cell,x0,y0,x1,y1,class,confidence,predicted,p_eosinophil,"));
    let html = std::fs::read_to_string(html).unwrap();
    assert!(
        html.contains(" shown</h2>") && html.contains(" of "),
        "gallery headings"
    );
}

#[test]
fn the_same_file_twice_is_counted_once_with_a_warning() {
    let one = smears().join("BloodImage_00001.jpg");
    let out = bin()
        .args(["count", "--json"])
        .arg(&one)
        .arg(smears())
        .output()
        .unwrap();
    let v = ok(&out);
    assert_eq!(v["frames"].as_array().unwrap().len(), 8);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("BloodImage_00001.jpg"),
        "{stderr}"
    );
}

/// `count --rbc-px`: these frames' red cells measure about 83 px (41.4 at the training scale, half the
/// frame), so scaling by that diameter is scaling by the frame's size: the same differential. `auto` measures
/// every frame and counts them all; a diameter that makes the cells four times too big finds other cells.
#[test]
fn segment_takes_the_same_scale_step() {
    let dir = std::env::temp_dir().join(format!("leukoscope-segment-rbc-{}", std::process::id()));
    let segment = |extra: &[&str]| {
        let out = bin()
            .arg("segment")
            .arg("--out")
            .arg(&dir)
            .args(extra)
            .arg(smears())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = segment(&[]);
    assert_eq!(plain.lines().count(), 8, "{plain}");
    // BCCD's 640×480 frames: 82.8 px red cells are the size scaling's factor of 2 exactly.
    assert_eq!(segment(&["--rbc-px", "82.8"]), plain);
    assert_ne!(segment(&["--rbc-px", "20"]), plain);
    let bad = bin()
        .args(["segment", "--out"])
        .arg(&dir)
        .args(["--rbc-px", "0"])
        .arg(smears())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rbc-px"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn count_scales_frames_by_their_red_cells() {
    let count = |extra: &[&str]| {
        let out = bin()
            .args(["count", "--json", "--target", "0"])
            .args(extra)
            .arg(smears())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (ok(&out), stderr)
    };
    let (plain, _) = count(&[]);
    let (same, _) = count(&["--rbc-px", "82.8"]);
    assert_eq!(plain["differential"], same["differential"]);
    assert_eq!(plain["frames"], same["frames"]);
    let (auto, stderr) = count(&["--rbc-px", "auto"]);
    assert_eq!(auto["frames"].as_array().unwrap().len(), 8);
    assert!(
        !stderr.contains("warning"),
        "every sample frame has red cells: {stderr}"
    );
    let total = |v: &Value| v["total"].as_u64().unwrap();
    let diff = total(&auto).abs_diff(total(&plain));
    assert!(
        diff * 5 <= total(&plain),
        "auto {} vs {}",
        total(&auto),
        total(&plain)
    );
    let (wrong, _) = count(&["--rbc-px", "20"]);
    assert_ne!(wrong["frames"], plain["frames"]);
    let bad = bin()
        .args(["count", "--rbc-px", "0"])
        .arg(smears())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rbc-px"));
}

#[test]
fn target_0_means_no_limit_and_says_so() {
    let out = bin()
        .args(["count", "--target", "0"])
        .arg(smears())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no target"), "{text}");
    assert!(!text.contains("not reached"), "{text}");
    assert!(text.contains("typed"), "{text}");
}

fn run_sim(journal: &Path, extra: &[&str]) -> Output {
    bin()
        .args([
            "run",
            "--sim",
            "--refocus-every",
            "0",
            "--grid",
            "6x6",
            "--journal",
        ])
        .arg(journal)
        .args(extra)
        .output()
        .unwrap()
}

/// The "done when": `run --sim --target 20 --journal J --json` prints the report schema of
/// `count --json`, and `report --journal J --json` gives the same report.
#[test]
fn run_prints_the_count_report_and_report_rebuilds_it_from_the_journal() {
    let dir = scratch("run");
    let j = dir.join("j.jsonl");
    let live = ok(&run_sim(&j, &["--target", "20", "--json"]));
    has_schema(&live);
    assert_eq!(live["total"], 20);
    assert_eq!(live["target"], 20);
    assert_eq!(live["target_reached"], true);
    assert!(live["inputs"][0]
        .as_str()
        .unwrap()
        .starts_with("sim slide="));
    let html = dir.join("r.html");
    let rebuilt = ok(&bin()
        .args(["report", "--json", "--html"])
        .arg(&html)
        .arg("--journal")
        .arg(&j)
        .output()
        .unwrap());
    assert_eq!(
        rebuilt, live,
        "the report from the journal is the session's report"
    );
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("20 cells counted"));

    // The journal is JSON lines: every line parses, and the start record names what made it.
    let text = std::fs::read_to_string(&j).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[0]["model"], live["model"]);
    assert_eq!(lines[0]["analyzer"], "model");
    assert_eq!(lines[0]["classes"], live["classes"]);
    assert!(lines
        .iter()
        .all(|l| l["crc"].as_str().is_some_and(|c| c.len() == 8)));
}

#[test]
fn resume_refuses_another_model_and_keeps_its_target_saying_so() {
    let dir = scratch("resume");
    let j = dir.join("j.jsonl");
    let float = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/edge16.onnx");
    let out = run_sim(&j, &["--target", "3", "--model", float]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 cells counted"),
        "run prints the count summary: {text}"
    );

    let other = run_sim(&j, &["--resume", "--target", "3"]);
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("cannot resume") && stderr.contains("model edge16 (sha256"),
        "{stderr}"
    );

    let again = run_sim(&j, &["--resume", "--target", "50", "--model", float]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("keeping the journal's target 3"),
        "{stderr}"
    );
}

/// A grid too large to be a slide is refused at once, by name, before anything is allocated or journalled
/// (it once took 10.6 GB and 20 s of silence; `4294967295x4294967295` overflowed).
#[test]
fn a_hostile_grid_is_refused_at_once() {
    let dir = scratch("grid");
    for grid in ["30000x30000", "4294967295x4294967295", "0x5", "10x"] {
        let j = dir.join("g.journal");
        let started = std::time::Instant::now();
        let out = bin()
            .args(["run", "--sim", "--grid", grid, "--journal"])
            .arg(&j)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{grid}");
        assert!(
            err.contains("--grid") && err.lines().count() <= 4,
            "{grid}: {err}"
        );
        assert!(!err.contains("panicked"), "{grid}: {err}");
        assert!(!j.exists(), "{grid}: a journal was started");
        assert!(
            started.elapsed().as_secs() < 10,
            "{grid}: took {:?}",
            started.elapsed()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A damaged frame (a JPEG cut short) and an image too small to hold a cell are named in every report
/// format, never counted, and the count exits non-zero; the good frame beside them still counts.
#[test]
fn damaged_and_too_small_frames_are_named_in_every_report_format() {
    let dir = scratch("damaged");
    let good = std::fs::read(smears().join("BloodImage_00001.jpg")).unwrap();
    std::fs::write(dir.join("cut.jpg"), &good[..good.len() / 2]).unwrap();
    let tiny = leukoscope::Frame::filled(20, 20, [200, 150, 180]).unwrap();
    std::fs::write(dir.join("tiny.png"), tiny.to_png().unwrap()).unwrap();
    std::fs::write(dir.join("good.jpg"), &good).unwrap();
    let (csv, html) = (dir.join("r.csv"), dir.join("r.html"));
    let out = bin()
        .args(["count", "--json", "--target", "0", "--csv"])
        .arg(&csv)
        .arg("--html")
        .arg(&html)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 frame(s) could not be counted"),
        "{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["errors"], 2);
    let frames = json["frames"].as_array().unwrap();
    let error_of = |name: &str| {
        frames
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .and_then(|f| f["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(error_of("cut.jpg").contains("damaged"), "{json}");
    assert!(error_of("tiny.png").contains("too small"), "{json}");
    assert!(json["total"].as_u64().unwrap() > 0, "the good frame counts");
    for text in [
        std::fs::read_to_string(&csv).unwrap(),
        std::fs::read_to_string(&html).unwrap(),
    ] {
        assert!(
            text.contains("cut.jpg") && text.contains("damaged"),
            "{text:.300}"
        );
        assert!(
            text.contains("tiny.png") && text.contains("too small"),
            "{text:.300}"
        );
    }
}

/// A frame from a camera set too bright (every channel × 1.5, clipped) is counted, and the report says how
/// many frames were over-exposed and which: in the JSON (`over_exposed`, the frame's `clipped`), on stderr
/// and in the HTML page.
#[test]
fn an_over_exposed_frame_is_counted_and_the_report_says_so() {
    let dir = scratch("bright");
    let f = leukoscope::Frame::open(&smears().join("BloodImage_00001.jpg")).unwrap();
    let data = f
        .data()
        .iter()
        .map(|&v| (u32::from(v) * 3 / 2).min(255) as u8)
        .collect();
    let bright = dir.join("bright.png");
    let b = leukoscope::Frame::new(f.width(), f.height(), data).unwrap();
    std::fs::write(&bright, b.to_png().unwrap()).unwrap();
    let html = dir.join("r.html");
    let out = bin()
        .args(["count", "--json", "--html"])
        .arg(&html)
        .arg(smears())
        .arg(&bright)
        .output()
        .unwrap();
    let v = ok(&out);
    assert_eq!(v["over_exposed"], 1);
    let frames = v["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 9);
    let clipped: Vec<&Value> = frames
        .iter()
        .filter(|f| f.get("clipped").is_some())
        .collect();
    assert_eq!(clipped.len(), 1);
    assert!(clipped[0]["path"].as_str().unwrap().ends_with("bright.png"));
    assert!(
        !clipped[0]["cells"].as_array().unwrap().is_empty(),
        "still counted"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bright.png") && stderr.contains("over-exposed"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(html).unwrap();
    assert!(
        page.contains("Warning: 1 of 9 frames over-exposed"),
        "{page}"
    );
}
