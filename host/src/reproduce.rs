//! Reproducing the report: its three CNNs trained with its recipe (Adam, learning rate 1e-4, categorical
//! cross-entropy, 30 epochs, checkpoint at the best validation AUC), evaluated once on TEST, written as the
//! report's tables (Markdown) and JSON, one file per model under `models/results/`.
//!
//! Validation holds out whole source smears of TRAIN (never a random split); TEST is only evaluated, once per
//! recipe, with the checkpoint validation chose. Evaluation here runs the trained tch graph on the same `u8`
//! inputs the device's preprocessing produces.

use std::path::{Path, PathBuf};

use tch::Device;

use crate::data;
use crate::eval::{self, Report, Scores};
use crate::nets::Arch;
use crate::train::{self, Recipe, TrainError};

/// The report's recipe for `arch`, over `epochs` epochs.
pub fn report_recipe(arch: Arch, epochs: usize, seed: u64) -> Recipe {
    Recipe {
        arch: arch.name().into(),
        epochs,
        batch: 32,
        lr: 1e-4,
        weight_decay: 0.0,
        cosine: false,
        augment: false,
        label_smoothing: 0.0,
        val_fraction: 0.2,
        seed,
        init_seed: None,
        limit_per_class: None,
        shift: 0,
        mixup: 0.0,
        select_auc: true,
        bn_momentum: None,
        fold: None,
        max_seconds: None,
        lab_shift: None,
        pretrained: None,
        context_drop: 0.0,
        highlight_clip: 0.0,
    }
}

/// Our improved recipe (the edge model's, measured there): augmentation, shift, mixup, label smoothing,
/// decoupled weight decay, warm-up + cosine schedule; still selected on validation AUC.
pub fn improved_recipe(arch: Arch, epochs: usize, seed: u64) -> Recipe {
    Recipe {
        lr: 5e-4,
        weight_decay: 0.05,
        cosine: true,
        augment: true,
        label_smoothing: 0.1,
        shift: 12,
        mixup: 0.2,
        ..report_recipe(arch, epochs, seed)
    }
}

/// Trains with `recipe`, then evaluates the kept checkpoint on TEST; writes `<out>/<tag>.json` and `.md`.
/// Returns the TEST report and the training run's log (epochs, images seen, time).
#[allow(clippy::too_many_arguments)]
pub fn run_one(
    arch: Arch,
    recipe: &Recipe,
    tag: &str,
    root: &Path,
    runs: &Path,
    out: &Path,
    device: Device,
    command: &str,
) -> Result<(Report, train::RunLog), TrainError> {
    let run_dir = runs.join(tag);
    let log = train::train(
        arch,
        recipe,
        &data::TrainSource::Folder(root.to_owned()),
        &run_dir,
        device,
        command,
    )?;
    let (vs, graph) = train::load(arch, &run_dir.join("best.ot"))?;
    let mut vs = vs;
    vs.set_device(device);
    let mut samples = data::list(root, "TEST")?;
    // A smoke test's limit shrinks TEST too; a budgeted run is evaluated on the whole TEST split.
    if let Some(k) = recipe
        .limit_per_class
        .filter(|_| recipe.max_seconds.is_none())
    {
        samples = crate::data::CLASSES
            .iter()
            .flat_map(|&c| {
                samples
                    .iter()
                    .filter(move |s| s.class == c)
                    .take(k)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let inputs = data::load_inputs(&samples, threads);
    let (x, _) = inputs.tensors();
    let scores = Scores {
        probs: train::evaluate_probs(&graph, &x, 64, device),
        labels: inputs.labels.iter().map(|&l| l as usize).collect(),
    };
    let recipe_text = serde_json::to_string(recipe).expect("recipe serialises");
    let t_eval = std::time::Instant::now();
    let report = eval::evaluate(&scores, arch.name(), "TEST", &recipe_text).map_err(|source| {
        TrainError::Eval {
            what: format!("{tag} on TEST"),
            source,
        }
    })?;
    std::fs::create_dir_all(out).map_err(|source| TrainError::Io {
        path: out.to_owned(),
        source,
    })?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|source| TrainError::Io { path, source })
    };
    write(
        out.join(format!("{tag}.json")),
        serde_json::to_string_pretty(&report).expect("report serialises") + "\n",
    )?;
    let mut md = report.to_markdown();
    if recipe.max_seconds.is_some() {
        md += &format!(
            "\n**CPU budget** ({}): {} training images ({} per class at most), {}×{} px inputs, {:.2} epochs \
             ({} images seen), {:.1} min training + validation{}, TEST evaluated in {:.1} min on {} images; checkpoint of \
             epoch {} (best validation AUC on held-out smears).\n",
            budget_note(recipe),
            log.n_train,
            recipe
                .limit_per_class
                .map_or("all".to_string(), |k| k.to_string()),
            leukoscope::preprocess::INPUT,
            leukoscope::preprocess::INPUT,
            log.epochs_run(),
            log.images_seen(),
            log.seconds() / 60.0,
            if log.stopped_by_budget { ", stopped by the budget" } else { "" },
            t_eval.elapsed().as_secs_f64() / 60.0,
            samples.len(),
            log.best_epoch,
        );
    }
    write(out.join(format!("{tag}.md")), md)?;
    Ok((report, log))
}

/// `budget 25 min, CPU: <model name>, N threads`.
pub fn budget_note(recipe: &Recipe) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "budget {:.0} min, {cpu}, {} threads",
        recipe.max_seconds.unwrap_or(0.0) / 60.0,
        tch::get_num_threads()
    )
}

/// The report's TEST averages (accuracy, AUC, loss) for its three models, for the side-by-side table.
pub fn report_numbers(arch: Arch) -> Option<(f64, f64, f64)> {
    match arch {
        Arch::Resnet101v2 => Some((0.8842, 0.9849, 0.3307)),
        Arch::Xception => Some((0.8890, 0.9869, 0.3470)),
        Arch::InceptionResnetV2 => Some((0.9115, 0.9851, 0.3085)),
        Arch::Edge
        | Arch::Edge16
        | Arch::Edge16Gn
        | Arch::Edge16In
        | Arch::Edge16Rh
        | Arch::Edge16Wp
        | Arch::Edge16Grey
        | Arch::Edge16Lc
        | Arch::EfficientnetLite0
        | Arch::EfficientnetLite0Grey => None,
    }
}

/// A Markdown table of the report's numbers beside ours, with what each of ours was trained on (training
/// images, input side, epochs, images seen, wall time).
pub fn comparison_table(rows: &[(String, Arch, Report, train::RunLog)]) -> String {
    let mut s = String::from(
        "| model | recipe | TEST accuracy (report) | TEST accuracy (ours) | AUC (report) | AUC (ours) | loss (report) | loss (ours) | ours: trained on | input | epochs | images seen | wall time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (tag, arch, r, log) in rows {
        let (ra, rauc, rl) = report_numbers(*arch).map_or(
            ("–".into(), "–".into(), "–".into()),
            |(a, u, l)| {
                (
                    format!("{:.2} %", a * 100.0),
                    format!("{:.2} %", u * 100.0),
                    format!("{l:.4}"),
                )
            },
        );
        s += &format!(
            "| {} | {tag} | {ra} | {:.2} % | {rauc} | {:.2} % | {rl} | {:.4} | {} images | {} px | {:.2}{} | {} | {:.1} min |\n",
            arch.name(),
            r.average.accuracy * 100.0,
            r.average.auc * 100.0,
            r.average.loss,
            log.n_train,
            leukoscope::preprocess::INPUT,
            log.epochs_run(),
            if log.stopped_by_budget { " (budget)" } else { "" },
            log.images_seen(),
            log.seconds() / 60.0,
        );
    }
    s
}
