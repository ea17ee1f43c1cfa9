//! Runs one model N times on a fixed input: the workload whose aarch64 instruction count
//! `scripts/model_table.sh` measures under qemu (count at N and at 0; the difference / N is one inference).
//!
//! ```text
//! cargo run --release -p leukoscope --example infer -- MODEL.onnx N
//! ```
//! The card must sit beside the model (`MODEL.json`); the model is verified and optimised as the device does.

use std::path::PathBuf;
use std::process::ExitCode;

use leukoscope::preprocess::INPUT_SHAPE;
use leukoscope::{Classifier, ModelSource};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: infer MODEL.onnx N");
        return ExitCode::from(2);
    };
    let classifier = match Classifier::load(&ModelSource::File(PathBuf::from(model))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("infer: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A smooth deterministic pattern in the normalised range: no file reading inside the counted region.
    let len: usize = INPUT_SHAPE.iter().product();
    let side = INPUT_SHAPE[3];
    let chw: Vec<f32> = (0..len)
        .map(|i| (((i % side) as f32 * 0.05) + (i / (side * side)) as f32).sin() * 2.0)
        .collect();
    let mut checksum = 0f32;
    for _ in 0..n {
        match classifier.logits(&chw) {
            Ok(l) => checksum += l.iter().sum::<f32>(),
            Err(e) => {
                eprintln!("infer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{model}: {n} inferences, logit checksum {checksum:.4}");
    ExitCode::SUCCESS
}
