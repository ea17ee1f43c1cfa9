//! Comparing recipes by grouped k-fold cross-validation: the `train.json` of every fold run of a recipe,
//! pooled over the folds so that every TRAIN smear is validated once.
//!
//! Two figures per recipe. The **last-epoch** accuracy pooled over the folds is the unbiased one: nothing was
//! chosen by looking at the validation data. The **best-epoch** accuracy is what a run's checkpoint rule keeps;
//! it is biased upwards, the more so the more epochs it picks from (a recipe with 80 validation looks has more
//! chances of a lucky one than a recipe with 10), so it is shown but recipes are ranked on the first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::train::{Recipe, RunLog};

/// One fold run.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldRun {
    /// The held-out fold.
    pub fold: usize,
    /// Validation images.
    pub n_val: usize,
    /// Validation accuracy after the last epoch.
    pub last_acc: f64,
    /// Validation accuracy of the kept (best) epoch.
    pub best_acc: f64,
    /// The kept epoch.
    pub best_epoch: usize,
    /// Where the log was read.
    pub path: PathBuf,
}

/// A recipe's k-fold result.
#[derive(Clone, Debug, PartialEq)]
pub struct CvRow {
    /// The recipe with its fold taken out.
    pub recipe: Recipe,
    /// Folds in the split.
    pub folds: usize,
    /// The fold runs, by fold.
    pub runs: Vec<FoldRun>,
}

impl CvRow {
    /// Whether every fold ran to its last epoch.
    pub fn complete(&self) -> bool {
        self.runs.len() == self.folds
    }

    /// Last-epoch accuracy pooled over the folds (each image once).
    pub fn pooled_last(&self) -> f64 {
        pooled(&self.runs, |r| r.last_acc)
    }

    /// Best-epoch accuracy pooled over the folds (biased upwards; see the module docs).
    pub fn pooled_best(&self) -> f64 {
        pooled(&self.runs, |r| r.best_acc)
    }
}

fn pooled(runs: &[FoldRun], acc: impl Fn(&FoldRun) -> f64) -> f64 {
    let n: usize = runs.iter().map(|r| r.n_val).sum();
    runs.iter().map(|r| acc(r) * r.n_val as f64).sum::<f64>() / n.max(1) as f64
}

/// Why the runs could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum CvError {
    /// A log could not be read or parsed.
    #[error("{path}")]
    Log {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong (an I/O or a JSON error).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Two finished runs claim the same recipe and fold.
    #[error("{a} and {b} are both fold {fold} of the same recipe")]
    Duplicate {
        /// First log.
        a: PathBuf,
        /// Second log.
        b: PathBuf,
        /// The fold.
        fold: usize,
    },
}

/// Reads every `*/train.json` under each folder (and any `train.json` file given directly).
pub fn read_logs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, RunLog)>, CvError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
            continue;
        }
        let rd = std::fs::read_dir(p).map_err(|e| CvError::Log {
            path: p.clone(),
            source: e.into(),
        })?;
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("train.json"))
            .filter(|f| f.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|e| CvError::Log {
                path: f.clone(),
                source: e.into(),
            })?;
            let log = serde_json::from_str::<RunLog>(&text).map_err(|e| CvError::Log {
                path: f.clone(),
                source: e.into(),
            })?;
            Ok((f, log))
        })
        .collect()
}

/// Groups the fold runs by recipe. Runs without a fold, and runs that stopped before their last epoch, are
/// returned in the second list (named, not counted); a finished run repeated for one fold is an error.
pub fn summarize(logs: &[(PathBuf, RunLog)]) -> Result<(Vec<CvRow>, Vec<PathBuf>), CvError> {
    let mut rows: BTreeMap<String, CvRow> = BTreeMap::new();
    let mut left_out = Vec::new();
    for (path, log) in logs {
        let (Some((fold, folds)), Some(last)) = (log.recipe.fold, log.epochs.last()) else {
            left_out.push(path.clone());
            continue;
        };
        if log.epochs.len() < log.recipe.epochs || log.best_epoch == 0 {
            left_out.push(path.clone());
            continue;
        }
        let mut recipe = log.recipe.clone();
        recipe.fold = None;
        let key = format!(
            "{folds}|{}",
            serde_json::to_string(&recipe).expect("recipe serialises")
        );
        let row = rows.entry(key).or_insert_with(|| CvRow {
            recipe,
            folds,
            runs: Vec::new(),
        });
        if let Some(other) = row.runs.iter().find(|r| r.fold == fold) {
            return Err(CvError::Duplicate {
                a: other.path.clone(),
                b: path.clone(),
                fold,
            });
        }
        row.runs.push(FoldRun {
            fold,
            n_val: log.n_val,
            last_acc: last.val_acc,
            best_acc: log.epochs[log.best_epoch - 1].val_acc,
            best_epoch: log.best_epoch,
            path: path.clone(),
        });
    }
    let mut rows: Vec<CvRow> = rows.into_values().collect();
    for r in &mut rows {
        r.runs.sort_by_key(|f| f.fold);
    }
    rows.sort_by(|a, b| b.pooled_last().total_cmp(&a.pooled_last()));
    Ok((rows, left_out))
}

/// A Markdown table of the rows, best pooled last-epoch accuracy first.
pub fn markdown(rows: &[CvRow]) -> String {
    let pct = |x: f64| format!("{:.2}", 100.0 * x);
    let mut s = String::from(
        "| arch | epochs | batch | lr | wd | smoothing | shift | mixup | seed | folds | last epoch, per fold (%) \
         | **pooled last epoch (%)** | pooled best epoch (%) | best epochs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n",
    );
    for r in rows {
        let c = &r.recipe;
        let folds = if r.complete() {
            r.folds.to_string()
        } else {
            format!("{} of {} (incomplete)", r.runs.len(), r.folds)
        };
        let per_fold: Vec<String> = r.runs.iter().map(|f| pct(f.last_acc)).collect();
        let best_epochs: Vec<String> = r.runs.iter().map(|f| f.best_epoch.to_string()).collect();
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} |\n",
            c.arch,
            c.epochs,
            c.batch,
            c.lr,
            c.weight_decay,
            c.label_smoothing,
            c.shift,
            c.mixup,
            c.seed,
            folds,
            per_fold.join(" / "),
            pct(r.pooled_last()),
            pct(r.pooled_best()),
            best_epochs.join(" / "),
        );
    }
    s
}

/// Reads, summarises and renders; the left-out logs are listed under the table.
pub fn report(paths: &[PathBuf]) -> Result<String, CvError> {
    let logs = read_logs(paths)?;
    let (rows, left_out) = summarize(&logs)?;
    let mut s = markdown(&rows);
    if !left_out.is_empty() {
        s += "\nNot counted (no fold, or stopped before the last epoch):\n";
        for p in left_out {
            s += &format!("- {}\n", p.display());
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EpochLog;

    fn log(
        epochs: usize,
        done: usize,
        fold: Option<(usize, usize)>,
        accs: &[f64],
        n: usize,
    ) -> RunLog {
        let recipe = Recipe {
            arch: "edge16".into(),
            epochs,
            batch: 64,
            lr: 2e-3,
            weight_decay: 0.05,
            cosine: true,
            augment: true,
            label_smoothing: 0.1,
            val_fraction: 0.2,
            seed: 1,
            init_seed: None,
            limit_per_class: None,
            shift: 12,
            mixup: 0.2,
            select_auc: false,
            bn_momentum: None,
            fold,
            max_seconds: None,
            lab_shift: None,
            pretrained: None,
            context_drop: 0.0,
            highlight_clip: 0.0,
        };
        let epochs_log: Vec<EpochLog> = accs[..done]
            .iter()
            .enumerate()
            .map(|(i, &a)| EpochLog {
                epoch: i + 1,
                train_loss: 1.0,
                train_acc: 0.5,
                val_loss: 1.0,
                val_acc: a,
                val_auc: 0.9,
                seconds: 1.0,
                img_per_s: 1.0,
                images: 10,
            })
            .collect();
        let best_epoch = (0..done)
            .max_by(|&a, &b| accs[a].total_cmp(&accs[b]))
            .map_or(0, |i| i + 1);
        RunLog {
            recipe,
            command: String::new(),
            device: "Cpu".into(),
            params: 1,
            n_train: 10,
            n_val: n,
            val_smears: Default::default(),
            epochs: epochs_log,
            best_epoch,
            skipped: vec![],
            stopped_by_budget: false,
        }
    }

    #[test]
    fn folds_pool_by_images_and_rank_on_the_last_epoch() {
        let p = |s: &str| PathBuf::from(s);
        let logs = vec![
            // Recipe A (2 epochs): a lucky first epoch, a worse last one.
            (p("a0"), log(2, 2, Some((0, 2)), &[0.9, 0.7], 100)),
            (p("a1"), log(2, 2, Some((1, 2)), &[0.95, 0.7], 300)),
            // Recipe B (3 epochs): steady.
            (p("b0"), log(3, 3, Some((0, 2)), &[0.7, 0.75, 0.8], 100)),
            (p("b1"), log(3, 3, Some((1, 2)), &[0.6, 0.7, 0.8], 300)),
            // Stopped early, and a plain hold-out run: both named, neither counted.
            (
                p("b1-cut"),
                log(3, 2, Some((1, 2)), &[0.99, 0.99, 0.0], 300),
            ),
            (p("s1"), log(3, 3, None, &[0.5, 0.5, 0.5], 50)),
        ];
        let (rows, left) = summarize(&logs).unwrap();
        assert_eq!(left, vec![p("b1-cut"), p("s1")]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].recipe.epochs, 3,
            "ranked on the unbiased last epoch"
        );
        assert!((rows[0].pooled_last() - 0.8).abs() < 1e-12);
        assert!((rows[1].pooled_last() - 0.7).abs() < 1e-12);
        assert!((rows[1].pooled_best() - (0.9 * 100.0 + 0.95 * 300.0) / 400.0).abs() < 1e-12);
        assert!(rows.iter().all(CvRow::complete));
        let md = markdown(&rows);
        assert!(
            md.contains("| **80.00** |") && md.contains("| **70.00** |"),
            "{md}"
        );

        let dup = vec![logs[0].clone(), (p("again"), logs[0].1.clone())];
        let e = summarize(&dup).unwrap_err().to_string();
        assert!(e.contains("a0") && e.contains("again"), "{e}");
    }

    #[test]
    fn a_missing_fold_is_marked_incomplete() {
        let logs = vec![(PathBuf::from("x"), log(1, 1, Some((2, 5)), &[0.5], 10))];
        let (rows, _) = summarize(&logs).unwrap();
        assert!(!rows[0].complete());
        assert!(markdown(&rows).contains("1 of 5 (incomplete)"));
    }
}
