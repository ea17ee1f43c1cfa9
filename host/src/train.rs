//! Training: Adam(W), cross-entropy, smear-grouped validation, best-validation checkpoint.
//!
//! The data are decoded once into `u8` tensors (on the training device), batches are gathered, augmented and
//! normalised there. Augmentations fit microscopy: the eight flips/rotations of the square crop (a smear has
//! no up or down) and a mild per-image brightness/contrast/stain jitter.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::data::{self, Inputs, Rng};
use crate::nets::{self, Arch};

/// A training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Architecture name.
    pub arch: String,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (AdamW); 0 = plain Adam.
    pub weight_decay: f64,
    /// Cosine decay to zero after one warm-up epoch (false: constant rate).
    pub cosine: bool,
    /// Flips/rotations and colour jitter.
    pub augment: bool,
    /// Label smoothing for the loss.
    pub label_smoothing: f64,
    /// Share of each class's source smears held out for validation.
    pub val_fraction: f64,
    /// Seed for initialisation, shuffles, augmentation and the split.
    pub seed: u64,
    /// Seed for initialisation, shuffles and augmentation only, when it differs from the split's (`None`:
    /// [`Self::seed`]): members of an ensemble are trained on one split, so its validation stays held out.
    #[serde(default)]
    pub init_seed: Option<u64>,
    /// Use at most this many TRAIN images per class (smoke tests).
    pub limit_per_class: Option<usize>,
    /// Random translation of the cell crop by up to this many pixels (0 = off); the locator's aim varies.
    #[serde(default)]
    pub shift: i64,
    /// Mixup with Beta(alpha, alpha) weights (0 = off).
    #[serde(default)]
    pub mixup: f64,
    /// Keep the checkpoint with the best validation macro AUC (the report's rule) instead of accuracy.
    #[serde(default)]
    pub select_auc: bool,
    /// Batch-norm momentum override for the report nets (see [`nets::Arch::build_with`]); `None` keeps
    /// Keras'.
    #[serde(default)]
    pub bn_momentum: Option<f64>,
    /// Grouped k-fold validation `(fold, folds)` instead of the `val_fraction` hold-out (see
    /// [`data::grouped_fold`]); for comparing recipes across all smears.
    #[serde(default)]
    pub fold: Option<(usize, usize)>,
    /// A wall-time budget for the training steps, in seconds (`None`: none). When it runs out the run stops
    /// after the current step, validates that last (partial) epoch and keeps the best checkpoint as
    /// always; the log says the budget ended it.
    #[serde(default)]
    pub max_seconds: Option<f64>,
    /// With `augment`: simulate another lab's stain, colour, focus, noise and magnification
    /// ([`crate::augment::lab_shift`]) in place of the mild colour jitter; `None` keeps the jitter.
    #[serde(default)]
    pub lab_shift: Option<crate::augment::LabShift>,
    /// Initial weights for every variable but the head (see [`crate::pretrained`]); `None`: from scratch.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// With `augment`: the share of images whose surroundings beyond a random disc about the cell are
    /// replaced by their own plasma ([`crate::augment::context_drop`]), as another lab's tight crop shows a
    /// cell with no red cells around it; 0 (the default) is off.
    #[serde(default)]
    pub context_drop: f64,
    /// With `augment`: the share of images given another camera's over-exposure, clipped and brought back
    /// ([`crate::augment::highlight_clip`]); 0 (the default) is off.
    #[serde(default)]
    pub highlight_clip: f64,
}

impl Recipe {
    /// Checks what [`train`] needs before it reads any data: at least one epoch and one image per batch,
    /// fractions and rates in range, and the held-out fold below the number of folds. The message names the
    /// `leukoscope-train train` flag.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Recipe(what));
        if self.epochs == 0 {
            return bad("--epochs 0: train at least one epoch".into());
        }
        if self.batch == 0 {
            return bad("--batch 0: a batch holds at least one image".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr {}: the learning rate must be above 0",
                self.lr
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--weight-decay {}: must be 0 or more",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!(
                "--val-fraction {}: the share of smears held out must be in [0, 1)",
                self.val_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "--label-smoothing {}: must be in [0, 1)",
                self.label_smoothing
            ));
        }
        if !(self.mixup.is_finite() && self.mixup >= 0.0) {
            return bad(format!("--mixup {}: must be 0 (off) or more", self.mixup));
        }
        if !(0.0..=1.0).contains(&self.context_drop) {
            return bad(format!(
                "--context-drop {}: the share of images must be in [0, 1]",
                self.context_drop
            ));
        }
        if !(0.0..=1.0).contains(&self.highlight_clip) {
            return bad(format!(
                "--highlight-clip {}: the share of images must be in [0, 1]",
                self.highlight_clip
            ));
        }
        if let Some(m) = self.bn_momentum {
            if !(m > 0.0 && m <= 1.0) {
                return bad(format!("--bn-momentum {m}: must be in (0, 1]"));
            }
        }
        if let Some(p) = self.pretrained.as_ref().filter(|p| !p.is_file()) {
            return bad(format!("--pretrained {}: no such file", p.display()));
        }
        if self.limit_per_class == Some(0) {
            return bad("--limit-per-class 0: keep at least one image per class".into());
        }
        if let Some((fold, folds)) = self.fold {
            if folds < 2 {
                return bad(format!(
                    "--folds {folds}: k-fold validation needs at least 2 folds"
                ));
            }
            if fold >= folds {
                return bad(format!(
                    "--fold {fold} is not below --folds {folds} (folds are numbered from 0)"
                ));
            }
        }
        Ok(())
    }
}

/// One epoch's log line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on augmented batches).
    pub train_acc: f64,
    /// Validation loss (NaN, written `null`, when nothing is held out).
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_loss: f64,
    /// Validation accuracy (NaN when nothing is held out).
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_acc: f64,
    /// Validation macro AUC (one-vs-rest; NaN when nothing is held out).
    #[serde(default, deserialize_with = "f64_or_nan")]
    pub val_auc: f64,
    /// Wall seconds for the epoch.
    pub seconds: f64,
    /// Training images per second.
    pub img_per_s: f64,
    /// Training images this epoch (fewer than the training set when the budget ended it).
    #[serde(default)]
    pub images: usize,
}

/// serde_json writes a NaN as `null`; read it back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
}

/// What a run leaves in its output folder (`train.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunLog {
    /// The recipe.
    pub recipe: Recipe,
    /// The command line that started the run.
    pub command: String,
    /// Device used.
    pub device: String,
    /// Trainable parameters.
    pub params: i64,
    /// Training / validation image counts.
    pub n_train: usize,
    /// Validation images.
    pub n_val: usize,
    /// Held-out smears per class.
    pub val_smears: std::collections::BTreeMap<String, Vec<String>>,
    /// Per-epoch log.
    pub epochs: Vec<EpochLog>,
    /// Epoch whose weights were kept (best validation accuracy, then lowest loss).
    pub best_epoch: usize,
    /// Files that could not be decoded.
    pub skipped: Vec<String>,
    /// The recipe's [`Recipe::max_seconds`] ended the run before its last epoch.
    #[serde(default)]
    pub stopped_by_budget: bool,
}

impl RunLog {
    /// Training images seen over the whole run.
    pub fn images_seen(&self) -> usize {
        self.epochs.iter().map(|e| e.images).sum()
    }

    /// Wall seconds of the whole run (training and validation).
    pub fn seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum()
    }

    /// Epochs run, the last one as a fraction when the budget cut it.
    pub fn epochs_run(&self) -> f64 {
        let n = self.n_train.max(1) as f64;
        self.images_seen() as f64 / n
    }
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Data problems.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The recipe cannot be trained (no epochs, an empty batch, a fraction out of range, ...).
    #[error("bad recipe: {0}")]
    Recipe(String),
    /// The trained net could not be evaluated.
    #[error("evaluating {what}")]
    Eval {
        /// What was evaluated.
        what: String,
        /// Why not.
        source: crate::eval::EvalError,
    },
    /// The pretrained weights do not fit the net.
    #[error(transparent)]
    Pretrained(#[from] crate::pretrained::PretrainedError),
    /// tch problems (shapes, devices, files).
    #[error("{context}")]
    Tch {
        /// What we were doing.
        context: String,
        /// tch's error.
        source: tch::TchError,
    },
    /// Writing the log.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Random dihedral transform (flips + transpose) per image of a `u8 [N, H, W, 3]` square batch.
pub fn dihedral(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let opts = (Kind::Bool, x.device());
    let coin = || {
        Tensor::rand([n, 1, 1, 1], (Kind::Float, x.device()))
            .lt(0.5)
            .to_kind(opts.0)
    };
    let x = x.where_self(&coin().logical_not(), &x.flip([2]));
    let x = x.where_self(&coin().logical_not(), &x.flip([1]));
    x.where_self(&coin().logical_not(), &x.transpose(1, 2))
}

/// Random translation of a `u8 [N, H, W, 3]` batch by up to `max` pixels (one offset per batch), the vacated
/// border repeating the edge, as [`leukoscope::preprocess::crop`] does at frame borders.
pub fn shift(x: &Tensor, max: i64, rng: &mut Rng) -> Tensor {
    if max <= 0 {
        return x.shallow_clone();
    }
    let (h, w) = (x.size()[1], x.size()[2]);
    let padded = x
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        .replication_pad2d([max, max, max, max]);
    let dy = rng.below(2 * max as usize + 1) as i64;
    let dx = rng.below(2 * max as usize + 1) as i64;
    padded
        .narrow(2, dy, h)
        .narrow(3, dx, w)
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
}

/// Mild per-image contrast, brightness and per-channel stain jitter on a normalised `f32 [N, 3, H, W]` batch.
pub fn colour_jitter(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let o = (Kind::Float, x.device());
    let contrast = Tensor::randn([n, 1, 1, 1], o) * 0.08 + 1.0;
    let shift = Tensor::randn([n, 3, 1, 1], o) * 0.15;
    x * contrast + shift
}

/// Softmax probabilities of `graph` on `x` (u8 NHWC), in batches, without gradients.
pub fn evaluate_probs(
    graph: &nets::Graph,
    x: &Tensor,
    batch: i64,
    device: Device,
) -> Vec<[f32; 4]> {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(batch.max(1) as usize) {
        let len = batch.min(n - start);
        let xb = data::batch_to(&x.narrow(0, start, len), device);
        let p = graph
            .forward_t(&xb, false)
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        let flat: Vec<f32> = Vec::try_from(p.contiguous().view([-1])).expect("f32 probabilities");
        out.extend(flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
    }
    out
}

/// Trains `arch` with `recipe` on the TRAIN split under `root`, writing `best.ot` and `train.json` to `out`.
pub fn train(
    arch: Arch,
    recipe: &Recipe,
    source: &data::TrainSource,
    out: &Path,
    device: Device,
    command: &str,
) -> Result<RunLog, TrainError> {
    recipe.validate()?;
    let tch_err = |context: &str| {
        let context = context.to_string();
        move |source| TrainError::Tch {
            context: context.clone(),
            source,
        }
    };
    std::fs::create_dir_all(out).map_err(|source| TrainError::Io {
        path: out.to_owned(),
        source,
    })?;
    // A run into an existing folder replaces its outputs: a stale best.ot must not outlive a new run whose
    // validation never improves.
    for own in ["best.ot", "train.json"] {
        let path = out.join(own);
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("replacing {} of an earlier run", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TrainError::Io { path, source }),
        }
    }
    let init_seed = recipe.init_seed.unwrap_or(recipe.seed);
    tch::manual_seed(init_seed as i64);
    if device.is_cuda() {
        // Fixed input shapes: let cuDNN pick its fastest kernels once.
        tch::Cuda::cudnn_set_benchmark(true);
    }

    let (pack, mut samples, smears) = match source {
        data::TrainSource::Folder(root) => {
            (None, data::list(root, "TRAIN")?, data::source_smears(root)?)
        }
        data::TrainSource::Pack(p) => {
            let pk = crate::pack::read(p)?;
            let (samples, smears) = (pk.samples(), pk.smears());
            (Some(pk), samples, smears)
        }
    };
    if let Some(k) = recipe.limit_per_class {
        let mut rng = Rng::new(recipe.seed ^ 0x5eed);
        let mut kept = Vec::new();
        for class in crate::data::CLASSES {
            let mut of: Vec<_> = samples
                .iter()
                .filter(|s| s.class == class)
                .cloned()
                .collect();
            rng.shuffle(&mut of);
            kept.extend(of.into_iter().take(k));
        }
        samples = kept;
    }
    let split = match recipe.fold {
        Some((k, folds)) => data::grouped_fold(&samples, &smears, folds, k, recipe.seed),
        None => data::grouped_split(&samples, &smears, recipe.val_fraction, recipe.seed),
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t0 = Instant::now();
    let pick = |idx: &[usize]| idx.iter().map(|&i| samples[i].clone()).collect::<Vec<_>>();
    let load = |idx: &[usize]| match &pack {
        Some(pk) => pk.load_inputs(&pick(idx), threads),
        None => data::load_inputs(&pick(idx), threads),
    };
    let tr: Inputs = load(&split.train);
    let va: Inputs = load(&split.val);
    eprintln!(
        "data: {} train / {} validation images decoded in {:.1} s ({} skipped); validation holds out smears {:?}",
        tr.len(),
        va.len(),
        t0.elapsed().as_secs_f64(),
        tr.skipped.len() + va.skipped.len(),
        split.val_smears.iter().map(|(c, s)| (c.name(), s.len())).collect::<Vec<_>>()
    );
    // `--val-fraction 0`: train on every smear and keep the last epoch, for a recipe (and its epoch count)
    // already chosen by k-fold validation.
    let holdout = recipe.fold.is_some() || recipe.val_fraction > 0.0;
    if tr.is_empty() || (holdout && va.is_empty()) {
        return Err(data::DataError::Empty(
            "no training or validation images left after decoding".into(),
        )
        .into());
    }
    let (xtr, ytr) = tr.tensors();
    let (xva, _) = va.tensors();
    let (xtr, ytr) = (xtr.to_device(device), ytr.to_device(device));

    let vs = nn::VarStore::new(device);
    let graph = arch.build_with(
        &vs.root(),
        crate::data::CLASSES.len() as i64,
        recipe.bn_momentum,
    );
    if let Some(path) = &recipe.pretrained {
        eprintln!("{}", crate::pretrained::load(&vs, &graph, path)?);
    }
    let params = nets::trainable_params(&vs);
    let mut opt = nn::adamw(0.9, 0.999, recipe.weight_decay)
        .build(&vs, recipe.lr)
        .map_err(tch_err("optimizer"))?;

    let n = tr.len();
    let batch = recipe.batch.max(1);
    let steps_per_epoch = n.div_ceil(batch);
    let total = (steps_per_epoch * recipe.epochs).max(1);
    let mut rng = Rng::new(init_seed);
    let mut log = RunLog {
        recipe: recipe.clone(),
        command: command.to_string(),
        device: format!("{device:?}"),
        params,
        n_train: n,
        n_val: va.len(),
        val_smears: split
            .val_smears
            .iter()
            .map(|(c, s)| (c.name().to_string(), s.iter().cloned().collect()))
            .collect(),
        epochs: Vec::new(),
        best_epoch: 0,
        skipped: tr
            .skipped
            .iter()
            .chain(&va.skipped)
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect(),
        stopped_by_budget: false,
    };
    let budget = Instant::now();
    let over_budget = || {
        recipe
            .max_seconds
            .is_some_and(|s| budget.elapsed().as_secs_f64() >= s)
    };
    let best_path = out.join("best.ot");
    let mut best = (f64::NEG_INFINITY, f64::INFINITY);
    let mut step = 0usize;
    for epoch in 1..=recipe.epochs {
        let t = Instant::now();
        let mut order: Vec<i64> = (0..n as i64).collect();
        rng.shuffle(&mut order);
        let bar = indicatif::ProgressBar::new(steps_per_epoch as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
            )
            .expect("static template"),
        );
        bar.set_prefix(format!("{epoch}/{}", recipe.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0i64);
        for chunk in order.chunks(batch) {
            let lr = if recipe.cosine {
                let warm = steps_per_epoch.min(total / 10).max(1);
                if step < warm {
                    recipe.lr * (step + 1) as f64 / warm as f64
                } else {
                    let p = (step - warm) as f64 / (total - warm).max(1) as f64;
                    recipe.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            } else {
                recipe.lr
            };
            opt.set_lr(lr);
            let idx = Tensor::from_slice(chunk).to_device(device);
            let mut xb = xtr.index_select(0, &idx);
            let yb = ytr.index_select(0, &idx);
            if recipe.augment {
                xb = shift(&dihedral(&xb), recipe.shift, &mut rng);
                if recipe.context_drop > 0.0 {
                    xb = crate::augment::context_drop(&xb, recipe.context_drop, &mut rng);
                }
                if recipe.highlight_clip > 0.0 {
                    xb = crate::augment::highlight_clip(&xb, recipe.highlight_clip, &mut rng);
                }
            }
            let xb = match recipe.lab_shift {
                Some(lab) if recipe.augment => {
                    data::normalize01(&crate::augment::lab_shift(&xb, lab, &mut rng))
                }
                _ if recipe.augment => colour_jitter(&data::normalize_batch(&xb)),
                _ => data::normalize_batch(&xb),
            };
            let ce = |logits: &Tensor, y: &Tensor, reduction| {
                logits.cross_entropy_loss::<Tensor>(
                    y,
                    None,
                    reduction,
                    -100,
                    recipe.label_smoothing,
                )
            };
            let (logits, loss) = if recipe.mixup > 0.0 {
                // Mix each image with another of the batch; the loss mixes both labels with the same weight.
                let nb = chunk.len() as i64;
                let alpha = Tensor::full([nb], recipe.mixup, (Kind::Float, device));
                let (g1, g2) = (
                    alpha.internal_standard_gamma(),
                    alpha.internal_standard_gamma(),
                );
                let lam = (&g1 / (&g1 + &g2 + 1e-12)).view([nb, 1, 1, 1]);
                let perm = Tensor::randperm(nb, (Kind::Int64, device));
                let mixed = &xb * &lam + xb.index_select(0, &perm) * (1.0 - &lam);
                let logits = graph.forward_t(&mixed, true);
                let lam = lam.view([nb]);
                let l1: Tensor = ce(&logits, &yb, tch::Reduction::None);
                let l2: Tensor = ce(&logits, &yb.index_select(0, &perm), tch::Reduction::None);
                let mixed_loss: Tensor = &lam * l1 + (1.0 - &lam) * l2;
                let loss = mixed_loss.mean(Kind::Float);
                (logits, loss)
            } else {
                let logits = graph.forward_t(&xb, true);
                let loss = ce(&logits, &yb, tch::Reduction::Mean);
                (logits, loss)
            };
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            loss_sum += l * chunk.len() as f64;
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&yb)
                .sum(Kind::Int64)
                .int64_value(&[]);
            seen += chunk.len() as i64;
            step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4} acc {:.3}",
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
            if over_budget() {
                log.stopped_by_budget = true;
                break;
            }
        }
        let train_secs = t.elapsed().as_secs_f64();
        let (val_loss, val_acc, val_auc) = if holdout {
            // One pass over the validation images gives all three (the report's top-1 accuracy and mean
            // cross-entropy); NaN probabilities (a diverged run) make them NaN.
            let val_scores = crate::eval::Scores {
                probs: evaluate_probs(&graph, &xva, 256, device),
                labels: va.labels.iter().map(|&l| l as usize).collect(),
            };
            crate::eval::evaluate(&val_scores, &recipe.arch, "VAL", "")
                .map(|r| (r.average.loss, r.average.accuracy, r.average.auc))
                .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        bar.finish_and_clear();
        let e = EpochLog {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            val_auc,
            seconds: t.elapsed().as_secs_f64(),
            img_per_s: seen as f64 / train_secs,
            images: seen as usize,
        };
        let key = if recipe.select_auc { val_auc } else { val_acc };
        let improved = !holdout || key > best.0 || (key == best.0 && val_loss < best.1);
        eprintln!(
            "epoch {epoch}/{}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} auc {:.4} | {:.0} img/s{}",
            recipe.epochs,
            e.train_loss,
            e.train_acc,
            e.val_loss,
            e.val_acc,
            e.val_auc,
            e.img_per_s,
            if improved { " *" } else { "" }
        );
        if improved {
            best = (key, val_loss);
            log.best_epoch = epoch;
            vs.save(&best_path)
                .map_err(tch_err(&format!("saving {}", best_path.display())))?;
        }
        log.epochs.push(e);
        let log_path = out.join("train.json");
        let text = serde_json::to_string_pretty(&log).expect("log serialises");
        std::fs::write(&log_path, text).map_err(|source| TrainError::Io {
            path: log_path.clone(),
            source,
        })?;
        if log.stopped_by_budget {
            eprintln!(
                "the budget of {:.0} s ended the run in epoch {epoch} ({} images seen)",
                recipe.max_seconds.unwrap_or(0.0),
                log.images_seen()
            );
            break;
        }
    }
    Ok(log)
}

/// Rebuilds `arch` and loads weights saved by [`train`].
pub fn load(arch: Arch, weights: &Path) -> Result<(nn::VarStore, nets::Graph), TrainError> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let graph = arch.build(&vs.root(), crate::data::CLASSES.len() as i64);
    vs.load(weights).map_err(|source| TrainError::Tch {
        context: format!("loading {}", weights.display()),
        source,
    })?;
    Ok((vs, graph))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::improved_recipe;

    fn recipe() -> Recipe {
        improved_recipe(Arch::Edge, 3, 1)
    }

    /// `train --epochs 0` used to panic indexing the empty epoch log; it is now refused before any data is read.
    #[test]
    fn zero_epochs_is_an_error_not_a_panic() {
        let r = Recipe {
            epochs: 0,
            ..recipe()
        };
        let out = std::env::temp_dir().join(format!("leukoscope-train-{}", std::process::id()));
        let source = data::TrainSource::Folder("/nonexistent-leukoscope-data".into());
        let err = train(Arch::Edge, &r, &source, &out, Device::Cpu, "test").unwrap_err();
        assert!(matches!(err, TrainError::Recipe(_)), "{err}");
        assert!(err.to_string().contains("--epochs 0"), "{err}");
        assert!(!out.exists(), "nothing is written for a refused recipe");
    }

    #[test]
    fn bad_flags_name_the_flag() {
        assert!(recipe().validate().is_ok());
        let cases = [
            (
                Recipe {
                    batch: 0,
                    ..recipe()
                },
                "--batch",
            ),
            (
                Recipe {
                    val_fraction: 2.0,
                    ..recipe()
                },
                "--val-fraction 2",
            ),
            (
                Recipe {
                    val_fraction: 1.0,
                    ..recipe()
                },
                "--val-fraction 1",
            ),
            (
                Recipe {
                    val_fraction: f64::NAN,
                    ..recipe()
                },
                "--val-fraction",
            ),
            (
                Recipe {
                    lr: 0.0,
                    ..recipe()
                },
                "--lr",
            ),
            (
                Recipe {
                    mixup: -1.0,
                    ..recipe()
                },
                "--mixup",
            ),
            (
                Recipe {
                    label_smoothing: 1.0,
                    ..recipe()
                },
                "--label-smoothing",
            ),
            (
                Recipe {
                    bn_momentum: Some(0.0),
                    ..recipe()
                },
                "--bn-momentum",
            ),
            (
                Recipe {
                    limit_per_class: Some(0),
                    ..recipe()
                },
                "--limit-per-class",
            ),
            (
                Recipe {
                    fold: Some((9, 5)),
                    ..recipe()
                },
                "--fold 9 is not below --folds 5",
            ),
            (
                Recipe {
                    fold: Some((5, 5)),
                    ..recipe()
                },
                "--fold 5",
            ),
            (
                Recipe {
                    fold: Some((0, 1)),
                    ..recipe()
                },
                "--folds 1",
            ),
        ];
        for (r, flag) in cases {
            let err = r.validate().unwrap_err();
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
        let zero_holdout = Recipe {
            val_fraction: 0.0,
            ..recipe()
        };
        assert!(zero_holdout.validate().is_ok(), "0 trains on every smear");
        let last_fold = Recipe {
            fold: Some((4, 5)),
            ..recipe()
        };
        assert!(last_fold.validate().is_ok());
    }
}
