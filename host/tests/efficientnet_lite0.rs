//! EfficientNet-Lite0: TensorFlow's parameter count, tch vs tract after ONNX export, and the ImageNet weights
//! that `scripts/setup.sh` converts (`$LEUKOSCOPE_EFFNET_LITE0`): they load into the net by name and give the
//! logits of the converter's independent numpy forward pass.
//!
//! Tests that need the converted weights skip (with a line on stderr) when `LEUKOSCOPE_EFFNET_LITE0` is unset
//! or names a missing file, except [`setup_sh_converts_weights_that_match_the_reference`]: it runs whenever
//! the variable is set (as `scripts/test.sh`, and so CI, always sets it) or `CI` is, and then fails if the
//! file is missing.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use leukoscope_host::nets::efficientnet_lite0::{self, BACKBONE_TRAINABLE, FEATURES};
use leukoscope_host::nets::{trainable_params, Arch, Graph};
use leukoscope_host::onnx::{export, ExportOptions};
use leukoscope_host::pretrained::{self, Head, Normalisation, Options};
use tch::{nn, Device, Kind, Tensor};

const CLASSES: i64 = 4;

fn build(classes: i64) -> (nn::VarStore, Graph) {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = efficientnet_lite0::efficientnet_lite0(&vs.root(), classes, 0.01);
    (vs, g)
}

/// The converted weights, or `None` (after saying so) when the environment names none or the file is missing
/// ([`setup_sh_converts_weights_that_match_the_reference`] fails on a missing file instead).
fn weights(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LEUKOSCOPE_EFFNET_LITE0").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        Some(p) => {
            eprintln!(
                "{test}: skipped, {} is missing (run scripts/setup.sh)",
                p.display()
            );
            None
        }
        None => {
            eprintln!(
                "{test}: skipped, LEUKOSCOPE_EFFNET_LITE0 is unset (source the output of scripts/setup.sh)"
            );
            None
        }
    }
}

fn check_file(weights: &Path) -> PathBuf {
    let name = weights.file_name().unwrap().to_string_lossy();
    let stem = name
        .strip_suffix(".safetensors")
        .expect("a .safetensors file");
    weights.with_file_name(format!("{stem}.check.safetensors"))
}

fn read(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn max_abs(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

/// Backbone elements of the converted file (every tensor but the ImageNet head and the normalisation):
/// trainable 3,371,008 plus the batch norms' running means and variances, 2 × 21,008.
const BACKBONE_ELEMENTS: i64 = BACKBONE_TRAINABLE + 2 * 21_008;

#[test]
fn params_match_tensorflow() {
    let (vs, _g) = build(CLASSES);
    let head = FEATURES * CLASSES + CLASSES;
    assert_eq!(trainable_params(&vs), BACKBONE_TRAINABLE + head);
    assert_eq!(trainable_params(&vs), 3_376_132);
    let all: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    assert_eq!(all, BACKBONE_ELEMENTS + head);
    // 49 conv/BN layers: 1 stem + 16 blocks × (2 or 3) + 1 head, each a conv weight and four BN tensors.
    assert_eq!(vs.variables().len(), 49 * 5 + 2);
    let (vs, _g) = build(1000);
    assert_eq!(
        trainable_params(&vs),
        4_652_008,
        "TensorFlow's Lite0 with its ImageNet head"
    );
}

#[test]
fn cli_name_and_sizes() {
    let arch = Arch::EfficientnetLite0;
    assert_eq!(arch.name(), "efficientnet-lite0");
    assert_eq!(Arch::from_str("efficientnet-lite0", false), Ok(arch));
    assert_eq!(arch.default_input(), 128);
    assert_eq!(arch.min_input(), 32);
    let vs = nn::VarStore::new(Device::Cpu);
    let g = arch.build(&vs.root(), CLASSES);
    for side in [32, 128] {
        let x = Tensor::rand([2, 3, side, side], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| g.forward_t(&x, true));
        assert_eq!(y.size(), vec![2, CLASSES], "{side} px, training mode");
    }
}

/// Random batch-norm statistics and affine parameters, so that the parity check exercises them.
fn perturb_batch_norms(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            let r = Tensor::rand(v.size(), (Kind::Float, Device::Cpu));
            if name.ends_with("running_var") {
                v.copy_(&(r * 0.5 + 0.75));
            } else if name.ends_with("running_mean") || name.ends_with("bn.bias") {
                v.copy_(&((r - 0.5) * 0.2));
            } else if name.ends_with("bn.weight") {
                v.copy_(&(r * 0.5 + 0.75));
            }
        }
    });
}

/// With the ImageNet backbone when it is there (realistic activations), else random batch norms.
#[test]
fn exports_to_onnx_that_tract_runs_to_the_same_logits() {
    let (vs, g) = build(CLASSES);
    perturb_batch_norms(&vs);
    if let Some(path) =
        weights("exports_to_onnx_that_tract_runs_to_the_same_logits (ImageNet backbone)")
    {
        pretrained::load(&vs, &g, &path).expect("loads");
    }
    let side = 128;
    let x = Tensor::randn([1, 3, side, side], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| g.forward_t(&x, false));
    let bytes = export(&g, [side, side], &ExportOptions::default()).expect("exports");
    let t = leukoscope_host::onnx::run_tract(&bytes, &x).expect("tract runs the export");
    let t = Tensor::from_slice(&t).view([1, CLASSES]);
    let diff = max_abs_diff(&y, &t);
    eprintln!("tch {y:?} vs tract: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4 * max_abs(&y).max(1.0), "max abs diff {diff}");
}

/// The weights load by name into the 1000-class net and, on the converter's input, give the converter's
/// logits and pooled features (computed by an independent float64 numpy forward of the package's model).
/// In CI this always runs: scripts/test.sh sources scripts/setup.sh, which converts the weights.
#[test]
fn setup_sh_converts_weights_that_match_the_reference() {
    let path = match std::env::var_os("LEUKOSCOPE_EFFNET_LITE0") {
        Some(p) => PathBuf::from(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI without LEUKOSCOPE_EFFNET_LITE0: scripts/setup.sh prints it")
        }
        None => {
            eprintln!(
                "skipped: LEUKOSCOPE_EFFNET_LITE0 is unset (source the output of scripts/setup.sh)"
            );
            return;
        }
    };
    assert!(
        path.is_file(),
        "{}: missing; scripts/setup.sh converts it",
        path.display()
    );
    let check = read(&check_file(&path));
    let (vs, g) = build(1000);
    let opts = Options {
        head: Head::Copy,
        normalisation: Normalisation::File,
    };
    let loaded = pretrained::load_with(&vs, &g, &path, opts).expect("the converted weights load");
    assert_eq!(loaded.tensors, vs.variables().len());
    assert_eq!(loaded.elements, BACKBONE_ELEMENTS + 1_281_000);
    assert!(
        loaded.fresh.is_empty() && loaded.folded.is_none(),
        "{loaded}"
    );
    // The file holds exactly these tensors and the two normalisation vectors.
    assert_eq!(read(&path).len(), loaded.tensors + 2);

    let x = &check["input"];
    assert_eq!(x.size(), vec![1, 3, 224, 224]);
    let logits = tch::no_grad(|| g.forward_t(x, false));
    let want = &check["logits"];
    let diff = max_abs_diff(&logits, want);
    eprintln!(
        "ImageNet logits vs the numpy reference: max abs diff {diff:.2e} (largest logit {:.2})",
        max_abs(want)
    );
    assert!(diff <= 1e-3 * max_abs(want).max(1.0), "max abs diff {diff}");
    assert_eq!(
        logits.argmax(-1, false).int64_value(&[0]),
        want.argmax(-1, false).int64_value(&[0])
    );
    let pool = g.nodes.iter().position(|n| n.name == "pool").unwrap();
    let features = tch::no_grad(|| g.truncated(pool).forward_t(x, false));
    let diff = max_abs_diff(&features, &check["features"]);
    assert!(
        diff <= 1e-4 * max_abs(&check["features"]).max(1.0),
        "features differ by {diff}"
    );
}

/// Fine-tuning's load: the backbone is ImageNet's (not the random initialisation), the 4-class head stays
/// as initialised, and the folded normalisation makes pipeline-normalised pixels give (nearly) the ImageNet
/// features of the same pixels normalised TensorFlow Lite's way; the fold is exact except for the stem's
/// padded last row and column.
#[test]
fn fine_tuning_load_keeps_a_fresh_head_and_folds_the_normalisation() {
    let Some(path) = weights("fine_tuning_load_keeps_a_fresh_head_and_folds_the_normalisation")
    else {
        return;
    };
    let check = read(&check_file(&path));
    let u = check["input"].shallow_clone();
    // The same pixels in the pipeline's normalisation: v = u · std_l + mean_l, z = (v − MEAN) / STD.
    let v = &u * (128.0 / 255.0) + 127.0 / 255.0;
    let z = (v - Tensor::from_slice(&leukoscope::preprocess::MEAN).view([1, 3, 1, 1]))
        / Tensor::from_slice(&leukoscope::preprocess::STD).view([1, 3, 1, 1]);
    let pooled = |g: Graph| {
        let pool = g.nodes.iter().position(|n| n.name == "pool").unwrap();
        tch::no_grad(|| g.truncated(pool).forward_t(&z, false))
    };
    // What a randomly initialised net gives.
    let random = pooled(build(CLASSES).1);

    let (vs, g) = build(CLASSES);
    let head_before = vs.variables()["fc.weight"].copy();
    let loaded = pretrained::load(&vs, &g, &path).expect("loads for fine-tuning");
    eprintln!("{loaded}");
    assert_eq!(
        loaded.fresh,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    assert_eq!(loaded.elements, BACKBONE_ELEMENTS);
    assert!(loaded.folded.is_some());
    assert_eq!(
        max_abs_diff(&vs.variables()["fc.weight"], &head_before),
        0.0,
        "the head keeps its initialisation"
    );
    let features = pooled(g);
    let want = &check["features"];
    let from_random = max_abs_diff(&random, want);
    let diff = max_abs_diff(&features, want);
    let rel = (&features - want).norm().double_value(&[]) / want.norm().double_value(&[]);
    eprintln!(
        "pooled features on pipeline inputs vs ImageNet's: max abs diff {diff:.3} (relative L2 {rel:.4}); \
         random init {from_random:.3}"
    );
    assert!(
        diff < from_random / 10.0,
        "loaded {diff} vs random {from_random}"
    );
    assert!(rel < 0.05, "relative L2 difference {rel}");
}

/// A file with a tensor missing is refused naming the file and the tensor; the net is left as it was.
#[test]
fn a_file_without_a_backbone_tensor_is_refused() {
    let Some(path) = weights("a_file_without_a_backbone_tensor_is_refused") else {
        return;
    };
    let mut ts = Tensor::read_safetensors(&path).unwrap();
    ts.retain(|(n, _)| n != "block7.depthwise.bn.running_var");
    let bad = std::env::temp_dir().join(format!(
        "leukoscope-effnet-missing-{}.safetensors",
        std::process::id()
    ));
    Tensor::write_safetensors(&ts, &bad).unwrap();
    let (vs, g) = build(CLASSES);
    let err = pretrained::load(&vs, &g, &bad).unwrap_err().to_string();
    std::fs::remove_file(&bad).ok();
    assert!(err.contains("block7.depthwise.bn.running_var"), "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");

    // Weights for another net: the edge net's variables are not in the file.
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Arch::Edge.build(&vs.root(), CLASSES);
    let err = pretrained::load(&vs, &g, &path).unwrap_err().to_string();
    assert!(err.contains("no tensor `stage"), "{err}");
}

/// `efficientnet-lite0-grey`: the same variables as the colour net, so the ImageNet weights load unchanged
/// (nothing folded: the net standardises each image's luminance itself), tract runs its export to the same
/// logits, and a brighter or dimmer lamp leaves the logits where they were.
#[test]
fn the_grey_variant_keeps_the_imagenet_weights_and_ignores_the_lamp() {
    let arch = Arch::EfficientnetLite0Grey;
    assert_eq!(Arch::from_str("efficientnet-lite0-grey", false), Ok(arch));
    assert_eq!(arch.default_input(), 128);
    let vs = nn::VarStore::new(Device::Cpu);
    let g = arch.build(&vs.root(), CLASSES);
    assert_eq!(trainable_params(&vs), 3_376_132);
    perturb_batch_norms(&vs);
    let mut colour_net = None;
    if let Some(path) = weights("the_grey_variant_keeps_the_imagenet_weights_and_ignores_the_lamp")
    {
        let loaded = pretrained::load(&vs, &g, &path).expect("loads for fine-tuning");
        eprintln!("{loaded}");
        assert_eq!(loaded.elements, BACKBONE_ELEMENTS);
        assert_eq!(loaded.folded, None, "{loaded}");
        assert_eq!(loaded.standardised.as_deref(), Some("colour"), "{loaded}");
        // The colour net folds the same file's normalisation into its stem instead.
        let (vs_rgb, g_rgb) = build(CLASSES);
        let rgb = pretrained::load(&vs_rgb, &g_rgb, &path).expect("loads");
        assert!(rgb.folded.is_some() && rgb.standardised.is_none(), "{rgb}");
        colour_net = Some((vs_rgb, g_rgb));
    }
    let normalised = |v: &Tensor| {
        let t = |a: [f32; 3]| Tensor::from_slice(&a).view([1, 3, 1, 1]);
        (v - t(leukoscope::preprocess::MEAN)) / t(leukoscope::preprocess::STD)
    };
    let v = Tensor::rand([1, 3, 128, 128], (Kind::Float, Device::Cpu)) * 0.6 + 0.1;
    let x = normalised(&v);
    let y = tch::no_grad(|| g.forward_t(&x, false));
    let bytes = export(&g, [128, 128], &ExportOptions::default()).expect("exports");
    let t = leukoscope_host::onnx::run_tract(&bytes, &x).expect("tract runs the export");
    let t = Tensor::from_slice(&t).view([1, CLASSES]);
    let diff = max_abs_diff(&y, &t);
    assert!(diff <= 1e-4 * max_abs(&y).max(1.0), "tch vs tract: {diff}");
    let dim = tch::no_grad(|| g.forward_t(&normalised(&(&v * 0.8)), false));
    let moved = max_abs_diff(&y, &dim);
    assert!(
        moved <= 1e-3 * max_abs(&y).max(1.0),
        "a dimmer lamp moved the logits by {moved}"
    );
    // The colour net with the same ImageNet weights sees the lamp (a randomly initialised one saturates its
    // ReLU6s and sees nothing, so only the loaded weights make this a check).
    let Some((_vs_rgb, plain)) = colour_net else {
        return;
    };
    let a = tch::no_grad(|| plain.forward_t(&x, false));
    let b = tch::no_grad(|| plain.forward_t(&normalised(&(&v * 0.8)), false));
    let seen = max_abs_diff(&a, &b);
    assert!(
        seen > 10.0 * moved && seen > 1e-3 * max_abs(&a),
        "the colour net's logits moved by {seen} (grey: {moved}), of {}",
        max_abs(&a)
    );
}
