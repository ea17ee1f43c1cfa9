//! Measured quality on the BCCD smears: white-cell detection recall and precision at IoU ≥ 0.5 against the
//! VOC `WBC` boxes of all 364 `dataset-master` frames (and of its `train` / `test` smear sides), and, on the
//! 71 `test` smears of `smear_split.csv`, the share whose annotated white cell is typed as labelled.
//!
//! ```text
//! cargo run --release -p leukoscope --features testing --example bccd_quality -- [--data ../shared/data/blood-cells]
//!     [--model FILE] [--write models/results/bccd.md] [--no-graphcut] [--split train|test|all] [--rbc-px N|auto]
//!     [--audit models/results/bccd-audit.csv [--audit-sheet FILE.png]]
//! ```
//! Prints a Markdown table; with `--write` also writes it (with this command) to the file, keeping whatever
//! follows the file's `<!-- notes: kept by --write -->` line. Exits 0 with a clear skip message when the data
//! set is absent. Needs the `testing` feature: the VOC box reader is a test oracle, not part of the shipped API.
//!
//! `--audit FILE` adds a second detection table against the VOC boxes corrected by FILE (`image,action,x0,y0,
//! x1,y1,note` lines, action `add` or `remove`, `#` comments); the first table always scores the VOC boxes as
//! published. `--audit-sheet` draws each audited frame (half size): VOC boxes green, audit additions blue,
//! removed boxes red, this detector's boxes yellow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use leukoscope::cell::Nucleus;
use leukoscope::rect::Rect;
use leukoscope::segment::{SegmentConfig, Segmenter};
use leukoscope::testing::voc::voc_boxes;
use leukoscope::{preprocess, Classifier, Frame, ModelSource};

#[derive(Default)]
struct Tally {
    frames: usize,
    truth: usize,
    detections: usize,
    hits: usize,
}

impl Tally {
    fn add(&mut self, truth: usize, detections: usize, hits: usize) {
        self.frames += 1;
        self.truth += truth;
        self.detections += detections;
        self.hits += hits;
    }
    fn recall(&self) -> f64 {
        100.0 * self.hits as f64 / self.truth.max(1) as f64
    }
    fn precision(&self) -> f64 {
        100.0 * self.hits as f64 / self.detections.max(1) as f64
    }
}

/// Greedy one-to-one matching by IoU ≥ 0.5: returns matched pairs (truth index, detection index).
fn matches(truth: &[Rect], det: &[Rect]) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        for (j, d) in det.iter().enumerate() {
            let v = t.iou(d);
            if v >= 0.5 {
                pairs.push((v, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut ut, mut ud) = (vec![false; truth.len()], vec![false; det.len()]);
    let mut out = Vec::new();
    for (_, i, j) in pairs {
        if !ut[i] && !ud[j] {
            ut[i] = true;
            ud[j] = true;
            out.push((i, j));
        }
    }
    out
}

/// Where the measured part of the `--write` file ends and hand-written notes begin.
const NOTES: &str = "<!-- notes: kept by --write -->";

/// The Markdown detection table of the `all`, `train` and `test` tallies (empty sides left out).
fn detection_table(title: &str, tallies: [&Tally; 3]) -> String {
    let mut md = format!(
        "| {title} | frames | WBC boxes | detections | matched (IoU ≥ 0.5) | recall | precision |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (label, t) in ["all", "`train` smears", "`test` smears"]
        .iter()
        .zip(tallies)
    {
        if t.frames > 0 {
            md += &format!(
                "| {label} | {} | {} | {} | {} | {:.1} % | {:.1} % |\n",
                t.frames,
                t.truth,
                t.detections,
                t.hits,
                t.recall(),
                t.precision()
            );
        }
    }
    md
}

/// Other classifier inputs for one detected cell, measured beside the device's (training-scale pixels).
const ALTERNATIVES: [&str; 4] = [
    "160 px square around the nucleus box centre (no locate step)",
    "320×240 window around the nucleus box centre, edges repeated, then the Kaggle-image path (locate + 160 px)",
    "128 px square around the located centre, not resized (cells 1.25× as large as the model saw in training)",
    "200 px square around the located centre, resized to 128 (cells 0.8× as large as in training)",
];

fn crop_alternatives(scaled: &Frame, n: &Nucleus) -> [Frame; 4] {
    let (bx, by) = n.rect.centre();
    let (cx, cy) = n.centre;
    let side = |s: u32| {
        preprocess::resize_bilinear(
            &preprocess::crop(scaled, cx, cy, s),
            preprocess::INPUT,
            preprocess::INPUT,
        )
    };
    [
        preprocess::cell_input(scaled, bx, by),
        preprocess::frame_input(&preprocess::window(
            scaled,
            bx,
            by,
            preprocess::FRAME_WIDTH,
            preprocess::FRAME_HEIGHT,
        ))
        .0,
        side(preprocess::INPUT),
        side(200),
    ]
}

/// One correction of the VOC boxes.
struct Correction {
    add: bool,
    bbox: Rect,
}

/// Reads an audit file: image stem → corrections. Errors name the file and line.
fn read_audit(path: &Path) -> Result<HashMap<String, Vec<Correction>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut out: HashMap<String, Vec<Correction>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("{}:{}: {why}: {line}", path.display(), n + 1);
        let f: Vec<&str> = line.splitn(7, ',').collect();
        if f.len() < 6 {
            return Err(bad("expected image,action,x0,y0,x1,y1[,note]"));
        }
        let add = match f[1] {
            "add" => true,
            "remove" => false,
            _ => return Err(bad("action must be `add` or `remove`")),
        };
        let mut edges = [0u32; 4];
        for (v, s) in edges.iter_mut().zip(&f[2..6]) {
            *v = s
                .trim()
                .parse()
                .map_err(|_| bad("box coordinates must be whole pixels"))?;
        }
        let bbox = Rect::from(edges);
        if bbox.is_empty() {
            return Err(bad("empty box"));
        }
        out.entry(f[0].trim().to_string())
            .or_default()
            .push(Correction { add, bbox });
    }
    Ok(out)
}

/// The VOC boxes with a frame's corrections applied (a removal drops the VOC box it overlaps most).
fn corrected(truth: &[Rect], fixes: &[Correction]) -> Vec<Rect> {
    let mut out = truth.to_vec();
    for c in fixes {
        if c.add {
            out.push(c.bbox);
        } else if let Some((i, _)) = out
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.iou(&c.bbox)))
            .filter(|&(_, v)| v >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            out.remove(i);
        }
    }
    out
}

/// Draws a 2-pixel box outline on a half-size tile.
fn draw_box(img: &mut image::RgbImage, b: Rect, c: [u8; 3]) {
    let (w, h) = img.dimensions();
    let [x0, y0, x1, y1] = <[u32; 4]>::from(b).map(|v| v / 2);
    let (x1, y1) = (
        x1.saturating_sub(1).min(w - 1),
        y1.saturating_sub(1).min(h - 1),
    );
    for t in 0..2 {
        for x in x0..=x1 {
            img.put_pixel(x, (y0 + t).min(h - 1), image::Rgb(c));
            img.put_pixel(x, y1.saturating_sub(t), image::Rgb(c));
        }
        for y in y0..=y1 {
            img.put_pixel((x0 + t).min(w - 1), y, image::Rgb(c));
            img.put_pixel(x1.saturating_sub(t), y, image::Rgb(c));
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let data = PathBuf::from(opt("--data").unwrap_or_else(|| "../shared/data/blood-cells".into()));
    let root = data.join("dataset-master");
    if !root.join("JPEGImages").is_dir() {
        println!(
            "skipping: BCCD data not found at {} (pass --data DIR holding dataset-master/)",
            root.display()
        );
        return std::process::ExitCode::SUCCESS;
    }
    let mut config = SegmentConfig::default();
    if args.iter().any(|a| a == "--no-graphcut") {
        config.graphcut = None;
    }
    // `--set name=value` overrides a detection setting (for tuning on the `train` side).
    for (i, a) in args.iter().enumerate() {
        if a != "--set" {
            continue;
        }
        let Some((k, v)) = args.get(i + 1).and_then(|kv| kv.split_once('=')) else {
            continue;
        };
        let v: u32 = v.parse().unwrap_or(0);
        match k {
            "k" => config.kmeans.k = v as usize,
            "sqrt_weights" => config.kmeans.sqrt_weights = v != 0,
            "min_contrast" => config.min_contrast = v as i32,
            "retry_one_more_cluster" => config.retry_one_more_cluster = v != 0,
            "min_lobe" => config.min_lobe = v,
            "lobe_gap" => config.lobe_gap = v,
            "cell_radius" => config.cell_radius = v,
            "max_nucleus_side" => config.max_nucleus_side = v,
            "min_area" => config.min_area = v,
            "cell_margin" => config.cell_margin = v,
            "min_cell_side" => config.min_cell_side = v,
            "accept_darker_nucleus" => config.accept_darker_nucleus = v != 0,
            "white_balance" => config.white_balance = (v > 0).then_some(v),
            _ => eprintln!("unknown setting {k}"),
        }
    }
    let split_only = opt("--split").unwrap_or_else(|| "all".into());

    // smear_split.csv: image,category,split (basophil smears have a side but no class the model knows).
    let mut side: HashMap<String, (String, String)> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(root.join("smear_split.csv")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let [img, cat, split] = f[..] {
                side.insert(
                    img.to_string(),
                    (split.trim().to_string(), cat.trim().to_string()),
                );
            }
        }
    }
    let audit = match opt("--audit")
        .map(|p| read_audit(Path::new(&p)))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut sheet: Vec<image::RgbImage> = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(root.join("JPEGImages"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".jpg"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();

    let classifier = match Classifier::load(
        &opt("--model").map_or(ModelSource::Embedded, |p| ModelSource::File(p.into())),
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            println!("typing skipped: model unavailable: {e}");
            None
        }
    };

    // `--rbc-px N|auto`: each frame brought to the training scale by its red cells (the scale step of
    // `count --rbc-px`), to the model's reference diameter; a frame whose red cells cannot be measured is
    // scaled by its size and counted.
    let rbc_px: Option<leukoscope::scale::RbcPx> = match opt("--rbc-px").map(|v| v.parse()) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            eprintln!("error: --rbc-px: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let reference_px = classifier
        .as_ref()
        .map_or(preprocess::REFERENCE_RBC_PX, Classifier::reference_rbc_px);
    let mut unmeasured = 0usize;
    let mut seg = Segmenter::new(config);
    let (mut all, mut train, mut test) = (Tally::default(), Tally::default(), Tally::default());
    let mut audited = [Tally::default(), Tally::default(), Tally::default()];
    let (mut typed_ok, mut typed_ok_identified, mut typed_n, mut typed_found) = (0, 0, 0, 0);
    let mut alt_ok = [0usize; ALTERNATIVES.len()];
    let mut seconds = 0f64;
    let mut misses = Vec::new();
    for name in &names {
        let s = side.get(name).map(|(s, _)| s.as_str()).unwrap_or("");
        if split_only != "all" && s != split_only {
            continue;
        }
        let path = root.join("JPEGImages").join(name);
        let frame = match Frame::open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let xml = std::fs::read_to_string(
            root.join("Annotations")
                .join(Path::new(name).with_extension("xml")),
        )
        .unwrap_or_default();
        let truth = voc_boxes(&xml, "WBC");
        let t0 = Instant::now();
        let scaling = match rbc_px.map(|r| r.diameter(&frame)) {
            None => preprocess::Scaling::FrameSize,
            Some(Ok(d)) => preprocess::Scaling::Rbc {
                rbc_px: d,
                reference_px,
            },
            Some(Err(_)) => {
                unmeasured += 1;
                preprocess::Scaling::FrameSize
            }
        };
        let found = seg.segment_with(&frame, scaling);
        seconds += t0.elapsed().as_secs_f64();
        let det: Vec<Rect> = found.cells.iter().map(|c| c.rect).collect();
        let m = matches(&truth, &det);
        if m.len() < truth.len() || m.len() < det.len() {
            misses.push(format!(
                "{name}: truth {truth:?} found {det:?} centroids {:?} nucleus {}",
                found.centroids, found.nucleus_cluster
            ));
        }
        for t in [
            Some(&mut all),
            (s == "train").then_some(&mut train),
            (s == "test").then_some(&mut test),
        ]
        .into_iter()
        .flatten()
        {
            t.add(truth.len(), det.len(), m.len());
        }
        if let Some(audit) = &audit {
            let stem = name.trim_end_matches(".jpg");
            let fixes = audit.get(stem).map_or(&[][..], |v| &v[..]);
            let fixed = corrected(&truth, fixes);
            let hits = matches(&fixed, &det).len();
            if hits < fixed.len() || hits < det.len() {
                misses.push(format!("{name} (audited): truth {fixed:?} found {det:?}"));
            }
            let [a, tr, te] = &mut audited;
            a.add(fixed.len(), det.len(), hits);
            match s {
                "train" => tr.add(fixed.len(), det.len(), hits),
                "test" => te.add(fixed.len(), det.len(), hits),
                _ => {}
            }
            if !fixes.is_empty() && opt("--audit-sheet").is_some() {
                let mut img = image::imageops::resize(
                    &image::RgbImage::from_raw(
                        frame.width(),
                        frame.height(),
                        frame.data().to_vec(),
                    )
                    .expect("frame geometry"),
                    frame.width() / 2,
                    frame.height() / 2,
                    image::imageops::FilterType::Triangle,
                );
                for b in &truth {
                    draw_box(&mut img, *b, [0, 200, 0]);
                }
                for c in fixes {
                    draw_box(
                        &mut img,
                        c.bbox,
                        if c.add { [0, 60, 255] } else { [230, 0, 0] },
                    );
                }
                for b in &det {
                    let inner = Rect {
                        x0: b.x0 + 6,
                        y0: b.y0 + 6,
                        x1: b.x1.saturating_sub(6),
                        y1: b.y1.saturating_sub(6),
                    };
                    draw_box(&mut img, inner, [240, 200, 0]);
                }
                sheet.push(img);
            }
        }
        // The class index in the model's card (none for basophil smears with a four-class model).
        let labelled = side
            .get(name)
            .and_then(|(s, c)| Some((s.as_str(), classifier.as_ref()?.classes().index(c)?)));
        if let (Some(cl), Some(("test", label))) = (&classifier, labelled) {
            typed_n += 1;
            // The annotated white cell: the detection matched to a VOC WBC box (single-label smears).
            if let Some(n) = m.first().and_then(|&(_, j)| found.cells[j].nucleus) {
                typed_found += 1;
                let input = preprocess::cell_input(&found.scaled, n.centre.0, n.centre.1);
                if let Ok(p) = cl.classify_input(&input) {
                    if p.predicted == label {
                        typed_ok += 1;
                        if p.confidence >= cl.card().unidentified_threshold {
                            typed_ok_identified += 1;
                        }
                    }
                }
                // Other classifier inputs for the same cell, for the comparison table.
                for (k, alt) in crop_alternatives(&found.scaled, &n).iter().enumerate() {
                    if cl.classify_input(alt).is_ok_and(|p| p.predicted == label) {
                        alt_ok[k] += 1;
                    }
                }
            }
        }
    }
    if std::env::var_os("BCCD_MISSES").is_some() {
        misses.iter().for_each(|m| eprintln!("{m}"));
    }
    let mut md = detection_table("BCCD frames (dataset-master)", [&all, &train, &test]);
    if audit.is_some() {
        md += "\nThe same detections against the VOC boxes corrected by the audit file (`--audit`, see its header):\n\n";
        let [a, tr, te] = &audited;
        md += &detection_table("BCCD frames, audited boxes", [a, tr, te]);
    }
    if let (Some(out), false) = (opt("--audit-sheet"), sheet.is_empty()) {
        let (tw, th) = sheet[0].dimensions();
        let cols = 3u32;
        let rows = (sheet.len() as u32).div_ceil(cols);
        let mut all =
            image::RgbImage::from_pixel(tw * cols, th * rows, image::Rgb([255, 255, 255]));
        for (i, t) in sheet.iter().enumerate() {
            let (c, r) = (i as u32 % cols, i as u32 / cols);
            image::imageops::overlay(&mut all, t, (c * tw) as i64, (r * th) as i64);
        }
        if let Err(e) = all.save(&out) {
            eprintln!("error: {out}: cannot write: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    md += &format!(
        "\nSegmentation time: {:.1} ms per 640×480 frame (mean over {} frames, this machine, graph cut {}). \
         Segmenter working set after them: {:.0} KiB of buffers kept between frames.\n",
        1000.0 * seconds / all.frames.max(1) as f64,
        all.frames,
        if config.graphcut.is_some() { "on" } else { "off" },
        seg.working_set_bytes() as f64 / 1024.0
    );
    if let Some(r) = rbc_px {
        md += &format!(
            "\nScale step in the path: `--rbc-px {}` to a reference of {reference_px:.1} px; red cells \
             unmeasurable in {unmeasured} of {} frames (those scaled by their size). The time above is the \
             segmentation's, after the estimate.\n",
            match r {
                leukoscope::scale::RbcPx::Auto => "auto".to_string(),
                leukoscope::scale::RbcPx::Fixed(d) => d.to_string(),
            },
            all.frames
        );
    }
    if let Some(cl) = &classifier {
        md += &format!(
            "\n| `test` smears typed (model `{}`) | smears | WBC found | typed as labelled | typed as labelled and above threshold {:.2} |\n|---|---|---|---|---|\n| end to end | {typed_n} | {typed_found} | {typed_ok} ({:.1} %) | {typed_ok_identified} ({:.1} %) |\n",
            cl.card().name,
            cl.card().unidentified_threshold,
            100.0 * typed_ok as f64 / typed_n.max(1) as f64,
            100.0 * typed_ok_identified as f64 / typed_n.max(1) as f64,
        );
        md += "\nThe same cells typed from other classifier inputs (same model; the first row is the device's):\n\n\
               | classifier input for a detected cell | typed as labelled |\n|---|---|\n";
        md += &format!(
            "| {} | {typed_ok} ({:.1} %) |\n",
            "160 px square around the located nucleus centre, resized to 128 (the device)",
            100.0 * typed_ok as f64 / typed_n.max(1) as f64
        );
        for (name, ok) in ALTERNATIVES.iter().zip(alt_ok) {
            md += &format!(
                "| {name} | {ok} ({:.1} %) |\n",
                100.0 * ok as f64 / typed_n.max(1) as f64
            );
        }
    } else {
        md += "\nTyping of the `test` smears: not measured (no usable model).\n";
    }
    println!("{md}");
    if let Some(out) = opt("--write") {
        let cmd = format!(
            "cargo run --release -p leukoscope --features testing --example bccd_quality -- {}",
            args.join(" ")
        );
        let text = format!(
            "# BCCD end-to-end quality\n\nMeasured by\n\n```\n{cmd}\n```\n\nGoals: recall ≥ 99 %, precision ≥ 98 %, typed ≥ 95 %. \
             Detection settings are the `SegmentConfig` defaults; they were tuned on the `train` side only (one structural fix, below, was found on `test` frames).\n\n{md}"
        );
        // Hand-written notes after the marker survive a rewrite.
        let notes = std::fs::read_to_string(&out)
            .ok()
            .and_then(|old| old.find(NOTES).map(|i| old[i..].to_string()))
            .unwrap_or_else(|| format!("{NOTES}\n"));
        let text = format!("{text}\n{notes}");
        if let Err(e) = std::fs::write(&out, text) {
            eprintln!("error: {out}: cannot write: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
