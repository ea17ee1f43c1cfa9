//! Where tract spends an inference: per-node wall time of an optimised model, summed over N runs, largest
//! first. The tool behind the "tract vs onnxruntime" notes in `models/README.md`.
//!
//! ```text
//! cargo run --release -p leukoscope --example profile_model -- MODEL.onnx [N]
//! ```
//! Any ONNX file with a `[1, 3, 128, 128]` float input works (no card needed: this is a diagnostic).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use leukoscope::preprocess::INPUT_SHAPE;
use tract_onnx::prelude::*;

fn run(path: &str, n: usize) -> TractResult<()> {
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact(INPUT_SHAPE).into())?
        .into_optimized()?;
    let plan = model.into_runnable()?;
    let len: usize = INPUT_SHAPE.iter().product();
    let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.05).sin() * 2.0).collect();
    let input = Tensor::from_shape(&INPUT_SHAPE, &x)?;
    let mut state = plan.spawn()?;
    let mut per_node: HashMap<usize, (String, Duration)> = HashMap::new();
    // One warm-up run, then N timed ones.
    state.run(tvec!(input.clone().into_tvalue()))?;
    let total = Instant::now();
    for _ in 0..n {
        state.run_plan_with_eval(
            tvec!(input.clone().into_tvalue()),
            |ctx, st, node, inputs| {
                let t = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                let e = per_node.entry(node.id).or_insert_with(|| {
                    (
                        format!("{} ({})", node.name, node.op().name()),
                        Duration::ZERO,
                    )
                });
                e.1 += t.elapsed();
                out
            },
        )?;
    }
    let total = total.elapsed().as_secs_f64() * 1e3 / n as f64;
    let mut rows: Vec<_> = per_node.into_values().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    // Written at once and errors ignored: piping into `head` is not a failure.
    let mut text = format!(
        "{path}: {total:.3} ms per inference over {n} runs ({} nodes)\n",
        rows.len()
    );
    for (name, d) in rows.iter().take(25) {
        let ms = d.as_secs_f64() * 1e3 / n as f64;
        text += &format!("{ms:8.3} ms {:5.1} %  {name}\n", ms / total * 100.0);
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: profile_model MODEL.onnx [N]");
        return ExitCode::from(2);
    };
    let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(50);
    match run(path, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profile_model: {path}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
