//! The whole slice on a tiny data set built from the bundled samples: train (CPU, a few steps) → export ONNX +
//! card → the device's tract classifier loads it and agrees with tch; and the host's input tensor for a JPEG
//! is the device's, value for value.
use std::path::{Path, PathBuf};

use leukoscope::{preprocess, Classifier, Frame, ModelSource};
use leukoscope_host::data::CLASSES;
use leukoscope_host::{data, export, nets::Arch, pack, train};
use tch::Device;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/cells")
}

/// A Kaggle-layout root with the 12 bundled images as TRAIN and again as TEST, each its own source smear.
fn tiny_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    let mut csv = String::from("split,class,file,source_smear,match_corr,margin\n");
    for split in ["TRAIN", "TEST"] {
        for class in CLASSES {
            let to = root
                .join("dataset2-master/images")
                .join(split)
                .join(class.name());
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(samples().join(class.name())).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                std::fs::copy(&p, to.join(&name)).unwrap();
                let c = class.name();
                csv += &format!("{split},{c},{name},{c}-{name},1.0,0.5\n");
            }
        }
    }
    std::fs::write(root.join("dataset2-master/source_smears.csv"), csv).unwrap();
    root
}

#[test]
fn train_export_and_classify_on_the_device_path() {
    let dir = std::env::temp_dir().join(format!("leuko-e2e-{}", std::process::id()));
    let root = tiny_root(&dir);
    let recipe = train::Recipe {
        arch: "edge".into(),
        epochs: 2,
        batch: 4,
        lr: 1e-3,
        weight_decay: 0.0,
        cosine: true,
        augment: true,
        label_smoothing: 0.1,
        val_fraction: 0.34,
        seed: 3,
        init_seed: None,
        limit_per_class: None,
        shift: 4,
        mixup: 0.2,
        select_auc: true,
        bn_momentum: None,
        fold: None,
        max_seconds: None,
        lab_shift: None,
        pretrained: None,
        context_drop: 0.0,
        highlight_clip: 0.0,
    };
    let out = dir.join("run");
    let source = data::TrainSource::Folder(root.clone());
    let log = train::train(Arch::Edge, &recipe, &source, &out, Device::Cpu, "test")
        .expect("training runs");
    assert_eq!(log.epochs.len(), 2);
    assert!(log.n_val > 0 && log.n_train > 0);
    assert!(log.epochs.iter().all(|e| e.train_loss.is_finite()));

    let (_vs, graph) = train::load(Arch::Edge, &out.join("best.ot")).expect("weights reload");
    let onnx = dir.join("m/edge-test.onnx");
    let info = export::CardInfo {
        name: "edge-test".into(),
        arch: "edge".into(),
        training_command: "test".into(),
        unidentified_threshold: 0.5,
    };
    export::write_float_model(&graph, &onnx, &info).expect("export");
    let classifier =
        Classifier::load(&ModelSource::File(onnx.clone())).expect("device loads the export");

    // Same JPEG through the device path and through tch: same probabilities.
    let jpeg = samples().join("MONOCYTE/_0_5020.jpeg");
    let frame = Frame::open(&jpeg).unwrap();
    let device = classifier.classify_frame(&frame).unwrap();
    let inputs = data::load_inputs(
        &[data::Sample {
            path: jpeg,
            split: "TEST".into(),
            class: leukoscope_host::data::Class::Monocyte,
            file: "x".into(),
        }],
        1,
    );
    let (x, _) = inputs.tensors();
    let logits = tch::no_grad(|| graph.forward_t(&data::normalize_batch(&x), false));
    let host: Vec<f32> = Vec::try_from(logits.softmax(-1, tch::Kind::Float).view([-1])).unwrap();
    for (h, d) in host.iter().zip(&device.probs) {
        assert!(
            (h - d).abs() < 1e-4,
            "host {host:?} vs device {:?}",
            device.probs
        );
    }

    // A second member: another --init-seed holds out the same smears but learns other weights; the two join
    // into one ensemble that the device loads and whose probabilities are those of the members' mean logits.
    let other = train::Recipe {
        init_seed: Some(4),
        ..recipe
    };
    let out2 = dir.join("run2");
    let log2 = train::train(Arch::Edge, &other, &source, &out2, Device::Cpu, "test")
        .expect("the second member trains");
    assert_eq!(
        log2.val_smears, log.val_smears,
        "one split for both members"
    );
    let (_vs2, graph2) = train::load(Arch::Edge, &out2.join("best.ot")).expect("weights reload");
    let onnx2 = dir.join("m/edge-test-2.onnx");
    export::write_float_model(&graph2, &onnx2, &info).expect("export");
    let logits2 = tch::no_grad(|| graph2.forward_t(&data::normalize_batch(&x), false));
    assert!(
        !logits2.allclose(&logits, 1e-5, 1e-5, false),
        "another init seed, other weights"
    );
    let joined = dir.join("m/edge-test-x2.onnx");
    let card = export::write_ensemble(&[onnx.clone(), onnx2], &joined).expect("the members join");
    assert_eq!(card.arch, "edgex2");
    let ensemble = Classifier::load(&ModelSource::File(joined)).expect("device loads the ensemble");
    let got = ensemble.classify_frame(&frame).unwrap().probs;
    let mean = ((logits + logits2) / 2.0).softmax(-1, tch::Kind::Float);
    let want: Vec<f32> = Vec::try_from(mean.view([-1])).unwrap();
    for (w, g) in want.iter().zip(&got) {
        assert!(
            (w - g).abs() < 1e-4,
            "ensemble {got:?} vs the members' mean {want:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pack_holds_the_same_split_and_nearly_the_same_inputs_and_trains() {
    let dir = std::env::temp_dir().join(format!("leuko-pack-e2e-{}", std::process::id()));
    let root = tiny_root(&dir);
    let path = dir.join("train.pack");
    let stats = pack::write(&root, &path, 90, 2).expect("packing");
    assert_eq!(stats.images, 12);
    assert!(stats.skipped.is_empty());
    assert!(
        stats.mean_abs_error > 0.0 && stats.mean_abs_error < 2.5,
        "JPEG 90 costs about a level: {stats:?}"
    );

    let folder = data::list(&root, "TRAIN").unwrap();
    let folder_smears = data::source_smears(&root).unwrap();
    let pk = pack::read(&path).unwrap();
    let samples = pk.samples();
    assert_eq!(samples.len(), folder.len());
    for (a, b) in samples.iter().zip(&folder) {
        assert_eq!((a.class, &a.file), (b.class, &b.file));
    }
    let split = |s: &[data::Sample], m: &_| data::grouped_split(s, m, 0.34, 5);
    assert_eq!(
        split(&samples, &pk.smears()),
        split(&folder, &folder_smears),
        "the far side holds out the same smears"
    );

    let exact = data::load_inputs(&folder, 2);
    let packed = pk.load_inputs(&samples, 2);
    assert_eq!(packed.labels, exact.labels);
    let mean_err = packed
        .pixels
        .iter()
        .zip(&exact.pixels)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / exact.pixels.len() as f64;
    assert!((mean_err - stats.mean_abs_error).abs() < 1e-9);

    let recipe = train::Recipe {
        arch: "edge16".into(),
        epochs: 1,
        batch: 4,
        lr: 1e-3,
        weight_decay: 0.0,
        cosine: true,
        augment: true,
        label_smoothing: 0.0,
        val_fraction: 0.34,
        seed: 5,
        init_seed: None,
        limit_per_class: None,
        shift: 0,
        mixup: 0.0,
        select_auc: false,
        bn_momentum: None,
        fold: None,
        max_seconds: None,
        lab_shift: None,
        pretrained: None,
        context_drop: 0.0,
        highlight_clip: 0.0,
    };
    let log = train::train(
        Arch::Edge16,
        &recipe,
        &data::TrainSource::Pack(path.clone()),
        &dir.join("run"),
        Device::Cpu,
        "test",
    )
    .expect("training from a pack runs");
    assert_eq!(log.n_train + log.n_val, 12);

    // Nothing held out: every image trains, the last epoch is kept, and the log (NaN validation figures,
    // written as null) reads back.
    let all = train::Recipe {
        val_fraction: 0.0,
        epochs: 2,
        ..recipe
    };
    let out = dir.join("run-all");
    let log = train::train(
        Arch::Edge16,
        &all,
        &data::TrainSource::Pack(path),
        &out,
        Device::Cpu,
        "test",
    )
    .expect("training on every smear runs");
    assert_eq!((log.n_train, log.n_val, log.best_epoch), (12, 0, 2));
    let text = std::fs::read_to_string(out.join("train.json")).unwrap();
    let back: train::RunLog = serde_json::from_str(&text).expect("the log reads back");
    assert!(back
        .epochs
        .iter()
        .all(|e| e.val_acc.is_nan() && e.train_loss.is_finite()));
    assert!(out.join("best.ot").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_and_device_make_the_same_tensor_from_a_jpeg() {
    for class in CLASSES {
        let dir = samples().join(class.name());
        let jpeg = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let device =
            preprocess::normalize(&preprocess::frame_input(&Frame::open(&jpeg).unwrap()).0);
        let inputs = data::load_inputs(
            &[data::Sample {
                path: jpeg.clone(),
                split: "TEST".into(),
                class,
                file: "x".into(),
            }],
            1,
        );
        let (x, _) = inputs.tensors();
        let host = data::normalize_batch(&x);
        assert_eq!(
            host.size(),
            vec![1, 3, preprocess::INPUT as i64, preprocess::INPUT as i64]
        );
        let host: Vec<f32> = Vec::try_from(host.contiguous().view([-1])).unwrap();
        let max = host
            .iter()
            .zip(&device)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max < 1e-6,
            "{}: host and device tensors differ by {max}",
            jpeg.display()
        );
    }
}

#[test]
fn reproduce_writes_the_report_tables_as_json() {
    let dir = std::env::temp_dir().join(format!("leuko-repro-{}", std::process::id()));
    let root = tiny_root(&dir);
    let mut recipe = leukoscope_host::reproduce::report_recipe(Arch::Edge, 1, 5);
    recipe.batch = 4;
    recipe.val_fraction = 0.34;
    let out = dir.join("results");
    let (report, log) = leukoscope_host::reproduce::run_one(
        Arch::Edge,
        &recipe,
        "edge-smoke",
        &root,
        &dir.join("runs"),
        &out,
        Device::Cpu,
        "test",
    )
    .expect("reproduce runs");
    assert_eq!(report.n, 12);
    assert!(!log.stopped_by_budget);
    assert_eq!(log.images_seen(), log.n_train);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("edge-smoke.json")).unwrap())
            .unwrap();
    assert_eq!(v["arch"], "edge");
    assert_eq!(v["split"], "TEST");
    for key in ["accuracy", "auc", "loss"] {
        assert!(v["average"][key].is_number(), "average.{key}");
    }
    for class in CLASSES {
        for key in ["auc", "accuracy", "sensitivity", "specificity", "precision"] {
            assert!(
                v["per_class"][class.name()][key].is_number()
                    || v["per_class"][class.name()][key].is_null()
            );
        }
    }
    assert!(out.join("edge-smoke.md").exists());

    // A budget that is spent at once: one step, then validation, the kept checkpoint on the whole TEST
    // split (the class limit shrinks TRAIN only), and the tables say what the model saw.
    recipe.epochs = 5;
    recipe.max_seconds = Some(0.0);
    recipe.limit_per_class = Some(2);
    let (report, log) = leukoscope_host::reproduce::run_one(
        Arch::Edge,
        &recipe,
        "edge-budget",
        &root,
        &dir.join("runs"),
        &out,
        Device::Cpu,
        "test",
    )
    .expect("a budgeted run");
    assert!(log.stopped_by_budget);
    assert_eq!(log.epochs.len(), 1);
    assert_eq!(log.images_seen(), recipe.batch.min(log.n_train));
    assert_eq!(report.n, 12, "TEST is evaluated whole");
    let md = std::fs::read_to_string(out.join("edge-budget.md")).unwrap();
    assert!(
        md.contains("CPU budget") && md.contains("stopped by the budget"),
        "{md}"
    );
    let table = leukoscope_host::reproduce::comparison_table(&[(
        "edge-budget".into(),
        Arch::Edge,
        report,
        log,
    )]);
    assert!(table.contains("(budget)"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_int8_and_compare_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("leuko-e2e-int8-{}", std::process::id()));
    let root = tiny_root(&dir);
    let bin = env!("CARGO_BIN_EXE_leukoscope-train");
    let float = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/edge.onnx");
    let out = dir.join("m/edge-int8-qop.onnx");
    let run = std::process::Command::new(bin)
        .args(["export", "--int8", "--format", "qop", "--calib-images", "8"])
        .args(["--val-fraction", "0.34", "--seed", "3", "--onnx"])
        .arg(&float)
        .arg("--data")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs leukoscope-train");
    assert!(
        run.status.success(),
        "export --int8 failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let card = export::read_card(&leukoscope::model::card_path(&out)).expect("card");
    assert_eq!(card.format, "int8-qop");
    assert_eq!(card.quantization["calibration_images"], 8);
    assert_eq!(card.quantization["calibrator"], "percentile-99.99");
    Classifier::load(&ModelSource::File(out.clone())).expect("the device loads the int8 model");
    assert!(
        std::fs::metadata(&out).unwrap().len() * 10 < std::fs::metadata(&float).unwrap().len() * 3
    );

    // Asking for more calibration images than the training side holds is an error, not a silent shortfall.
    let short = std::process::Command::new(bin)
        .args([
            "export",
            "--int8",
            "--calib-images",
            "500",
            "--val-fraction",
            "0.34",
            "--seed",
            "3",
        ])
        .arg("--onnx")
        .arg(&float)
        .arg("--data")
        .arg(&root)
        .arg("--out")
        .arg(dir.join("m/short.onnx"))
        .output()
        .expect("runs leukoscope-train");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("calibration images"));

    let json = dir.join("compare.json");
    let cmp = std::process::Command::new(bin)
        .args(["compare", "--split", "TEST", "--json"])
        .arg(&json)
        .arg("--data")
        .arg(&root)
        .arg(&float)
        .arg(&out)
        .output()
        .expect("runs compare");
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(rows[0]["top1_agreement"], 1.0);
    assert_eq!(rows[1]["format"], "int8-qop");
    assert_eq!(rows[1]["images"], 12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// README's eval step, run twice into the same folder: it replaces its own outputs, names the model file in
/// its tables and figures, and updates only the copy of the model it was given.
#[test]
fn eval_writes_its_outputs_and_can_run_twice() {
    let dir = std::env::temp_dir().join(format!("leuko-e2e-eval-{}", std::process::id()));
    let root = tiny_root(&dir);
    let bin = env!("CARGO_BIN_EXE_leukoscope-train");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = dir.join("m/edge.onnx");
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::copy(shipped.join("edge.onnx"), &model).unwrap();
    std::fs::copy(shipped.join("edge.json"), dir.join("m/edge.json")).unwrap();
    let out = dir.join("results");
    for _ in 0..2 {
        let run = std::process::Command::new(bin)
            .args(["eval", "--split", "test", "--update-card", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("runs leukoscope-train eval");
        assert!(
            run.status.success(),
            "eval failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(stdout.contains("## edge.onnx (edge) on TEST"), "{stdout}");
    }
    for name in [
        "edge-test.md",
        "edge-test.json",
        "edge-test-roc.png",
        "edge-test-confusion.png",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let png = image::open(out.join("edge-test-roc.png"))
        .expect("a PNG")
        .to_rgb8();
    assert!(png.width() >= 500, "{}", png.width());
    let card = export::read_card(&dir.join("m/edge.json")).expect("card");
    assert_eq!(card.metrics["TEST"]["n"], 12);
    assert_eq!(card.metrics["TEST"]["model"], "edge.onnx");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `stain-norm` writes a copy of the model whose card brings inputs to the training images' colours: the same
/// ONNX bytes, the reference measured, stale feature statistics left out; the device applies it; a model that
/// already has one is refused.
#[test]
fn stain_norm_writes_a_model_the_device_applies() {
    let dir = std::env::temp_dir().join(format!("leuko-e2e-stain-{}", std::process::id()));
    let root = tiny_root(&dir);
    let bin = env!("CARGO_BIN_EXE_leukoscope-train");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/edge16-int8-weights.onnx");
    let stain_norm = |model: &Path, out: &Path| {
        std::process::Command::new(bin)
            .args(["stain-norm", "--method", "reinhard", "--split", "TRAIN"])
            .args(["--val-fraction", "0.34", "--seed", "3", "--model"])
            .arg(model)
            .arg("--data")
            .arg(&root)
            .arg("--out")
            .arg(out)
            .output()
            .expect("runs leukoscope-train stain-norm")
    };
    let out = dir.join("m/edge16-reinhard.onnx");
    let run = stain_norm(&shipped, &out);
    assert!(
        run.status.success(),
        "stain-norm failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&shipped).unwrap()
    );
    let base = export::read_card(&leukoscope::model::card_path(&shipped)).unwrap();
    let card = export::read_card(&leukoscope::model::card_path(&out)).unwrap();
    assert_eq!(card.name, "edge16-reinhard");
    assert_eq!(card.sha256, base.sha256);
    assert!(base.feature_stats.is_some() && card.feature_stats.is_none());
    let Some(leukoscope::stain::StainNorm::Reinhard { mean, std }) = &card.stain_norm else {
        panic!("no Reinhard reference: {:?}", card.stain_norm)
    };
    assert!(mean.iter().chain(std).all(|v| v.is_finite()) && std.iter().all(|&s| s > 0.0));
    // The device applies it: the same JPEG typed with other probabilities than by the base model.
    let jpeg = std::fs::read_dir(samples().join("NEUTROPHIL"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let frame = Frame::open(&jpeg).unwrap();
    let plain = Classifier::load(&ModelSource::File(shipped.clone())).unwrap();
    let stained = Classifier::load(&ModelSource::File(out.clone())).unwrap();
    assert_ne!(
        plain.classify_frame(&frame).unwrap().probs,
        stained.classify_frame(&frame).unwrap().probs
    );
    let again = stain_norm(&out, &dir.join("m/twice.onnx"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already brings inputs"));
    assert!(!dir.join("m/twice.onnx").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
