//! `leukoscope-train bench-train`: training throughput (images per second) of the nets on the CPU with tch,
//! the Rust half of `scripts/bench_train.sh` (the other half is PyTorch eager, `scripts/bench_train.py`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leukoscope_host::bench::{self, Config};
use leukoscope_host::nets::Arch;

use super::at_least_one;

/// Time training steps (gather, normalise, forward, cross-entropy, backward, Adam) on random inputs.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Nets to time, comma-separated, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "edge,resnet101v2,xception,inception-resnet-v2"
    )]
    archs: Vec<Arch>,
    /// Images per step.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    batch: usize,
    /// Square input side in pixels.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i64).range(1..))]
    size: i64,
    /// Timed steps per net; the rate is the batch over the median step time.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    steps: usize,
    /// Untimed warm-up steps per net.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// libtorch intra-op threads (inter-op threads are set to 1, as the PyTorch side does).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..))]
    threads: i32,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Seed for weights and inputs.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Also write the rates as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Inter-op threads can only be set before libtorch starts parallel work, so first.
    tch::set_num_interop_threads(1);
    tch::set_num_threads(a.threads);
    let cfg = Config {
        batch: a.batch as i64,
        size: a.size,
        steps: a.steps,
        warmup: a.warmup,
        lr: a.lr,
        seed: a.seed,
    };
    eprintln!(
        "tch: {} intra-op / {} inter-op threads, batch {}, {} px, {} warm-up + {} timed steps",
        tch::get_num_threads(),
        tch::get_num_interop_threads(),
        cfg.batch,
        cfg.size,
        cfg.warmup,
        cfg.steps
    );
    let mut nets = Vec::new();
    for &arch in &a.archs {
        let r = bench::train_rate(arch, &cfg)?;
        println!(
            "{}: {} params, {:.2} img/s (median {:.3} s/step of {:?}; best step {:.2} img/s)",
            r.arch, r.params, r.img_per_s, r.median_step_s, r.step_seconds, r.best_img_per_s
        );
        nets.push(r);
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "backend": "tch",
            "threads": tch::get_num_threads(),
            "interop_threads": tch::get_num_interop_threads(),
            "batch": cfg.batch,
            "size": cfg.size,
            "steps": cfg.steps,
            "warmup": cfg.warmup,
            "lr": cfg.lr,
            "timing": "median per-step wall time",
            "nets": nets,
        });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
