//! Runs one model N times on a fixed input: the workload whose aarch64 instruction count
//! `scripts/model_table.sh` measures under qemu (count at N and at 0; the difference / N is one inference).
//! Each inference starts from the `u8` model input, so the card's stain normalisation (when it has one) and
//! the normalisation are counted with the net, as the device runs them for every cell.
//!
//! ```text
//! cargo run --release -p leukoscope --example infer -- MODEL.onnx N
//! ```
//! The card must sit beside the model (`MODEL.json`); the model is verified and optimised as the device does.

use std::path::PathBuf;
use std::process::ExitCode;

use leukoscope::preprocess::INPUT;
use leukoscope::{Classifier, Frame, ModelSource};

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
    // A smooth deterministic pattern of a stained cell's colours: no file reading inside the counted region.
    let side = INPUT;
    let data: Vec<u8> = (0..side * side * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let v = ((p % side) as f32 * 0.05 + (p / side) as f32 * 0.03 + c as f32).sin();
            (150.0 + 80.0 * v) as u8
        })
        .collect();
    let input = Frame::new(side, side, data).expect("a square input");
    let mut checksum = 0f32;
    for _ in 0..n {
        match classifier.logits(&classifier.input_chw(&input)) {
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
