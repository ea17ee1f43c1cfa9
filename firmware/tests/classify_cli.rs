//! `leukoscope classify` as a user runs it: JSON lines of the documented shape, and a corrupt or missing file
//! reported by name while the other images are still classified and the exit status is non-zero.
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leukoscope"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/cells")
}

#[test]
fn json_lines_have_the_documented_shape() {
    let out = bin()
        .args(["classify", "--json"])
        .arg(samples())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "one line per bundled image");
    for line in lines {
        assert!(line.starts_with("{\"path\":"), "key order: {line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let class = v["class"].as_str().unwrap();
        let probs = v["probs"].as_object().unwrap();
        let keys: Vec<&str> = probs.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]);
        let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "{line}");
        assert_eq!(
            v["confidence"].as_f64().unwrap(),
            probs[class].as_f64().unwrap()
        );
    }
}

#[test]
fn bad_files_are_named_and_the_rest_still_classified() {
    let dir = std::env::temp_dir().join(format!("leuko-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.jpeg");
    std::fs::write(&corrupt, b"\xFF\xD8\xFF\xE0 this is not a JPEG").unwrap();
    let good = samples().join("LYMPHOCYTE/_0_3975.jpeg");
    let out = bin()
        .args(["classify", "--json"])
        .arg(&corrupt)
        .arg(dir.join("missing.jpeg"))
        .arg(&good)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt.jpeg"), "{stderr}");
    assert!(stderr.contains("missing.jpeg"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good image is still classified: {stdout}"
    );
    assert!(stdout.contains("_0_3975.jpeg"));
}

#[test]
fn wrong_model_file_is_one_clear_error() {
    let dir = std::env::temp_dir().join(format!("leuko-cli-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.onnx");
    std::fs::write(&model, b"random bytes, not a model").unwrap();
    let out = bin()
        .args(["classify", "--model"])
        .arg(&model)
        .arg(samples())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("m.json"), "missing card is named: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
