//! `leukoscope-train`: train, evaluate and export the Leukoscope classifiers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leukoscope::{Classifier, ModelSource};
use leukoscope_host::onnx::quant;
use leukoscope_host::{data, device, eval, export, nets::Arch, plot, predict, train};

#[derive(Parser)]
#[command(
    name = "leukoscope-train",
    version,
    about = "Train, evaluate and export Leukoscope's white-cell classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a net on TRAIN with a smear-grouped validation split; keeps the best-validation weights.
    Train(TrainArgs),
    /// Write a trained net as float ONNX plus its model card, or (--int8) quantize a float model.
    Export(ExportArgs),
    /// Evaluate an ONNX model through the device's own preprocessing and tract inference.
    Eval(EvalArgs),
    /// Accuracy of several models on one split, and each one's top-1 agreement with the first (float vs int8).
    Compare(CompareArgs),
    /// Train the report's three CNNs with its recipe (and ours) and write Tables 1-5 to models/results.
    Reproduce(ReproduceArgs),
    /// Compare recipes by grouped k-fold cross-validation from their runs' train.json (`train --folds`).
    Cv(CvArgs),
    /// Pack TRAIN's preprocessed model inputs into one compact file for a remote GPU (`train --pack`).
    Pack(PackArgs),
}

#[derive(clap::Args)]
struct CvArgs {
    /// Run folders (each `*/train.json` inside is read) or train.json files.
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PackArgs {
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The pack to write.
    #[arg(long)]
    out: PathBuf,
    /// JPEG quality of each 128×128 input (the error it costs is measured and printed).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Architecture of the weights.
    #[arg(long, value_enum, default_value = "edge")]
    arch: Arch,
    /// Weights saved by `train` (best.ot); its train.json supplies the training command for the card.
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    weights: Option<PathBuf>,
    /// With --int8: quantize this float ONNX model (card beside it) instead of exporting --weights first.
    #[arg(long, requires = "int8")]
    onnx: Option<PathBuf>,
    /// Output ONNX file; the card is written beside it as .json.
    #[arg(long)]
    out: PathBuf,
    /// Unidentified-cell threshold to put in the card (calibrate it later with `eval --split VAL --calibrate`).
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Write a statically quantized int8 model (calibrated on TRAIN images) instead of float.
    #[arg(long)]
    int8: bool,
    /// int8 form: qop (QLinearConv / QLinearMatMul), qdq (Quantize/DequantizeLinear pairs) or weights (i8
    /// weights, float activations).
    #[arg(long, value_enum, default_value = "qop", requires = "int8")]
    format: quant::Format,
    /// Activation ranges: minmax, percentile (99.99 %, the default: best top-1 agreement on VAL) or
    /// percentile-P.
    #[arg(long, default_value = "percentile", requires = "int8")]
    calibrator: quant::Calibrator,
    /// Calibration images, from the training side of the smear-grouped split.
    #[arg(long, default_value_t = 512, requires = "int8")]
    calib_images: usize,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation split seed (must match training, so that no validation smear calibrates).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validation fraction (must match training).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// ONNX models with their cards; the first is the reference for top-1 agreement.
    #[arg(required = true, num_args = 1..)]
    models: Vec<PathBuf>,
    /// TEST, TEST_SIMPLE, or VAL (the smear-grouped validation part of TRAIN).
    #[arg(long, default_value = "TEST")]
    split: String,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Validation split seed (must match training).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validation fraction (must match training).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// ONNX model with its card beside it.
    #[arg(long)]
    model: PathBuf,
    /// TEST, TEST_SIMPLE, or VAL (the smear-grouped validation part of TRAIN, same seed/fraction as training).
    #[arg(long, default_value = "TEST")]
    split: String,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write `NAME-SPLIT.md`, `.json` and ROC / confusion PNGs into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Store the metrics in the model card under `metrics.SPLIT`.
    #[arg(long)]
    update_card: bool,
    /// With --split VAL: choose the unidentified threshold (kept accuracy >= 95 %, at most 10 % rejected)
    /// and store it in the card.
    #[arg(long)]
    calibrate: bool,
    /// Validation split seed (must match training).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validation fraction (must match training).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Architecture.
    #[arg(long, value_enum, default_value = "edge")]
    arch: Arch,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long, conflicts_with = "pack")]
    data: Option<PathBuf>,
    /// Train from a pack written by `leukoscope-train pack` instead of the image folders.
    #[arg(long)]
    pack: Option<PathBuf>,
    /// Output folder for best.ot and train.json.
    #[arg(long, default_value = "runs/edge")]
    out: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Epochs.
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Decoupled weight decay (0 = Adam).
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Constant learning rate instead of warm-up + cosine decay.
    #[arg(long)]
    constant_lr: bool,
    /// Disable flips/rotations and colour jitter.
    #[arg(long)]
    no_augment: bool,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Share of each class's source smears held out for validation; 0 trains on every smear and keeps the
    /// last epoch (only for a recipe and epoch count already chosen by `--folds` validation).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Grouped k-fold validation: hold out fold `--fold` of this many (replaces --val-fraction).
    #[arg(long, requires = "fold", value_parser = clap::value_parser!(u64).range(2..))]
    folds: Option<u64>,
    /// The held-out fold, 0-based (with --folds).
    #[arg(long, requires = "folds")]
    fold: Option<u64>,
    /// Seed for everything random.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use at most N TRAIN images per class (smoke tests).
    #[arg(long)]
    limit_per_class: Option<usize>,
    /// Random translation of the cell crop by up to N pixels.
    #[arg(long, default_value_t = 0)]
    shift: i64,
    /// Mixup with Beta(alpha, alpha) weights (0 = off).
    #[arg(long, default_value_t = 0.0)]
    mixup: f64,
    /// Keep the best validation macro AUC checkpoint (the report's rule) instead of accuracy.
    #[arg(long)]
    select_auc: bool,
    /// Batch-norm momentum of the report nets in tch's convention (Keras' 0.99 = 0.01, their default); 0.1
    /// suits short runs from scratch, whose running statistics 0.01 cannot settle.
    #[arg(long)]
    bn_momentum: Option<f64>,
}

#[derive(clap::Args)]
struct ReproduceArgs {
    /// Architectures to train, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "resnet101v2,xception,inception-resnet-v2"
    )]
    archs: Vec<Arch>,
    /// Epochs (the report: 30).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Also train each with our improved recipe (`<arch>-improved.json`).
    #[arg(long)]
    improved: bool,
    /// Data root (the Kaggle layout); defaults to ../shared/data/blood-cells.
    #[arg(long)]
    data: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Where checkpoints go.
    #[arg(long, default_value = "runs/reproduce")]
    runs: PathBuf,
    /// Where the tables go.
    #[arg(long, default_value = "models/results")]
    out: PathBuf,
    /// Use at most N images per class of TRAIN and TEST (smoke tests only: the numbers mean nothing).
    #[arg(long)]
    limit_per_class: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let argv: Vec<String> = std::env::args().collect();
    match cli.command {
        Command::Train(a) => {
            let source = match &a.pack {
                Some(p) => data::TrainSource::Pack(p.clone()),
                None => data::TrainSource::Folder(data::resolve_root(a.data.as_deref())?),
            };
            let dev = device::parse(&a.device).map_err(anyhow::Error::msg)?;
            let recipe = train::Recipe {
                arch: a.arch.name().to_string(),
                epochs: a.epochs,
                batch: a.batch,
                lr: a.lr,
                weight_decay: a.weight_decay,
                cosine: !a.constant_lr,
                augment: !a.no_augment,
                label_smoothing: a.label_smoothing,
                val_fraction: a.val_fraction,
                seed: a.seed,
                limit_per_class: a.limit_per_class,
                shift: a.shift,
                mixup: a.mixup,
                select_auc: a.select_auc,
                bn_momentum: a.bn_momentum,
                fold: match (a.fold, a.folds) {
                    (Some(k), Some(n)) if k < n => Some((k as usize, n as usize)),
                    (Some(k), Some(n)) => anyhow::bail!("--fold {k} is not below --folds {n}"),
                    _ => None,
                },
            };
            eprintln!("training {} on {dev:?} from {source}", a.arch.name());
            let log = train::train(a.arch, &recipe, &source, &a.out, dev, &argv.join(" "))
                .with_context(|| format!("training {}", a.arch.name()))?;
            let best = &log.epochs[log.best_epoch.max(1) - 1];
            if log.n_val == 0 {
                println!(
                    "nothing held out: kept the last epoch, {}; weights in {}",
                    log.best_epoch,
                    a.out.join("best.ot").display()
                );
            } else {
                println!(
                    "best epoch {} (validation accuracy {:.4}, loss {:.4}); weights in {}",
                    log.best_epoch,
                    best.val_acc,
                    best.val_loss,
                    a.out.join("best.ot").display()
                );
            }
        }
        Command::Export(a) => return export_cmd(a),
        Command::Compare(a) => return compare_cmd(a),
        Command::Eval(a) => return eval_cmd(a, &argv),
        Command::Reproduce(a) => return reproduce_cmd(a, &argv),
        Command::Cv(a) => {
            let table = leukoscope_host::cv::report(&a.runs)?;
            print!("{table}");
            if let Some(out) = &a.out {
                std::fs::write(out, &table)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
        }
        Command::Pack(a) => {
            let root = data::resolve_root(a.data.as_deref())?;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let stats = leukoscope_host::pack::write(&root, &a.out, a.quality, threads)?;
            for (path, why) in &stats.skipped {
                eprintln!("skipped {}: {why}", path.display());
            }
            println!(
                "wrote {}: {} TRAIN inputs, {:.1} MB ({:.0} bytes each), JPEG quality {}; error against the exact \
                 inputs: mean {:.2} levels, worst image {:.2}",
                a.out.display(),
                stats.images,
                stats.bytes as f64 / 1e6,
                stats.bytes as f64 / stats.images.max(1) as f64,
                a.quality,
                stats.mean_abs_error,
                stats.worst_image_error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let card = match (&a.weights, &a.onnx) {
        (Some(weights), _) => {
            let (_vs, graph) = train::load(a.arch, weights)?;
            let log_path = weights.with_file_name("train.json");
            let training_command = std::fs::read_to_string(&log_path)
                .ok()
                .and_then(|t| serde_json::from_str::<train::RunLog>(&t).ok())
                .map_or_else(
                    || format!("(unknown: {} not found)", log_path.display()),
                    |l| l.command,
                );
            let float_out = if a.int8 {
                a.out.with_file_name(format!(
                    "{}-float.onnx",
                    a.out
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("model")
                ))
            } else {
                a.out.clone()
            };
            let name = float_out
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("model")
                .to_string();
            let info = export::CardInfo {
                name,
                arch: a.arch.name().into(),
                training_command,
                unidentified_threshold: a.threshold,
            };
            let card = export::write_float_model(&graph, &float_out, &info)?;
            if a.int8 {
                println!("wrote the float model {} first", float_out.display());
                quantize_file(&a, &float_out)?
            } else {
                card
            }
        }
        (None, Some(onnx)) => quantize_file(&a, onnx)?,
        (None, None) => anyhow::bail!("give --weights, or --int8 with --onnx"),
    };
    // Prove the device accepts it before we call it done.
    Classifier::load(&ModelSource::File(a.out.clone()))
        .context("the exported model does not load in tract")?;
    println!(
        "wrote {} ({}, sha256 {}) and its card",
        a.out.display(),
        card.format,
        card.sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// Calibrates the verified float model `float` on TRAIN images and writes its int8 form to `a.out`.
fn quantize_file(a: &ExportArgs, float: &std::path::Path) -> anyhow::Result<leukoscope::ModelCard> {
    let verified = ModelSource::File(float.to_owned()).load()?;
    anyhow::ensure!(
        verified.card.format == "float",
        "{}: is {}, quantize a float model",
        float.display(),
        verified.card.format
    );
    let proto = export::read_model_proto(float)?;
    let root = data::resolve_root(a.data.as_deref())?;
    let t = std::time::Instant::now();
    let images = data::calibration_inputs(&root, a.calib_images, a.seed, a.val_fraction)?;
    anyhow::ensure!(
        images.len() == a.calib_images,
        "only {} calibration images could be read (asked for {})",
        images.len(),
        a.calib_images
    );
    let calibration = quant::calibrate(&proto, &images, leukoscope::preprocess::INPUT_SHAPE)?;
    eprintln!(
        "calibrated {} tensors on {} TRAIN images in {:.1} s",
        calibration.tensors().len(),
        images.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(export::write_int8_model(
        &proto,
        &verified.card,
        &calibration,
        a.calibrator,
        a.format,
        &a.out,
    )?)
}

/// The images of `split`: a data set folder, or `VAL` (the smear-grouped validation part of TRAIN).
fn split_samples(
    root: &std::path::Path,
    split: &str,
    val_fraction: f64,
    seed: u64,
) -> anyhow::Result<Vec<data::Sample>> {
    Ok(if split == "VAL" {
        let all = data::list(root, "TRAIN")?;
        let smears = data::source_smears(root)?;
        let split = data::grouped_split(&all, &smears, val_fraction, seed);
        split.val.iter().map(|&i| all[i].clone()).collect()
    } else {
        data::list(root, split)?
    })
}

fn compare_cmd(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let root = data::resolve_root(a.data.as_deref())?;
    let samples = split_samples(&root, &a.split, a.val_fraction, a.seed)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut reference: Option<Vec<usize>> = None;
    let mut rows = Vec::new();
    println!(
        "| model | format | {} accuracy | macro AUC | top-1 agreement with {} |",
        a.split,
        a.models[0].display()
    );
    println!("|---|---|---:|---:|---:|");
    for path in &a.models {
        let classifier = Classifier::load(&ModelSource::File(path.clone()))?;
        let (scores, failed) = predict::predict(&classifier, &samples, threads);
        anyhow::ensure!(
            failed.is_empty(),
            "{} images failed with {}: first {}: {}",
            failed.len(),
            path.display(),
            failed[0].0.display(),
            failed[0].1
        );
        let card = classifier.card();
        let report = eval::evaluate(&scores, &card.arch, &a.split, &card.training_command)?;
        let preds = scores.predictions();
        let reference = reference.get_or_insert_with(|| preds.clone());
        let agree = preds
            .iter()
            .zip(reference.iter())
            .filter(|(p, r)| p == r)
            .count() as f64
            / preds.len().max(1) as f64;
        println!(
            "| {} | {} | {:.2} % | {:.2} % | {:.2} % |",
            path.display(),
            card.format,
            report.average.accuracy * 100.0,
            report.average.auc * 100.0,
            agree * 100.0
        );
        rows.push(serde_json::json!({
            "model": path.display().to_string(),
            "format": card.format,
            "sha256": card.sha256,
            "split": a.split,
            "images": scores.len(),
            "accuracy": report.average.accuracy,
            "auc": report.average.auc,
            "loss": report.average.loss,
            "top1_agreement": agree,
        }));
    }
    if let Some(out) = &a.json {
        std::fs::write(out, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_cmd(a: EvalArgs, argv: &[String]) -> anyhow::Result<ExitCode> {
    let root = data::resolve_root(a.data.as_deref())?;
    let classifier = Classifier::load(&ModelSource::File(a.model.clone()))?;
    let samples = split_samples(&root, &a.split, a.val_fraction, a.seed)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = std::time::Instant::now();
    let (scores, failed) = predict::predict(&classifier, &samples, threads);
    for (p, e) in &failed {
        eprintln!("warning: skipped {}: {e}", p.display());
    }
    eprintln!(
        "evaluated {} images in {:.1} s with tract",
        scores.len(),
        t.elapsed().as_secs_f64()
    );
    let card = classifier.card().clone();
    let recipe = card.training_command.clone();
    let report = eval::evaluate(&scores, &card.arch, &a.split, &recipe)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_markdown());
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = dir.join(format!("{}-{}", card.name, a.split.to_lowercase()));
        std::fs::write(stem.with_extension("md"), report.to_markdown())?;
        std::fs::write(
            stem.with_extension("json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        plot::write_roc_png(
            &scores,
            &format!("{} {} ROC", card.name, a.split),
            &dir.join(format!("{}-{}-roc.png", card.name, a.split.to_lowercase())),
        )?;
        plot::write_confusion_png(
            &report,
            &dir.join(format!(
                "{}-{}-confusion.png",
                card.name,
                a.split.to_lowercase()
            )),
        )?;
    }
    if a.update_card || a.calibrate {
        let card_path = leukoscope::model::card_path(&a.model);
        let mut card = export::read_card(&card_path)?;
        if a.update_card {
            let mut m = serde_json::to_value(&report)?;
            m["command"] = serde_json::Value::String(argv.join(" "));
            if !card.metrics.is_object() {
                card.metrics = serde_json::json!({});
            }
            card.metrics[a.split.as_str()] = m;
        }
        if a.calibrate {
            anyhow::ensure!(
                a.split == "VAL",
                "--calibrate chooses the threshold on validation data only: use --split VAL"
            );
            let t = predict::choose_threshold(&scores, 0.95, 0.10);
            eprintln!(
                "unidentified threshold {:.4}: kept accuracy {:.4}, {:.2} % set aside on VAL",
                t.threshold,
                t.kept_accuracy,
                t.rejected * 100.0
            );
            card.unidentified_threshold = t.threshold;
            card.metrics["unidentified_threshold"] = serde_json::to_value(t)?;
        }
        export::write_card(&card, &card_path)?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn reproduce_cmd(a: ReproduceArgs, argv: &[String]) -> anyhow::Result<ExitCode> {
    use leukoscope_host::reproduce;
    let root = data::resolve_root(a.data.as_deref())?;
    let dev = device::parse(&a.device).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for &arch in &a.archs {
        let mut recipes = vec![(
            arch.name().to_string(),
            reproduce::report_recipe(arch, a.epochs, a.seed),
        )];
        if a.improved {
            recipes.push((
                format!("{}-improved", arch.name()),
                reproduce::improved_recipe(arch, a.epochs, a.seed),
            ));
        }
        for (tag, mut recipe) in recipes {
            recipe.limit_per_class = a.limit_per_class;
            eprintln!("reproduce: {tag} on {dev:?}");
            let report = reproduce::run_one(
                arch,
                &recipe,
                &tag,
                &root,
                &a.runs,
                &a.out,
                dev,
                &argv.join(" "),
            )
            .with_context(|| format!("reproducing {tag}"))?;
            println!("{}", report.to_markdown());
            rows.push((tag, arch, report));
        }
    }
    let table = reproduce::comparison_table(&rows);
    let path = a.out.join("reproduce.md");
    let text = format!(
        "# The report's models, reproduced\n\nCommand: `{}`\n\n{table}",
        argv.join(" ")
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", leukoscope_host::render_error(&e));
            ExitCode::FAILURE
        }
    }
}
