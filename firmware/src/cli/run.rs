//! `leukoscope run`: a count session on the microscope or the simulator, journalled, then the same report
//! as `count` (rebuilt from the journal, so `report --journal` prints it again identically).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use leukoscope::board::{Button, Focus, Illumination, Microscope, Stage, StatusLed};
use leukoscope::capture::Camera;
use leukoscope::count::StopRule;
use leukoscope::journal::{Header, Journal};
use leukoscope::pipeline::Analysis;
use leukoscope::report::Report;
use leukoscope::scale::RbcPx;
use leukoscope::session::{self, Analyzer, Event, Outcome, SessionConfig};
use leukoscope::{Cell, Frame, Pipeline};

use super::{ModelArg, Outputs, RbcPxArg, TargetArg};

#[derive(clap::Args)]
pub struct Args {
    /// Use the simulated microscope (a folder of smear frames as the slide).
    #[arg(long, conflicts_with = "board")]
    sim: bool,
    /// Slide for --sim: a folder of smear images (default: the bundled samples/smears).
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
    #[command(flatten)]
    target: TargetArg,
    /// The journal (append-only; every counted cell with its crop; `report --journal` rebuilds the report).
    #[arg(long)]
    journal: PathBuf,
    /// Continue the journal instead of starting a new one (same model, and slide or board).
    #[arg(long)]
    resume: bool,
    /// Refocus every N fields (0: only on the first).
    #[arg(long, default_value_t = 1)]
    refocus_every: u32,
    #[command(flatten)]
    model: ModelArg,
    /// (`--board`: overrides the board file's `[camera] rbc_px`.)
    #[command(flatten)]
    rbc: RbcPxArg,
    #[command(flatten)]
    outputs: Outputs,
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
    leukoscope::session::check_grid((c, r))?;
    Ok((c, r))
}

/// A path as the journal records it (absolute when it exists, so a resume from elsewhere matches).
fn recorded(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut cfg = SessionConfig {
        target: args.target.target,
        refocus_every: args.refocus_every,
        ..SessionConfig::default()
    };
    if let Some(g) = args.grid {
        cfg.grid = g;
    }
    if args.sim {
        use leukoscope::board::sim::{microscope, SimConfig, Slide};
        let mut sim = SimConfig::bundled();
        if let Some(slide) = &args.slide {
            sim.slide = Slide::Path(slide.clone());
        }
        sim.seed = args.seed;
        sim.grid = Some(cfg.grid);
        let slide = match &sim.slide {
            Slide::Path(p) => recorded(p),
            bundled => bundled.to_string(),
        };
        let source = format!(
            "sim slide={slide} seed={} grid={}x{}",
            sim.seed, cfg.grid.0, cfg.grid.1
        );
        let (mut scope, handle) = microscope(sim)?;
        if let Some(w) = handle.wrap() {
            eprintln!("warning: {w}");
        }
        let code = with_model(&mut scope, args, &cfg, &source, args.rbc.rbc_px);
        if let Some(w) = handle.wrapped() {
            eprintln!("note: this count went round the simulated slide: {w}");
        }
        return code;
    }
    let Some(board) = &args.board else {
        anyhow::bail!("say where to count: --sim, or --board board.toml on a Raspberry Pi");
    };
    run_board(board, args, cfg)
}

#[cfg(feature = "rpi")]
fn run_board(board: &Path, args: &Args, mut cfg: SessionConfig) -> anyhow::Result<ExitCode> {
    use leukoscope::board::config::BoardConfig;
    let bc = BoardConfig::load(board)?;
    if let Some(st) = &bc.stage {
        cfg.grid = st.grid;
        cfg.pitch = st.field_pitch;
    }
    let mut b = leukoscope::board::rpi::Board::open(&bc)?;
    let source = format!("rpi board={}", recorded(board));
    let rbc_px = args
        .rbc
        .rbc_px
        .or(bc.camera.rbc_px.map(leukoscope::scale::RbcPx::Fixed));
    with_model(&mut b.scope, args, &cfg, &source, rbc_px)
}

#[cfg(not(feature = "rpi"))]
fn run_board(board: &Path, _args: &Args, _cfg: SessionConfig) -> anyhow::Result<ExitCode> {
    // Check the file anyway, so a typo is reported even on a host build.
    leukoscope::board::config::BoardConfig::load(board)?;
    anyhow::bail!(
        "{}: this leukoscope was built without Raspberry Pi support; rebuild with `--features rpi` \
         (scripts/cross.sh)",
        board.display()
    )
}

/// The pipeline, saying when a field's red cells could not be measured (`--rbc-px auto`).
struct Warning(Pipeline);

impl Analyzer for Warning {
    type Error = <Pipeline as Analyzer>::Error;

    fn analysis(&self) -> Analysis {
        self.0.analysis()
    }

    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, Self::Error> {
        let r = self.0.analyze(frame)?;
        if let Some(e) = &r.scale_error {
            eprintln!("warning: this field: {e}; it is scaled by its size instead");
        }
        Ok(r.cells)
    }
}

/// Counts with the model of `--model` (the embedded default otherwise).
fn with_model<C, L, F, S, B, T>(
    scope: &mut Microscope<C, L, F, S, B, T>,
    args: &Args,
    cfg: &SessionConfig,
    source: &str,
    rbc_px: Option<RbcPx>,
) -> anyhow::Result<ExitCode>
where
    C: Camera,
    L: Illumination,
    F: Focus,
    S: Stage,
    B: Button,
    T: StatusLed,
{
    let mut analyzer = Warning(Pipeline::new(args.model.classifier()?).with_rbc_px(rbc_px));
    let header = Header::new(args.target.target, source, analyzer.analysis());
    let mut journal = if args.resume && args.journal.exists() {
        let j = Journal::resume_as(&args.journal, Some(&header))?;
        let st = j.state();
        eprintln!(
            "resuming {}: {} cells counted on {} fields{}",
            args.journal.display(),
            st.counted(),
            st.done_fields.len(),
            if st.torn_bytes > 0 {
                format!(" (ignored a torn last line of {} bytes)", st.torn_bytes)
            } else {
                String::new()
            }
        );
        if st.target() != args.target.target {
            let kept = match st.target() {
                0 => "no target".to_string(),
                n => format!("target {n}"),
            };
            eprintln!(
                "keeping the journal's {kept} (--target {} applies to a new journal)",
                args.target.target
            );
        }
        j
    } else {
        Journal::create(&args.journal, header)?
    };
    let stop = StopRule {
        target: journal.state().target(),
    };
    let classes = analyzer.analysis().classes;
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupt);
    if let Err(e) = ctrlc::set_handler(move || {
        flag.store(true, Ordering::Relaxed);
        eprintln!("\nCtrl-C: stopping after this field; every counted cell is safe in the journal");
    }) {
        eprintln!("warning: Ctrl-C will not pause the session cleanly: {e}");
    }
    let json = args.outputs.json;
    let outcome = session::run_until(
        scope,
        &mut analyzer,
        &mut journal,
        cfg,
        &interrupt,
        &mut |e| match e {
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
            } => eprintln!(
                "camera: {error}; retry {attempt} in {} ms",
                delay.as_millis()
            ),
            Event::Prompt(msg) => eprintln!(">>> {msg}"),
            Event::Exposure { .. } => eprintln!("{}", e.exposure_notice().unwrap_or_default()),
            Event::Captured { .. } => {}
            // A closed stdout (`| head`) does not stop the count: every cell is in the journal.
            Event::Cell { field, cell } if !json => {
                let _ = writeln!(
                    std::io::stdout(),
                    "cell\tfield {field}\t{}\t{:.3}",
                    classes.label(cell.class()),
                    cell.prediction.as_ref().map_or(f32::NAN, |p| p.confidence)
                );
            }
            Event::Cell { .. } => {}
            Event::FrameCommitted { counted, .. } => {
                if let Some(n) = e.exposure_notice() {
                    eprintln!("warning: {n}");
                }
                if stop.limited() {
                    eprintln!("counted {counted}/{}", stop.target)
                } else {
                    eprintln!("counted {counted} (no target)")
                }
            }
        },
    )?;
    args.outputs.emit(&Report::from_journal(journal.state()))?;
    Ok(match outcome {
        Outcome::Finished { .. } => ExitCode::SUCCESS,
        Outcome::SlideExhausted { counted } => {
            eprintln!(
                "slide exhausted after {counted} of {} cells; load more fields and --resume",
                stop.target
            );
            ExitCode::from(2)
        }
        Outcome::Paused { reason, .. } => {
            eprintln!("{reason}");
            ExitCode::from(3)
        }
    })
}
