//! The report's three big nets (ResNet101V2, Xception, Inception-ResNet-v2): their trainable-parameter counts
//! match Keras Applications', they run on CPU at small inputs, and they export to ONNX that tract loads and
//! runs to the same logits.
//!
//! Keras figures (`include_top=False`, i.e. without the 1000-class Dense of 2,049,000 / 2,049,000 /
//! 1,537,000 parameters; Keras' totals with the top are 44,675,560 / 22,910,480 / 55,873,736):
//!
//! | net                 | headless total | non-trainable (BN moving mean + var) | headless trainable |
//! |---------------------|---------------:|-------------------------------------:|-------------------:|
//! | ResNet101V2         |     42,626,560 |                  2 × 48,832 = 97,664 |         42,528,896 |
//! | Xception            |     20,861,480 |                  2 × 27,264 = 54,528 |         20,806,952 |
//! | Inception-ResNet-v2 |     54,336,736 |                  2 × 30,272 = 60,544 |         54,276,192 |
//!
//! The BN channel sums (48,832, 27,264, 30,272) add up every batch norm's width in the Keras models; Keras
//! counts each BN's moving mean and variance as non-trainable and its gamma/beta as trainable, exactly like
//! tch's `VarStore::trainable_variables` (running statistics are `*_no_train`). Inception-ResNet-v2's
//! `BatchNormalization(scale=False)` has no gamma, so its trainable BN share is only beta (30,272); our net
//! builds those batch norms without a weight, so the counts agree exactly there too.

use clap::ValueEnum;
use leukoscope_host::nets::{trainable_params, Arch, Graph};
use leukoscope_host::onnx::{export, ExportOptions};
use tch::{nn, Device, Kind, Tensor};

/// Classes of the report's head.
const CLASSES: i64 = 4;

/// Keras' headless trainable-parameter count for `arch` (see the table above).
fn keras_headless_trainable(arch: Arch) -> i64 {
    match arch {
        Arch::Resnet101v2 => 42_626_560 - 2 * 48_832,
        Arch::Xception => 20_861_480 - 2 * 27_264,
        Arch::InceptionResnetV2 => 54_336_736 - 2 * 30_272,
        Arch::Edge
        | Arch::Edge16
        | Arch::Edge16Gn
        | Arch::Edge16In
        | Arch::Edge16Rh
        | Arch::Edge16Wp
        | Arch::Edge16Grey
        | Arch::Edge16Lc
        | Arch::EfficientnetLite0
        | Arch::EfficientnetLite0Grey => {
            unreachable!("not a Keras net")
        }
    }
}

/// Width of the features each net feeds its head.
fn features(arch: Arch) -> i64 {
    match arch {
        Arch::Resnet101v2 => 2048,
        Arch::Xception => 2048,
        Arch::InceptionResnetV2 => 1536,
        Arch::Edge
        | Arch::Edge16
        | Arch::Edge16Gn
        | Arch::Edge16In
        | Arch::Edge16Rh
        | Arch::Edge16Wp
        | Arch::Edge16Grey
        | Arch::Edge16Lc
        | Arch::EfficientnetLite0
        | Arch::EfficientnetLite0Grey => {
            unreachable!("not a Keras net")
        }
    }
}

fn build(arch: Arch) -> (nn::VarStore, Graph) {
    let vs = nn::VarStore::new(Device::Cpu);
    let g = arch.build(&vs.root(), CLASSES);
    (vs, g)
}

fn check_params(arch: Arch) {
    let (vs, _g) = build(arch);
    let head = features(arch) * CLASSES + CLASSES;
    let headless = trainable_params(&vs) - head;
    let keras = keras_headless_trainable(arch);
    let rel = (headless - keras).abs() as f64 / keras as f64;
    assert!(
        rel <= 0.005,
        "{}: {headless} trainable headless parameters, Keras {keras}",
        arch.name()
    );
    assert_eq!(headless, keras, "{}: not exactly Keras' count", arch.name());
}

#[test]
fn resnet101v2_params_match_keras() {
    check_params(Arch::Resnet101v2);
}

#[test]
fn xception_params_match_keras() {
    check_params(Arch::Xception);
}

#[test]
fn inception_resnet_v2_params_match_keras() {
    check_params(Arch::InceptionResnetV2);
}

/// Runs an ONNX model with tract on `x` (NCHW) and returns the flat output.
fn run_tract(bytes: &[u8], x: &Tensor) -> Vec<f32> {
    leukoscope_host::onnx::run_tract(bytes, x).expect("tract runs the export")
}

/// Batch 1 at `side`×`side`: the tch forward gives `[1, 4]`, and the ONNX export loads in tract and gives the
/// same logits.
fn check_forward_and_onnx(arch: Arch, side: i64) {
    let (_vs, g) = build(arch);
    let x = Tensor::rand([1, 3, side, side], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| g.forward_t(&x, false));
    assert_eq!(y.size(), vec![1, CLASSES], "{}", arch.name());
    let y = Vec::<f32>::try_from(y.view(-1)).unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{}: {y:?}", arch.name());

    let bytes = export(&g, [side, side], &ExportOptions::default()).expect("exports");
    let t = run_tract(&bytes, &x);
    assert_eq!(t.len(), y.len());
    let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = y
        .iter()
        .zip(&t)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        diff <= 1e-3 * scale,
        "{}: tch {y:?} vs tract {t:?}",
        arch.name()
    );
}

#[test]
fn resnet101v2_runs_and_exports() {
    check_forward_and_onnx(Arch::Resnet101v2, 64);
}

#[test]
fn xception_runs_and_exports() {
    check_forward_and_onnx(Arch::Xception, Arch::Xception.min_input());
}

#[test]
fn inception_resnet_v2_runs_and_exports() {
    check_forward_and_onnx(Arch::InceptionResnetV2, Arch::InceptionResnetV2.min_input());
}

#[test]
fn nets_run_at_the_pipeline_crop_size_in_training_mode() {
    // 128 px crops, batch 2 (batch norm needs more than one value per channel in training mode).
    for arch in [Arch::Resnet101v2, Arch::Xception, Arch::InceptionResnetV2] {
        let (_vs, g) = build(arch);
        let x = Tensor::rand([2, 3, 128, 128], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| g.forward_t(&x, true));
        assert_eq!(y.size(), vec![2, CLASSES], "{}", arch.name());
    }
}

#[test]
fn cli_names() {
    for (arch, name, side) in [
        (Arch::Resnet101v2, "resnet101v2", 224),
        (Arch::Xception, "xception", 299),
        (Arch::InceptionResnetV2, "inception-resnet-v2", 299),
    ] {
        assert_eq!(arch.name(), name);
        assert_eq!(Arch::from_str(name, false), Ok(arch));
        assert_eq!(arch.default_input(), side);
    }
}
