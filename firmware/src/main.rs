//! `leukoscope`: the device's command line. Parses arguments and calls into the library.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leukoscope::{Classifier, Frame, ModelSource, Prediction, CLASSES};

#[derive(Parser)]
#[command(
    name = "leukoscope",
    version,
    about = "Leukoscope: white-blood-cell typing and counting on the device"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Type the white cell in each image (one cell per image, as in the Kaggle data set).
    Classify(ClassifyArgs),
    /// Write each frame's nucleus mask and an overlay of boxes and mask outline (PNG) to a folder.
    Segment(SegmentArgs),
    /// Find, type and count the white cells of smear frames; print or write the differential.
    Count(CountArgs),
    /// Run a count session on the microscope (or the simulator): focus, capture, count, move, journal.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// ONNX model with its card (<model>.json) beside it; default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// One JSON object per image per line.
    #[arg(long)]
    json: bool,
    /// Images (JPEG/PNG) or folders of them (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

/// Expands folders into their images (sorted); files are kept as given so a bad one is reported by name.
fn expand(inputs: &[PathBuf]) -> Vec<Result<PathBuf, String>> {
    fn walk(dir: &Path, out: &mut Vec<Result<PathBuf, String>>) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) => return out.push(Err(format!("{}: cannot read folder: {e}", dir.display()))),
        };
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if is_image(&p) {
                out.push(Ok(p));
            }
        }
    }
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            walk(p, &mut out);
        } else if p.exists() {
            out.push(Ok(p.clone()));
        } else {
            out.push(Err(format!("{}: no such file or folder", p.display())));
        }
    }
    out
}

fn is_image(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(ext.as_str(), "jpg" | "jpeg" | "png")
}

#[derive(serde::Serialize)]
struct Probs {
    #[serde(rename = "EOSINOPHIL")]
    eosinophil: f32,
    #[serde(rename = "LYMPHOCYTE")]
    lymphocyte: f32,
    #[serde(rename = "MONOCYTE")]
    monocyte: f32,
    #[serde(rename = "NEUTROPHIL")]
    neutrophil: f32,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: &'a str,
    class: &'a str,
    confidence: f32,
    probs: Probs,
}

fn round4(v: f32) -> f32 {
    (v * 10_000.0).round() / 10_000.0
}

fn print_prediction(path: &Path, p: &Prediction, json: bool) {
    if json {
        let [e, l, m, n] = p.probs.map(round4);
        let line = Line {
            path: &path.to_string_lossy(),
            class: p.class.name(),
            confidence: round4(p.confidence),
            probs: Probs {
                eosinophil: e,
                lymphocyte: l,
                monocyte: m,
                neutrophil: n,
            },
        };
        println!(
            "{}",
            serde_json::to_string(&line).expect("plain struct serialises")
        );
    } else {
        let rest: Vec<String> = CLASSES
            .iter()
            .zip(p.probs)
            .map(|(c, v)| format!("{}={v:.3}", &c.name()[..3]))
            .collect();
        println!(
            "{}\t{}\t{:.3}\t{}",
            path.display(),
            p.class,
            p.confidence,
            rest.join(" ")
        );
    }
}

fn classify(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let source = args.model.map_or(ModelSource::Embedded, ModelSource::File);
    let classifier = Classifier::load(&source)?;
    let mut failures = 0usize;
    for item in expand(&args.inputs) {
        let result = item.and_then(|path| {
            let frame = Frame::open(&path).map_err(|e| e.to_string())?;
            let p = classifier
                .classify_frame(&frame)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((path, p))
        });
        match result {
            Ok((path, p)) => print_prediction(&path, &p, args.json),
            Err(msg) => {
                failures += 1;
                eprintln!("error: {msg}");
            }
        }
    }
    if failures > 0 {
        eprintln!("error: {failures} input(s) could not be classified");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Classify(args) => classify(args),
        Command::Segment(args) => segment_frames(args),
        Command::Count(args) => count(args),
        Command::Run(args) => run_session(args),
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

// ---- `segment` and `count` (issue 4) ----

#[derive(clap::Args)]
struct SegmentArgs {
    /// Folder for `<frame>.mask.png` (nucleus mask, training scale) and `<frame>.overlay.png`.
    #[arg(long)]
    out: PathBuf,
    /// Frames (JPEG/PNG) or folders of them (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct CountArgs {
    /// ONNX model with its card (<model>.json) beside it; default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Stop after this many cells (0: count every frame).
    #[arg(long, default_value_t = 100)]
    target: u32,
    /// Print the JSON report on stdout instead of the text summary.
    #[arg(long)]
    json: bool,
    /// Also write a CSV report (one row per cell) here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also write a self-contained HTML report with crop galleries here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Frames (JPEG/PNG) or folders of them (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

fn segment_frames(args: SegmentArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use leukoscope::report::{png_grey, png_rgb};
    use leukoscope::segment::{draw, Segmenter};
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    let mut seg = Segmenter::default();
    let mut failures = 0usize;
    for item in expand(&args.inputs) {
        let result = item.and_then(|path| {
            let frame = Frame::open(&path).map_err(|e| e.to_string())?;
            let s = seg.segment(&frame);
            let (mask, mw, mh) = seg.mask();
            let stem = path
                .file_stem()
                .map_or("frame".into(), |s| s.to_string_lossy().into_owned());
            let overlay = draw::overlay(&frame, mask, mw, mh, s.scale, &s.cells);
            let write = |name: String, bytes: Vec<u8>| {
                let p = args.out.join(name);
                std::fs::write(&p, bytes).map_err(|e| format!("{}: cannot write: {e}", p.display()))
            };
            write(
                format!("{stem}.mask.png"),
                png_grey(&draw::mask_grey(mask), mw, mh),
            )?;
            write(format!("{stem}.overlay.png"), png_rgb(&overlay))?;
            Ok((path, s))
        });
        match result {
            Ok((path, s)) => {
                let boxes: Vec<String> = s.cells.iter().map(|c| c.rect.to_string()).collect();
                let more = if s.overflow {
                    " (overflow: more cells not listed)"
                } else {
                    ""
                };
                let line = format!(
                    "{}\t{} cells\t{}{more}\n",
                    path.display(),
                    s.cells.len(),
                    boxes.join(" ")
                );
                let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
            }
            Err(msg) => {
                failures += 1;
                eprintln!("error: {msg}");
            }
        }
    }
    if failures > 0 {
        eprintln!("error: {failures} frame(s) could not be segmented");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn count(args: CountArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use leukoscope::count::StopRule;
    use leukoscope::report::{self, Report};
    let source = args.model.map_or(ModelSource::Embedded, ModelSource::File);
    let mut pipeline = leukoscope::Pipeline::new(Classifier::load(&source)?);
    let mut rep = Report::new(StopRule {
        target: args.target,
    });
    for item in expand(&args.inputs) {
        if rep.done() {
            break;
        }
        let path = match item {
            Ok(p) => p,
            Err(msg) => {
                eprintln!("error: {msg}");
                let named = msg.split(": ").next().unwrap_or("").to_string();
                rep.add_error(Path::new(&named), &msg);
                continue;
            }
        };
        let analysed = Frame::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|frame| {
                pipeline
                    .analyze(&frame)
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        match analysed {
            Ok(r) => {
                rep.add_frame(&path, &r);
            }
            Err(msg) => {
                eprintln!("error: {msg}");
                rep.add_error(&path, &msg);
            }
        }
    }
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).with_context(|| format!("{}: cannot write report", p.display()))
    };
    if let Some(p) = &args.csv {
        write(p, report::csv::to_string(&rep))?;
    }
    if let Some(p) = &args.html {
        write(p, report::html::to_string(&rep))?;
    }
    // A closed pipe (`| head`) is not worth a panic; the report files are already written.
    let text = if args.json {
        report::json::to_string(&rep) + "\n"
    } else {
        rep.summary()
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    if rep.errors() > 0 {
        eprintln!("error: {} frame(s) could not be counted", rep.errors());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct RunArgs {
    /// Use the simulated microscope (a folder of smear frames as the slide).
    #[arg(long, conflicts_with = "board")]
    sim: bool,
    /// Slide for --sim: a folder of JPEG/PNG smear frames (default: the bundled samples/smears).
    #[arg(long, requires = "sim")]
    slide: Option<PathBuf>,
    /// Simulator seed (hidden best focus, noise).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fields to visit, COLSxROWS (default 10x10; a board file's [stage] grid wins).
    #[arg(long, value_parser = parse_grid)]
    grid: Option<(u32, u32)>,
    /// Board file (pin map, motors, camera) for a Raspberry Pi; needs the `rpi` feature.
    #[arg(long)]
    board: Option<PathBuf>,
    /// Cells to count.
    #[arg(long, default_value_t = 100)]
    target: u32,
    /// The journal (append-only; every counted cell with its crop).
    #[arg(long)]
    journal: PathBuf,
    /// Continue the journal instead of starting a new one.
    #[arg(long)]
    resume: bool,
    /// Refocus every N fields (0: only on the first).
    #[arg(long, default_value_t = 1)]
    refocus_every: u32,
    /// ONNX model with its card beside it; default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// `model` (segmentation + classifier) or `blobs` (a model-free test double, for demos of the loop).
    #[arg(long, default_value = "model")]
    analyzer: String,
}

fn parse_grid(s: &str) -> Result<(u32, u32), String> {
    let (c, r) = s
        .split_once(['x', 'X'])
        .ok_or("expected COLSxROWS, e.g. 10x10")?;
    let c: u32 = c
        .trim()
        .parse()
        .map_err(|_| format!("bad column count {c:?}"))?;
    let r: u32 = r
        .trim()
        .parse()
        .map_err(|_| format!("bad row count {r:?}"))?;
    if c == 0 || r == 0 {
        return Err("grid must be at least 1x1".into());
    }
    Ok((c, r))
}

fn run_session(args: RunArgs) -> anyhow::Result<ExitCode> {
    use leukoscope::session::{BlobAnalyzer, SessionConfig};
    let mut cfg = SessionConfig {
        target: args.target,
        refocus_every: args.refocus_every,
        ..SessionConfig::default()
    };
    if let Some(g) = args.grid {
        cfg.grid = g;
    }
    let blobs = match args.analyzer.as_str() {
        "model" => false,
        "blobs" => true,
        other => anyhow::bail!("--analyzer {other}: expected `model` or `blobs`"),
    };
    if args.sim {
        use leukoscope::board::sim::{microscope, SimConfig};
        let mut sim = SimConfig::bundled();
        if let Some(slide) = &args.slide {
            sim.slide = slide.clone().into();
        }
        sim.seed = args.seed;
        sim.grid = Some(cfg.grid);
        let source = format!("sim slide={} seed={}", sim.slide, sim.seed);
        let (mut scope, _handle) = microscope(sim)?;
        return if blobs {
            drive(&mut scope, BlobAnalyzer::default(), &args, &cfg, &source)
        } else {
            drive(&mut scope, load_pipeline(&args)?, &args, &cfg, &source)
        };
    }
    let Some(board) = &args.board else {
        anyhow::bail!("say where to count: --sim, or --board board.toml on a Raspberry Pi");
    };
    run_board(board, blobs, &args, cfg)
}

#[cfg(feature = "rpi")]
fn run_board(
    board: &Path,
    blobs: bool,
    args: &RunArgs,
    mut cfg: leukoscope::session::SessionConfig,
) -> anyhow::Result<ExitCode> {
    use leukoscope::board::config::BoardConfig;
    use leukoscope::session::BlobAnalyzer;
    let bc = BoardConfig::load(board)?;
    if let Some(st) = &bc.stage {
        cfg.grid = st.grid;
        cfg.pitch = st.field_pitch;
    }
    let mut b = leukoscope::board::rpi::Board::open(&bc)?;
    let source = format!("rpi board={}", board.display());
    if blobs {
        drive(&mut b.scope, BlobAnalyzer::default(), args, &cfg, &source)
    } else {
        drive(&mut b.scope, load_pipeline(args)?, args, &cfg, &source)
    }
}

#[cfg(not(feature = "rpi"))]
fn run_board(
    board: &Path,
    _blobs: bool,
    _args: &RunArgs,
    _cfg: leukoscope::session::SessionConfig,
) -> anyhow::Result<ExitCode> {
    // Check the file anyway, so a typo is reported even on a host build.
    leukoscope::board::config::BoardConfig::load(board)?;
    anyhow::bail!(
        "{}: this leukoscope was built without Raspberry Pi support; rebuild with `--features rpi` \
         (scripts/cross.sh)",
        board.display()
    )
}

fn load_pipeline(args: &RunArgs) -> anyhow::Result<leukoscope::Pipeline> {
    let source = args
        .model
        .clone()
        .map_or(ModelSource::Embedded, ModelSource::File);
    Ok(leukoscope::Pipeline::new(Classifier::load(&source)?))
}

fn drive<C, L, F, S, B, T, A>(
    scope: &mut leukoscope::board::Microscope<C, L, F, S, B, T>,
    mut analyzer: A,
    args: &RunArgs,
    cfg: &leukoscope::session::SessionConfig,
    source: &str,
) -> anyhow::Result<ExitCode>
where
    C: leukoscope::capture::Camera,
    L: leukoscope::board::Illumination,
    F: leukoscope::board::Focus,
    S: leukoscope::board::Stage,
    B: leukoscope::board::Button,
    T: leukoscope::board::StatusLed,
    A: leukoscope::session::Analyzer,
{
    use leukoscope::journal::Journal;
    use leukoscope::session::{run, Event, Outcome};
    let mut journal = if args.resume && args.journal.exists() {
        let j = Journal::resume(&args.journal)?;
        let st = j.state();
        eprintln!(
            "resuming {}: {} of {} cells counted on {} fields{}",
            args.journal.display(),
            st.counted(),
            st.target,
            st.done_fields.len(),
            if st.torn_bytes > 0 {
                format!(" (ignored a torn last line of {} bytes)", st.torn_bytes)
            } else {
                String::new()
            }
        );
        j
    } else {
        Journal::create(&args.journal, args.target, source)?
    };
    let target = journal.state().target;
    let outcome = run(scope, &mut analyzer, &mut journal, cfg, &mut |e| match e {
        Event::Homed => eprintln!("homed"),
        Event::Field { field, stage } => eprintln!(
            "field {field} {}",
            stage.map_or(String::new(), |s| format!("at {s:?}"))
        ),
        Event::Focused(r) => eprintln!(
            "focus: position {} in {} frames, {} ms (contrast {:.1})",
            r.position,
            r.frames,
            r.elapsed.as_millis(),
            r.contrast
        ),
        Event::Retry {
            attempt,
            delay,
            error,
        } => {
            eprintln!(
                "camera: {error}; retry {attempt} in {} ms",
                delay.as_millis()
            )
        }
        Event::Prompt(msg) => eprintln!(">>> {msg}"),
        Event::Cell(c) => println!(
            "cell\tfield {}\t{}\t{:.3}",
            c.field,
            c.class.map_or("UNIDENTIFIED", |k| k.name()),
            c.confidence
        ),
        Event::FrameCommitted { counted, .. } => eprintln!("counted {counted}/{target}"),
    })?;
    let st = journal.state();
    let mut counts = [0u32; 4];
    let mut unidentified = 0;
    for c in &st.cells {
        match c.class {
            Some(k) => counts[k.index()] += 1,
            None => unidentified += 1,
        }
    }
    let parts: Vec<String> = CLASSES
        .iter()
        .zip(counts)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    println!(
        "differential\t{}\tUNIDENTIFIED={unidentified}\ttotal={}",
        parts.join("\t"),
        st.counted()
    );
    Ok(match outcome {
        Outcome::Finished { .. } => ExitCode::SUCCESS,
        Outcome::SlideExhausted { counted } => {
            eprintln!(
                "slide exhausted after {counted} of {target} cells; load more fields and --resume"
            );
            ExitCode::from(2)
        }
        Outcome::Paused { reason, .. } => {
            eprintln!("{reason}");
            ExitCode::from(3)
        }
    })
}
