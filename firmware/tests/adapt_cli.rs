//! `leukoscope adapt` as a technologist's export feeds it: the bundled cells (one folder per class) give a
//! model and card that `classify --model` takes; so do untyped cells (`--untyped`, method `norm`); bad folders
//! are one clear error each and write nothing.
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leukoscope"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/cells")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "leukoscope-adapt-cli-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of the bundled cells with each class folder's name in lower case (names match in any case).
fn cells(dir: &Path) -> PathBuf {
    let cells = dir.join("cells");
    for class in std::fs::read_dir(samples()).unwrap() {
        let class = class.unwrap().path();
        let name = class.file_name().unwrap().to_string_lossy().to_lowercase();
        std::fs::create_dir_all(cells.join(&name)).unwrap();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, cells.join(&name).join(f.file_name().unwrap())).unwrap();
        }
    }
    cells
}

/// `leukoscope adapt --cells CELLS --out OUT`.
fn adapt(cells: &Path, out: &Path) -> std::process::Output {
    adapt_with(&[], cells, out)
}

/// `leukoscope adapt ARGS --cells CELLS --out OUT`.
fn adapt_with(args: &[&str], cells: &Path, out: &Path) -> std::process::Output {
    bin()
        .arg("adapt")
        .args(args)
        .arg("--cells")
        .arg(cells)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `classify --json --model MODEL` types the twelve bundled cells.
fn assert_classifies_the_samples(model: &Path) {
    let classify = bin()
        .args(["classify", "--json", "--model"])
        .arg(model)
        .arg(samples())
        .output()
        .unwrap();
    assert!(
        classify.status.success(),
        "{}",
        String::from_utf8_lossy(&classify.stderr)
    );
    assert_eq!(
        String::from_utf8(classify.stdout).unwrap().lines().count(),
        12
    );
}

#[test]
fn an_adapted_model_is_written_with_its_card_and_classifies() {
    let dir = scratch("ok");
    let out = dir.join("site.onnx");
    let run = adapt_with(&["--method", "norm-head"], &cells(&dir), &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // 3 cells per class is allowed, with a warning that so few can make the model worse.
    assert!(
        stderr.contains("warning: fewer than 10 cells in EOSINOPHIL 3"),
        "{stderr}"
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("site.json")).unwrap()).unwrap();
    let a = &card["adaptation"];
    assert_eq!(a["method"], "norm-head");
    assert_eq!(a["views"], "one");
    assert!(a["renormalised"].as_u64().unwrap() > 0, "{a}");
    assert!(a.get("colour").is_none(), "{a}");
    assert_eq!(a["base"]["name"], "edge16-s3-reinhard-int8-weights");
    assert_eq!(a["cells"]["NEUTROPHIL"], 3);
    assert!(a["date"].as_str().unwrap().starts_with("20"), "{a}");
    assert_classifies_the_samples(&out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn by_default_a_layers_head_model_is_written_with_its_card_and_classifies() {
    let dir = scratch("layers");
    let out = dir.join("site-layers.onnx");
    // layers-head is the default method for typed cells.
    let run = adapt(&cells(&dir), &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("site-layers.json")).unwrap())
            .unwrap();
    let a = &card["adaptation"];
    assert_eq!(a["method"], "layers-head");
    assert!(a.get("renormalised").is_none(), "{a}");
    assert!(a["layers"].as_u64().unwrap() > 0, "{a}");
    assert!(a["prior"].as_f64().unwrap() > 0.0, "{a}");
    assert_classifies_the_samples(&out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_cell_folders_are_one_error_each_and_write_nothing() {
    let dir = scratch("bad");
    let c = cells(&dir);
    std::fs::create_dir_all(c.join("Blast")).unwrap();
    std::fs::copy(
        samples()
            .join("MONOCYTE")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        c.join("Blast/a.jpeg"),
    )
    .unwrap();
    let out = dir.join("site.onnx");
    let run = adapt(&c, &out);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("Blast") && err.contains("not a class of the model"),
        "{err}"
    );
    assert!(!out.exists() && !dir.join("site.json").exists());
    std::fs::remove_dir_all(c.join("Blast")).unwrap();
    for f in std::fs::read_dir(c.join("eosinophil")).unwrap().skip(1) {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let run = adapt(&c, &out);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("1 cell(s) of EOSINOPHIL; at least 3"), "{err}");
    assert_eq!(err.matches("error").count(), 1, "one error: {err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// The bundled cells twice over in one folder of untyped cells (24, no class folders).
fn untyped_cells(dir: &Path) -> PathBuf {
    let cells = dir.join("untyped");
    std::fs::create_dir_all(&cells).unwrap();
    for (k, class) in std::fs::read_dir(samples()).unwrap().enumerate() {
        for (i, f) in std::fs::read_dir(class.unwrap().path())
            .unwrap()
            .enumerate()
        {
            let f = f.unwrap().path();
            let ext = f.extension().unwrap().to_string_lossy().into_owned();
            for copy in 0..2 {
                std::fs::copy(&f, cells.join(format!("{k}-{i}-{copy}.{ext}"))).unwrap();
            }
        }
    }
    cells
}

#[test]
fn untyped_cells_give_a_norm_model_with_the_base_head() {
    let dir = scratch("untyped");
    let cells = untyped_cells(&dir);
    let out = dir.join("site.onnx");
    let run = adapt_with(&["--untyped"], &cells, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("adapted by norm from 24 cells (untyped 24)"),
        "{stdout}"
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("site.json")).unwrap()).unwrap();
    let a = &card["adaptation"];
    assert_eq!(a["method"], "norm");
    assert_eq!(a["untyped"], 24);
    assert!(a.get("prior").is_none(), "{a}");
    assert!(a["renormalised"].as_u64().unwrap() > 0, "{a}");
    assert_classifies_the_samples(&out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn untyped_cells_are_refused_by_head_methods_and_when_too_few() {
    let dir = scratch("untyped-bad");
    let out = dir.join("site.onnx");
    let cells = untyped_cells(&dir);
    let run = adapt_with(&["--untyped", "--method", "norm-head"], &cells, &out);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("norm-head fits a new head and needs typed cells")
            && err.contains("use `norm`"),
        "{err}"
    );
    assert!(!out.exists() && !dir.join("site.json").exists());
    // The bundled cells as they are: twelve, in class folders that --untyped reads without their names.
    let run = adapt_with(&["--untyped"], &samples(), &out);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("12 untyped cell(s); norm needs at least 20"),
        "{err}"
    );
    assert_eq!(err.matches("error").count(), 1, "one error: {err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}
