//! `leukoscope-train`: train, evaluate and export the Leukoscope classifiers.
//!
//! This file parses the command line and dispatches; each subcommand is a module of `cmd/` that calls the
//! `leukoscope_host` library.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser, Debug)]
#[command(
    name = "leukoscope-train",
    version,
    about = "Train, evaluate and export Leukoscope's white-cell classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Train(cmd::train::Args),
    Export(cmd::export::Args),
    Eval(cmd::eval::Args),
    Compare(cmd::compare::Args),
    FeatureStats(cmd::feature_stats::Args),
    StainNorm(cmd::stain_norm::Args),
    Ensemble(cmd::ensemble::Args),
    Reproduce(cmd::reproduce::Args),
    Cv(cmd::cv::Args),
    Pack(cmd::pack::Args),
    BenchTrain(cmd::bench_train::Args),
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let argv: Vec<String> = std::env::args().collect();
    match cli.command {
        Command::Train(a) => cmd::train::run(a, &argv),
        Command::Export(a) => cmd::export::run(a),
        Command::Eval(a) => cmd::eval::run(a, &argv),
        Command::Compare(a) => cmd::compare::run(a),
        Command::FeatureStats(a) => cmd::feature_stats::run(a),
        Command::StainNorm(a) => cmd::stain_norm::run(a),
        Command::Ensemble(a) => cmd::ensemble::run(a),
        Command::Reproduce(a) => cmd::reproduce::run(a, &argv),
        Command::Cv(a) => cmd::cv::run(a),
        Command::Pack(a) => cmd::pack::run(a),
        Command::BenchTrain(a) => cmd::bench_train::run(a),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("leukoscope-train").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `train --epochs 0` used to panic indexing an empty epoch log: now clap refuses it.
    #[test]
    fn bad_training_flags_are_refused_by_name() {
        let cases: &[(&[&str], &str)] = &[
            (&["train", "--epochs", "0"], "--epochs"),
            (&["train", "--batch", "0"], "--batch"),
            (&["train", "--folds", "1", "--fold", "0"], "--folds"),
            (&["train", "--val-fraction", "2"], "--val-fraction"),
            (&["train", "--val-fraction=-0.1"], "--val-fraction"),
            (&["train", "--shift=-1"], "--shift"),
            (&["train", "--device", "tpu"], "--device"),
            (&["bench-train", "--steps", "0"], "--steps"),
            (&["bench-train", "--archs", "edge,resnet50"], "--archs"),
            (&["bench-train", "--threads", "0"], "--threads"),
            (
                &["eval", "--model", "m.onnx", "--split", "VALIDATION"],
                "--split",
            ),
            (
                &[
                    "export",
                    "--onnx",
                    "m.onnx",
                    "--int8",
                    "--calib-images",
                    "0",
                    "--out",
                    "x",
                ],
                "--calib-images",
            ),
        ];
        for &(args, flag) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn flags_keep_their_spelling() {
        let Command::Train(_) = parse(&[
            "train",
            "--arch",
            "edge16",
            "--epochs",
            "10",
            "--batch",
            "64",
            "--lr",
            "2e-3",
            "--weight-decay",
            "0.05",
            "--label-smoothing",
            "0.1",
            "--shift",
            "12",
            "--mixup",
            "0.2",
            "--seed",
            "1",
            "--folds",
            "5",
            "--fold",
            "0",
            "--device",
            "cpu",
            "--out",
            "runs/x",
            "--pack",
            "p.pack",
            "--val-fraction",
            "0",
        ])
        .unwrap()
        .command
        else {
            panic!("train");
        };
        let Command::Eval(e) = parse(&[
            "eval",
            "--model",
            "m.onnx",
            "--split",
            "test_simple",
            "--data",
            "d",
            "--seed",
            "2",
            "--val-fraction",
            "0.3",
            "--out",
            "o",
            "--update-card",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("eval");
        };
        assert!(format!("{e:?}").contains("TestSimple"), "{e:?}");
        let accepted: &[&[&str]] = &[
            &[
                "compare", "--split", "VAL", "--json", "x.json", "a.onnx", "b.onnx",
            ],
            &[
                "export",
                "--onnx",
                "m.onnx",
                "--int8",
                "--format",
                "qdq",
                "--calibrator",
                "percentile-99.9",
                "--out",
                "q.onnx",
            ],
            &[
                "export",
                "--arch",
                "edge",
                "--weights",
                "w.ot",
                "--out",
                "m.onnx",
                "--threshold",
                "0.6",
            ],
            &[
                "reproduce",
                "--improved",
                "--device",
                "cpu",
                "--limit-per-class",
                "8",
                "--epochs",
                "1",
            ],
            &["cv", "runs/cv", "--out", "cv.md"],
            &["pack", "--out", "p.pack", "--quality", "85"],
            &[
                "bench-train",
                "--archs",
                "edge,resnet101v2,xception,inception-resnet-v2",
                "--batch",
                "16",
                "--size",
                "128",
                "--steps",
                "3",
                "--warmup",
                "1",
                "--threads",
                "2",
                "--json",
                "b.json",
            ],
        ];
        for &args in accepted {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(
            parse(&["train", "--data", "d", "--pack", "p"]).is_err(),
            "--data conflicts with --pack"
        );
    }
}
