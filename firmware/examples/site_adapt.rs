//! Site calibration measured on a second lab: the embedded model zero-shot, then `adapt` (each method) on
//! 5 / 10 / 20 cells per class drawn at random (at most half of a class), evaluated on the rest, 10 draws.
//!
//! ```text
//! cargo run --release -p leukoscope --example site_adapt -- \
//!     --data ../shared/data/wbc-jiangxi/images --out models/results/site-jiangxi
//! ```
//!
//! `--model FILE.onnx` measures a candidate (its card beside it) instead of the embedded default;
//! `--zero-shot` stops after the zero-shot row; `--methods` picks the methods measured (default all three)
//! and `--views dihedral` fits each head on the 8 flips and quarter turns of every calibration cell.
//! `--untyped` draws 4 × 5 / 10 / 20 cells at random from all classes together and gives them untyped (for
//! `--methods norm`, which needs no types).
//!
//! Writes `<out>.json` and `<out>.md`. Classes the model does not know (the second lab's one basophil) are
//! left out and counted in the output. Nothing here is fitted to the evaluation cells of a draw: the
//! adaptation sees only its calibration cells (its prior strength is chosen by cross-validation on them).

use std::fmt::Write as _;
use std::path::PathBuf;

use leukoscope::adapt::{self, Method, SiteCells, Views};
use leukoscope::{Classifier, Frame, ModelSource};

/// The measurement's inputs.
#[derive(clap::Parser)]
struct Args {
    /// The second lab's images folder (one subfolder per class).
    #[arg(long, default_value = "../shared/data/wbc-jiangxi/images")]
    data: PathBuf,
    /// Output path without extension: `<out>.md` and `<out>.json`.
    #[arg(long, default_value = "models/results/site-jiangxi")]
    out: PathBuf,
    /// A candidate model (its card beside it) instead of the embedded default.
    #[arg(long, value_name = "FILE.onnx")]
    model: Option<PathBuf>,
    /// Stop after the zero-shot row.
    #[arg(long)]
    zero_shot: bool,
    /// The methods measured (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "head,colour-head,norm-head", value_parser = parse_method)]
    methods: Vec<Method>,
    /// The views of each calibration cell a head is fitted on: one or dihedral.
    #[arg(long, default_value = "one", value_parser = parse_views)]
    views: Views,
    /// Draw the calibration cells from all classes together (as many as the classes × cells per class) and
    /// give them untyped.
    #[arg(long)]
    untyped: bool,
    /// Keep only the crops of one background look (white or yellow plasma, told apart without types; see
    /// [`LOOKS`]): a lab with two stainings measured as two sites, as each clinic has one.
    #[arg(long, value_parser = ["white", "yellow"])]
    background: Option<String>,
}

fn parse_method(s: &str) -> Result<Method, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("{s}: {e}"))
}

fn parse_views(s: &str) -> Result<Views, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("{s}: {e}"))
}

const SIZES: [usize; 3] = [5, 10, 20];
const DRAWS: u64 = 10;

/// Per-class accuracy of `c` on `cells[class]`.
fn score(c: &Classifier, cells: &[Vec<(PathBuf, Frame)>]) -> (f64, Vec<f64>) {
    let mut hit = vec![0usize; cells.len()];
    for (k, v) in cells.iter().enumerate() {
        for (p, f) in v {
            let pred = c
                .classify_frame(f)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            hit[k] += usize::from(pred.predicted == k);
        }
    }
    let n: usize = cells.iter().map(Vec::len).sum();
    let per = hit
        .iter()
        .zip(cells)
        .map(|(h, v)| *h as f64 / v.len().max(1) as f64)
        .collect();
    (hit.iter().sum::<usize>() as f64 / n as f64, per)
}

/// The two backgrounds a lab's crops may show, told apart without their types: a crop's plasma (its
/// brightest 8-px square, [`leukoscope::preprocess::white_point`]) is *yellow* when its blue is below
/// [`YELLOW_BLUE`] of its red, else *white*. The second lab has both: about a third of its crops are white
/// with violet nuclei, the rest yellow with brown-red ones (two stainings or two microscopes in one set).
const LOOKS: [&str; 2] = ["white background", "yellow background"];
/// Blue over red of a crop's plasma below which its background is yellow.
const YELLOW_BLUE: f64 = 0.85;

fn look(frame: &Frame) -> usize {
    let [r, _, b] = leukoscope::preprocess::white_point(frame, 8);
    usize::from(b < YELLOW_BLUE * r)
}

/// splitmix64: a fixed, seeded shuffle (no dependency).
fn shuffle<T>(v: &mut [T], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
    (m, var.sqrt())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Args {
        data,
        out,
        model,
        zero_shot: zero_shot_only,
        methods,
        views,
        untyped,
        background,
    } = clap::Parser::parse_from(&args);
    let keep_look = background.map(|b| usize::from(b == "yellow"));
    if let Some(m) = methods.iter().find(|m| untyped && m.fits_head()) {
        anyhow::bail!("--untyped: {m} fits a new head and needs typed cells; measure norm");
    }
    let source = model.map_or(ModelSource::Embedded, ModelSource::File);
    let base = source.load()?;
    let classes = base.card.classes.clone();

    // Every cell of the known classes; other class folders are counted and left out.
    let mut all: Vec<Vec<(PathBuf, Frame)>> = vec![Vec::new(); classes.len()];
    let mut left_out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let files = leukoscope::inputs::list_images(&d)?;
        match classes.index(&name) {
            Some(k) => {
                for f in files {
                    let frame = Frame::open(&f)?;
                    if keep_look.is_none_or(|l| look(&frame) == l) {
                        all[k].push((f, frame));
                    }
                }
            }
            None => left_out.push(format!("{name} ({} cells)", files.len())),
        }
    }
    let base_classifier = Classifier::from_verified(base.clone())?;
    let (zs, zs_per) = score(&base_classifier, &all);
    eprintln!("zero-shot {:.1} %", 100.0 * zs);
    // Zero-shot on each background look.
    // (cells, overall, per class, cells per class) for each look.
    let by_look: Vec<(usize, f64, Vec<f64>, Vec<usize>)> = (0..LOOKS.len())
        .map(|l| {
            let part: Vec<Vec<(PathBuf, Frame)>> = all
                .iter()
                .map(|v| v.iter().filter(|(_, f)| look(f) == l).cloned().collect())
                .collect();
            let counts: Vec<usize> = part.iter().map(Vec::len).collect();
            let (o, per) = score(&base_classifier, &part);
            (counts.iter().sum(), o, per, counts)
        })
        .collect();

    let mut md = String::new();
    let names: Vec<&str> = classes.iter().collect();
    writeln!(md, "# Site calibration measured on {}\n", data.display())?;
    writeln!(
        md,
        "Base: {} `{}`. Cells per class: {}. Left out (not a model class): {}.\n",
        match &source {
            ModelSource::Embedded => "embedded".to_string(),
            ModelSource::File(p) => p.display().to_string(),
        },
        base.card.id(),
        names
            .iter()
            .zip(&all)
            .map(|(c, v)| format!("{c} {}", v.len()))
            .collect::<Vec<_>>()
            .join(", "),
        if left_out.is_empty() {
            "none".into()
        } else {
            left_out.join(", ")
        }
    )?;
    writeln!(
        md,
        "Command: `cargo run --release -p leukoscope --example site_adapt -- {}`\n",
        args[1..].join(" ")
    )?;
    writeln!(
        md,
        "| method | cells/class | draws | overall | {} |",
        names.join(" | ")
    )?;
    writeln!(md, "|---|---|---|---|{}", "---|".repeat(names.len()))?;
    let pct = |v: f64| format!("{:.1}", 100.0 * v);
    writeln!(
        md,
        "| zero-shot | 0 | – | {} | {} |",
        pct(zs),
        zs_per
            .iter()
            .map(|v| pct(*v))
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    for (l, (n, o, per, counts)) in by_look.iter().enumerate() {
        writeln!(
            md,
            "| zero-shot, {} ({n} cells) | 0 | – | {} | {} |",
            LOOKS[l],
            pct(*o),
            per.iter()
                .zip(counts)
                .map(|(v, c)| if *c == 0 {
                    "–".into()
                } else {
                    format!("{} ({c})", pct(*v))
                })
                .collect::<Vec<_>>()
                .join(" | ")
        )?;
    }
    let mut rows = Vec::new();
    let methods: &[Method] = if zero_shot_only { &[] } else { &methods };
    for &method in methods {
        for &n in &SIZES {
            let mut overall = Vec::new();
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
            let mut priors = Vec::new();
            for draw in 0..DRAWS {
                let mut seed = 1000 * n as u64 + draw;
                let mut rest = Vec::new();
                let cells = if untyped {
                    // Every cell with its class, in class order, shuffled; the first ones are given untyped.
                    let mut pool: Vec<(usize, (PathBuf, Frame))> = all
                        .iter()
                        .enumerate()
                        .flat_map(|(k, v)| v.iter().map(move |c| (k, c.clone())))
                        .collect();
                    shuffle(&mut pool, &mut seed);
                    let later = pool.split_off(n * all.len());
                    rest = vec![Vec::new(); all.len()];
                    later.into_iter().for_each(|(k, c)| rest[k].push(c));
                    SiteCells {
                        cells: vec![Vec::new(); all.len()],
                        untyped: pool.into_iter().map(|(_, c)| c).collect(),
                    }
                } else {
                    let mut calib = Vec::new();
                    for v in &all {
                        let mut v = v.clone();
                        shuffle(&mut v, &mut seed);
                        let take = n.min(v.len() / 2);
                        rest.push(v.split_off(take));
                        calib.push(v);
                    }
                    SiteCells {
                        cells: calib,
                        untyped: Vec::new(),
                    }
                };
                let m = adapt::adapt(&base, &cells, method, views, "measurement")?;
                priors.push(m.card.adaptation.as_ref().and_then(|a| a.prior));
                let c = Classifier::from_verified(m)?;
                let (o, p) = score(&c, &rest);
                overall.push(o);
                p.iter().zip(&mut per).for_each(|(v, acc)| acc.push(*v));
            }
            let (m, sd) = mean_sd(&overall);
            eprintln!("{method} {n}/class: {:.1} ± {:.1} %", 100.0 * m, 100.0 * sd);
            let cells: Vec<String> = per
                .iter()
                .map(|v| {
                    let (m, sd) = mean_sd(v);
                    format!("{} ± {}", pct(m), pct(sd))
                })
                .collect();
            writeln!(
                md,
                "| {method}{} | {} | {DRAWS} | {} ± {} | {} |",
                if untyped || views == Views::One || !method.fits_head() {
                    String::new()
                } else {
                    format!(" ({views} views)")
                },
                if untyped {
                    format!("{} untyped, drawn from all", n * all.len())
                } else {
                    format!("{n} (≤ half of a class)")
                },
                pct(m),
                pct(sd),
                cells.join(" | ")
            )?;
            rows.push(serde_json::json!({
                "method": method.to_string(), "views": views.to_string(), "cells_per_class": n, "draws": DRAWS,
                "untyped": if untyped { serde_json::json!(n * all.len()) } else { serde_json::Value::Null },
                "overall": {"mean": m, "sd": sd, "draws": overall},
                "per_class": names.iter().zip(&per).map(|(c, v)| {
                    let (m, sd) = mean_sd(v);
                    (c.to_string(), serde_json::json!({"mean": m, "sd": sd}))
                }).collect::<serde_json::Map<_, _>>(),
                "prior_chosen": priors,
            }));
        }
    }
    // Untyped, every cell at once: the lab's whole set calibrates the model it is then typed by (no type is
    // read, so this is label-free test-time adaptation, as on the cells of one smear).
    let mut transductive = serde_json::Value::Null;
    if untyped && !zero_shot_only {
        let cells = SiteCells {
            cells: vec![Vec::new(); all.len()],
            untyped: all.iter().flatten().cloned().collect(),
        };
        for &method in methods {
            let m = adapt::adapt(&base, &cells, method, views, "measurement")?;
            let (o, p) = score(&Classifier::from_verified(m)?, &all);
            eprintln!("{method} on every cell, untyped: {:.1} %", 100.0 * o);
            writeln!(
                md,
                "| {method} | all {} untyped, typed after | 1 | {} | {} |",
                cells.untyped.len(),
                pct(o),
                p.iter().map(|v| pct(*v)).collect::<Vec<_>>().join(" | ")
            )?;
            transductive = serde_json::json!({
                "method": method.to_string(), "untyped": cells.untyped.len(), "overall": o,
                "per_class": names.iter().zip(&p).map(|(c, v)| (c.to_string(), (*v).into())).collect::<serde_json::Map<_, _>>(),
            });
        }
    }
    // Typed draws take at most half of a class: name the classes that cap bites on, from the data.
    let capped: Vec<String> = names
        .iter()
        .zip(&all)
        .filter(|(_, v)| v.len() < 2 * SIZES[SIZES.len() - 1])
        .map(|(c, v)| format!("{c}: {} → at most {}", v.len(), v.len() / 2))
        .collect();
    writeln!(
        md,
        "\nMean ± sd over {DRAWS} draws; per class: sensitivity on the cells not drawn.{}{}",
        if untyped || capped.is_empty() {
            String::new()
        } else {
            format!(
                " A class with fewer than twice the cells asked gives half of its cells ({}).",
                capped.join(", ")
            )
        },
        if untyped {
            " Untyped rows: the cells drawn at random from all classes together and given without their \
             types; the last row gives every cell untyped, then types every cell with the model so calibrated."
        } else {
            ""
        }
    )?;
    writeln!(
        md,
        "\nZero-shot by background: a crop's plasma (its brightest 8-px square) is yellow when its blue is \
         below {YELLOW_BLUE} of its red, else white; told apart without the cells' types. Per class: \
         sensitivity (cells)."
    )?;
    let json = serde_json::json!({
        "data": data.display().to_string(),
        "base": base.card.id(),
        "cells": names.iter().zip(&all).map(|(c, v)| (c.to_string(), v.len().into())).collect::<serde_json::Map<_, _>>(),
        "left_out": left_out,
        "zero_shot": {"overall": zs, "per_class": names.iter().zip(&zs_per).map(|(c, v)| (c.to_string(), (*v).into())).collect::<serde_json::Map<_, _>>()},
        "zero_shot_by_background": LOOKS.iter().zip(&by_look).map(|(l, (n, o, per, _))| {
            serde_json::json!({"background": l, "cells": n, "overall": o,
                "per_class": names.iter().zip(per).map(|(c, v)| (c.to_string(), (*v).into())).collect::<serde_json::Map<_, _>>()})
        }).collect::<Vec<_>>(),
        "adapted": rows,
        "every_cell_untyped": transductive,
    });
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    std::fs::write(out.with_extension("md"), md)?;
    Ok(())
}
