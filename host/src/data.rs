//! The Kaggle "blood-cells" layout, the smear-grouped validation split, and decoding into model inputs.
//!
//! Images are decoded and cut by the device's own [`leukoscope::preprocess`] (scale, locate, crop, resize), so
//! training sees exactly the `u8` inputs the device will feed; only normalisation and augmentation happen in
//! tch. A random split of TRAIN is leaky (augmented copies of one smear land on both sides), so validation
//! holds out whole source smears (`dataset2-master/source_smears.csv`), stratified by class.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use leukoscope::preprocess;
use leukoscope::{Classes, Frame};
use tch::{Device, Kind, Tensor};

/// The four white-cell types of the Kaggle data set (its folder names), in the order the host's models
/// output them. The device takes its classes from each model's card; this list is the host's training
/// data, written into the cards it exports ([`kaggle_classes`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Class {
    /// Eosinophil: bilobed nucleus, orange granules.
    Eosinophil,
    /// Lymphocyte: round nucleus filling the cell.
    Lymphocyte,
    /// Monocyte: large, kidney-shaped nucleus.
    Monocyte,
    /// Neutrophil: 2–5 nuclear lobes.
    Neutrophil,
}

/// All Kaggle classes in output order.
pub const CLASSES: [Class; 4] = [
    Class::Eosinophil,
    Class::Lymphocyte,
    Class::Monocyte,
    Class::Neutrophil,
];

impl Class {
    /// The data set's folder name, e.g. `"NEUTROPHIL"`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Eosinophil => "EOSINOPHIL",
            Class::Lymphocyte => "LYMPHOCYTE",
            Class::Monocyte => "MONOCYTE",
            Class::Neutrophil => "NEUTROPHIL",
        }
    }

    /// Parses a data set folder name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Class> {
        CLASSES
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Position in the model output.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The Kaggle classes as a model card lists them.
pub fn kaggle_classes() -> Classes {
    Classes::new(CLASSES.map(Class::name)).expect("the four Kaggle names are a valid class list")
}

/// Where the shared data usually lives, relative to the repository root.
pub const DEFAULT_DATA: &str = "../shared/data/blood-cells";

/// Why data could not be listed or read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A folder or file is missing or unreadable.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CSV row is malformed.
    #[error("{path}:{line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A pack file (see [`crate::pack`]) is malformed.
    #[error("{path}: {reason}")]
    Pack {
        /// The pack.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Nothing usable was found.
    #[error("{0}")]
    Empty(String),
}

/// Where TRAIN comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainSource {
    /// The Kaggle layout under this root (exact pixels).
    Folder(PathBuf),
    /// A pack written by `leukoscope-train pack` (JPEG-recompressed inputs, for a remote GPU).
    Pack(PathBuf),
}

impl std::fmt::Display for TrainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainSource::Folder(p) => write!(f, "{}", p.display()),
            TrainSource::Pack(p) => write!(f, "{} (pack)", p.display()),
        }
    }
}

/// Finds the data root: the given path, else [`DEFAULT_DATA`] from the current directory or the repo root.
pub fn resolve_root(given: Option<&Path>) -> Result<PathBuf, DataError> {
    if let Some(p) = given {
        return if p.is_dir() {
            Ok(p.to_owned())
        } else {
            Err(DataError::Empty(format!(
                "{}: data folder not found",
                p.display()
            )))
        };
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for base in [PathBuf::from("."), repo] {
        let p = base.join(DEFAULT_DATA);
        if p.is_dir() {
            return Ok(p);
        }
    }
    Err(DataError::Empty(format!(
        "no --data given and {DEFAULT_DATA} not found (from the current directory or the repository root)"
    )))
}

/// One labelled image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The JPEG.
    pub path: PathBuf,
    /// `TRAIN`, `TEST` or `TEST_SIMPLE`.
    pub split: String,
    /// The label.
    pub class: Class,
    /// File name within the class folder (not unique across splits).
    pub file: String,
}

/// Lists `dataset2-master/images/<split>/<CLASS>/*.jpeg`, sorted by class then file name.
pub fn list(root: &Path, split: &str) -> Result<Vec<Sample>, DataError> {
    let dir = root.join("dataset2-master/images").join(split);
    let mut out = Vec::new();
    for class in CLASSES {
        let cdir = dir.join(class.name());
        let rd = std::fs::read_dir(&cdir).map_err(|source| DataError::Io {
            path: cdir.clone(),
            source,
        })?;
        let mut files: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let l = n.to_ascii_lowercase();
                l.ends_with(".jpeg") || l.ends_with(".jpg") || l.ends_with(".png")
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|file| Sample {
            path: cdir.join(&file),
            split: split.to_string(),
            class,
            file,
        }));
    }
    if out.is_empty() {
        return Err(DataError::Empty(format!("{}: no images", dir.display())));
    }
    Ok(out)
}

/// `(split, class, file)` → source smear, from `dataset2-master/source_smears.csv`.
pub fn source_smears(root: &Path) -> Result<HashMap<(String, Class, String), String>, DataError> {
    let path = root.join("dataset2-master/source_smears.csv");
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = |reason: String| DataError::Csv {
            path: path.clone(),
            line: i + 1,
            reason,
        };
        if f.len() < 4 {
            return Err(bad(format!(
                "expected split,class,file,source_smear,... got {line:?}"
            )));
        }
        let class =
            Class::from_name(f[1]).ok_or_else(|| bad(format!("unknown class {:?}", f[1])))?;
        map.insert(
            (f[0].to_string(), class, f[2].to_string()),
            f[3].to_string(),
        );
    }
    Ok(map)
}

/// SplitMix64: a tiny, seedable, portable generator for shuffles (same seed ⇒ same order everywhere).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
}

/// Indices of a smear-grouped, class-stratified split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training indices into the sample list.
    pub train: Vec<usize>,
    /// Validation indices.
    pub val: Vec<usize>,
    /// The held-out smears per class.
    pub val_smears: BTreeMap<Class, BTreeSet<String>>,
}

/// Holds out about `fraction` of each class's source smears (at least one, never all) with every image
/// made from them; `fraction <= 0` holds out nothing. Images without a known smear stay in training, with a
/// warning count returned by the caller.
pub fn grouped_split(
    samples: &[Sample],
    smears: &HashMap<(String, Class, String), String>,
    fraction: f64,
    seed: u64,
) -> Split {
    split_by(samples, smears, seed, |all| {
        if fraction <= 0.0 {
            return Vec::new();
        }
        let k = ((all.len() as f64 * fraction).round() as usize)
            .clamp(1.min(all.len()), all.len().saturating_sub(1));
        all[..k].to_vec()
    })
}

/// Grouped k-fold: each class's source smears, shuffled with `seed`, are dealt in turn into `folds` folds, and
/// fold `fold` (0-based) is held out. Over `fold = 0..folds` every smear is validated exactly once, so the
/// mean validation accuracy of a recipe over the folds rests on all smears instead of one fifth of them.
pub fn grouped_fold(
    samples: &[Sample],
    smears: &HashMap<(String, Class, String), String>,
    folds: usize,
    fold: usize,
    seed: u64,
) -> Split {
    let folds = folds.max(1);
    split_by(samples, smears, seed, |all| {
        all.iter()
            .enumerate()
            .filter(|(j, _)| j % folds == fold % folds)
            .map(|(_, s)| *s)
            .collect()
    })
}

fn split_by(
    samples: &[Sample],
    smears: &HashMap<(String, Class, String), String>,
    seed: u64,
    held: impl for<'a> Fn(&[&'a String]) -> Vec<&'a String>,
) -> Split {
    let mut rng = Rng::new(seed);
    let mut val_smears = BTreeMap::new();
    for class in CLASSES {
        let set: BTreeSet<&String> = samples
            .iter()
            .filter(|s| s.class == class)
            .filter_map(|s| smears.get(&(s.split.clone(), s.class, s.file.clone())))
            .collect();
        let mut all: Vec<&String> = set.into_iter().collect();
        rng.shuffle(&mut all);
        val_smears.insert(
            class,
            held(&all)
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
        );
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        let held = smears
            .get(&(s.split.clone(), s.class, s.file.clone()))
            .is_some_and(|sm| val_smears[&s.class].contains(sm));
        if held {
            val.push(i)
        } else {
            train.push(i)
        }
    }
    Split {
        train,
        val,
        val_smears,
    }
}

/// The images a `--split` names: a split folder of the data set, or `VAL`, the smear-grouped validation part
/// of TRAIN (the smears a training run with the same seed and fraction held out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Subset {
    /// All of `TRAIN`.
    #[value(name = "TRAIN")]
    Train,
    /// The validation smears of `TRAIN` (see [`grouped_split`]).
    #[value(name = "VAL")]
    Val,
    /// `TEST`: augmentations of the 71 test smears.
    #[value(name = "TEST")]
    Test,
    /// `TEST_SIMPLE`: the 71 test smears, unaugmented.
    #[value(name = "TEST_SIMPLE")]
    TestSimple,
}

impl Subset {
    /// The name as the data set and the model card's `metrics` spell it: `TRAIN`, `VAL`, `TEST`, `TEST_SIMPLE`.
    pub fn name(self) -> &'static str {
        match self {
            Subset::Train => "TRAIN",
            Subset::Val => "VAL",
            Subset::Test => "TEST",
            Subset::TestSimple => "TEST_SIMPLE",
        }
    }

    /// The samples under `root`; `VAL` is the validation side of [`grouped_split`] with `val_fraction` and
    /// `seed`, which must be those of the training run.
    pub fn samples(
        self,
        root: &Path,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Vec<Sample>, DataError> {
        if self != Subset::Val {
            return list(root, self.name());
        }
        let all = list(root, Subset::Train.name())?;
        let smears = source_smears(root)?;
        let split = grouped_split(&all, &smears, val_fraction, seed);
        Ok(split.val.iter().map(|&i| all[i].clone()).collect())
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decoded model inputs for a list of samples.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `N × INPUT × INPUT × 3` bytes (HWC per image).
    pub pixels: Vec<u8>,
    /// Class index per image.
    pub labels: Vec<i64>,
    /// Index into the sample list per image (skipped files are absent).
    pub index: Vec<usize>,
    /// Files that could not be decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Inputs {
    /// Number of decoded images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether nothing was decoded.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `(images u8 [N, H, W, 3], labels i64 [N])` on the CPU.
    pub fn tensors(&self) -> (Tensor, Tensor) {
        let side = preprocess::INPUT as i64;
        let x = Tensor::from_slice(&self.pixels).view([self.len() as i64, side, side, 3]);
        (x, Tensor::from_slice(&self.labels))
    }
}

/// Decodes and preprocesses samples on `threads` threads. A file that fails to decode is skipped with a
/// warning naming it, never a crash.
pub fn load_inputs(samples: &[Sample], threads: usize) -> Inputs {
    load_with(samples, threads, |smp| {
        Frame::open(&smp.path)
            .map(|f| preprocess::frame_input(&f).0.data().to_vec())
            .map_err(|e| e.to_string())
    })
}

/// Decodes each sample's model input with `decode` on `threads` threads, in order; an error (which should name
/// the file) skips that sample with a warning. The common part of [`load_inputs`] and
/// [`crate::pack::Pack::load_inputs`].
pub fn load_with(
    samples: &[Sample],
    threads: usize,
    decode: impl Fn(&Sample) -> Result<Vec<u8>, String> + Sync,
) -> Inputs {
    let chunk = samples.len().div_ceil(threads.max(1)).max(1);
    let decode = &decode;
    let decoded: Vec<Result<Vec<u8>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(decode).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread"))
            .collect()
    });
    let mut out = Inputs::default();
    for (i, r) in decoded.into_iter().enumerate() {
        match r {
            Ok(px) => {
                out.pixels.extend_from_slice(&px);
                out.labels.push(samples[i].class.index() as i64);
                out.index.push(i);
            }
            Err(e) => {
                eprintln!("warning: skipping {e}");
                out.skipped.push((samples[i].path.clone(), e));
            }
        }
    }
    out
}

/// Normalises a `u8 [N, H, W, 3]` batch into the model's `f32 [N, 3, H, W]` input, with the contract's
/// mean and std (the tch twin of [`leukoscope::preprocess::normalize`]).
pub fn normalize_batch(x: &Tensor) -> Tensor {
    normalize01(&(x.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0))
}

/// Normalises an `f32 [N, 3, H, W]` batch in `[0, 1]` (what [`crate::augment::lab_shift`] returns) with the
/// contract's mean and std, as [`normalize_batch`] does for `u8` input.
pub fn normalize01(x: &Tensor) -> Tensor {
    let dev = x.device();
    let mean = Tensor::from_slice(&preprocess::MEAN)
        .to_device(dev)
        .view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&preprocess::STD)
        .to_device(dev)
        .view([1, 3, 1, 1]);
    (x - mean) / std
}

/// Moves a batch to `device` and normalises it.
pub fn batch_to(x: &Tensor, device: Device) -> Tensor {
    normalize_batch(&x.to_device(device))
}

/// Calibration inputs for int8 quantization: `n` TRAIN images from the training side of the smear-grouped
/// split (never a validation smear, so that validation stays clean for choosing between calibrators), drawn
/// round-robin over the classes in a seeded order, preprocessed and normalised exactly as the device does
/// (in the card's stain reference `stain` when it has one).
pub fn calibration_inputs(
    root: &Path,
    n: usize,
    seed: u64,
    val_fraction: f64,
    stain: Option<&leukoscope::stain::StainNorm>,
) -> Result<Vec<Vec<f32>>, DataError> {
    let all = list(root, "TRAIN")?;
    let smears = source_smears(root)?;
    let split = grouped_split(&all, &smears, val_fraction, seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); CLASSES.len()];
    for &i in &split.train {
        by_class[all[i].class.index()].push(i);
    }
    let mut rng = Rng::new(seed ^ 0xca11_b4a7);
    for c in &mut by_class {
        rng.shuffle(c);
    }
    let mut picked = Vec::with_capacity(n);
    let mut k = 0;
    while picked.len() < n && by_class.iter().any(|c| k < c.len()) {
        for c in &by_class {
            if let (Some(&i), true) = (c.get(k), picked.len() < n) {
                picked.push(all[i].clone());
            }
        }
        k += 1;
    }
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let inputs = load_inputs(&picked, threads);
    let side = preprocess::INPUT;
    Ok(inputs
        .pixels
        .chunks_exact((side * side * 3) as usize)
        .map(|px| {
            let frame = Frame::new(side, side, px.to_vec()).expect("input-sized frame");
            leukoscope::stain::input_chw(stain, &frame)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(class: Class, file: &str) -> Sample {
        Sample {
            path: file.into(),
            split: "TRAIN".into(),
            class,
            file: file.into(),
        }
    }

    #[test]
    fn grouped_split_never_shares_a_smear() {
        let mut samples = Vec::new();
        let mut smears = HashMap::new();
        for class in CLASSES {
            for i in 0..200 {
                let f = format!("{}_{i}.jpeg", class.name());
                smears.insert(
                    ("TRAIN".to_string(), class, f.clone()),
                    format!("{}-smear{}", class.name(), i % 10),
                );
                samples.push(sample(class, &f));
            }
        }
        let split = grouped_split(&samples, &smears, 0.2, 7);
        let smear_of = |i: usize| {
            smears[&(
                "TRAIN".to_string(),
                samples[i].class,
                samples[i].file.clone(),
            )]
                .clone()
        };
        let tr: BTreeSet<String> = split.train.iter().map(|&i| smear_of(i)).collect();
        let va: BTreeSet<String> = split.val.iter().map(|&i| smear_of(i)).collect();
        assert!(tr.is_disjoint(&va));
        for class in CLASSES {
            assert_eq!(split.val_smears[&class].len(), 2, "20 % of 10 smears");
            assert!(split.val.iter().any(|&i| samples[i].class == class));
        }
        assert_eq!(split.train.len() + split.val.len(), samples.len());
        assert_eq!(
            split,
            grouped_split(&samples, &smears, 0.2, 7),
            "same seed, same split"
        );
        assert_ne!(split.val, grouped_split(&samples, &smears, 0.2, 8).val);
        let none = grouped_split(&samples, &smears, 0.0, 7);
        assert!(none.val.is_empty() && none.train.len() == samples.len());
    }

    #[test]
    fn grouped_folds_validate_every_smear_once() {
        let mut samples = Vec::new();
        let mut smears = HashMap::new();
        for class in CLASSES {
            for i in 0..60 {
                let f = format!("{}_{i}.jpeg", class.name());
                smears.insert(
                    ("TRAIN".to_string(), class, f.clone()),
                    format!("{}-smear{}", class.name(), i % 12),
                );
                samples.push(sample(class, &f));
            }
        }
        let mut seen = vec![0usize; samples.len()];
        for k in 0..5 {
            let split = grouped_fold(&samples, &smears, 5, k, 3);
            assert_eq!(split.train.len() + split.val.len(), samples.len());
            for class in CLASSES {
                let n = split.val_smears[&class].len();
                assert!(n == 2 || n == 3, "12 smears in 5 folds: {n}");
            }
            for &i in &split.val {
                seen[i] += 1;
                assert!(split.val_smears[&samples[i].class].contains(&format!(
                    "{}-smear{}",
                    samples[i].class.name(),
                    samples[i]
                        .file
                        .split(['_', '.'])
                        .nth(1)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                        % 12
                )));
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "each image validated once");
    }

    #[test]
    fn host_and_device_normalise_identically() {
        let data: Vec<u8> = (0..128u32 * 128 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = Frame::new(128, 128, data.clone()).unwrap();
        let device = preprocess::normalize(&img);
        let host = normalize_batch(&Tensor::from_slice(&data).view([1, 128, 128, 3]));
        let host: Vec<f32> = Vec::try_from(host.contiguous().view([-1])).unwrap();
        assert_eq!(host.len(), device.len());
        let diff = host
            .iter()
            .zip(&device)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-6, "max diff {diff}");
    }

    #[test]
    fn corrupt_file_is_skipped_and_named() {
        let dir = std::env::temp_dir().join(format!("leuko-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.jpeg");
        std::fs::write(&bad, b"\xFF\xD8\xFF garbage").unwrap();
        let inputs = load_inputs(
            &[Sample {
                path: bad.clone(),
                split: "TRAIN".into(),
                class: Class::Monocyte,
                file: "bad.jpeg".into(),
            }],
            2,
        );
        assert!(inputs.is_empty());
        assert_eq!(inputs.skipped.len(), 1);
        assert!(inputs.skipped[0].1.contains("bad.jpeg"));
    }
}
