//! Hardware-in-loop suite for Leukoscope: one set of cases (in `tests/hil.rs`), run against the simulated
//! microscope by default and against a real Raspberry Pi board with `LEUKOSCOPE_HIL=rpi`.
//!
//! A case is a function generic over [`Rig`], written once; [`hil_cases!`] lists each as a [`Case`] that
//! [`main`] runs on the rig the environment asks for (as ripgrep's `SearcherTester` and tract's `test-rt`
//! run one case against every backend). A case that needs something a rig cannot give (fault injection on
//! real hardware, a person to pull a cable) returns [`Outcome::Skipped`] with the reason. The suite has
//! its own [`runner`] (`harness = false`) so that a skip shows as `SKIPPED: <case>: <reason>` and in the
//! closing `N passed, N failed, N skipped` line, never as "ok".
//!
//! Environment:
//! - `LEUKOSCOPE_HIL=sim` (default) or `rpi` (needs `--features rpi` and a Pi). When `rpi` is asked for
//!   and the board cannot be opened (a build without `rpi`, a bad board file, GPIO refused), the suite
//!   **fails**; an unknown value fails too.
//! - `LEUKOSCOPE_BOARD`: the board file for `rpi` (default `deploy/board.toml`).
//! - `LEUKOSCOPE_SLIDE`: the simulator's slide folder (default: the bundled `samples/smears`, built in).
//! - `LEUKOSCOPE_HIL_ANALYZER=model|blobs`: the analysis of the count cases (default: the embedded model
//!   when it loads, else the model-free `BlobAnalyzer`, with a note).
//! - `LEUKOSCOPE_HIL_MANUAL=1`: on a real board, also run the cases that need a person (the camera
//!   disconnected mid-count); they prompt on stderr and wait for Enter. Without it they are skipped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use leukoscope::board::sim::{Faults, SimConfig, SimHandle, SimMicroscope};
use leukoscope::board::{Button, Focus, Illumination, Microscope, Stage, StatusLed};
use leukoscope::capture::Camera;
use leukoscope::session::{Analysis, Analyzer, SessionConfig};
use leukoscope::testing::BlobAnalyzer;
use leukoscope::{Cell, Frame};

pub mod runner;
pub use runner::{ask, manual, Target};

/// What a case concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ran and passed.
    Passed,
    /// Could not run on this rig; why.
    Skipped(String),
}

/// A case's result: `Err` fails the test with the message.
pub type CaseResult = Result<Outcome, String>;

/// A microscope to test, real or simulated.
pub trait Rig {
    /// Camera.
    type C: Camera;
    /// Light.
    type L: Illumination;
    /// Focus axis.
    type F: Focus;
    /// Stage.
    type S: Stage;
    /// Button.
    type B: Button;
    /// Status LED.
    type T: StatusLed;

    /// Short name for messages.
    fn name(&self) -> &'static str;
    /// The peripherals.
    #[allow(clippy::type_complexity)] // six associated types are the point of the trait
    fn scope(&mut self) -> &mut Microscope<Self::C, Self::L, Self::F, Self::S, Self::B, Self::T>;
    /// Ground truth: the sharpest focus, where the rig knows it (the simulator).
    fn best_focus(&self) -> Option<i32>;
    /// Injects faults; `Err(reason)` where the rig cannot.
    fn inject(&mut self, faults: Faults) -> Result<(), String>;
    /// Session settings that suit this rig (grid, retries).
    fn session_config(&self, target: u32) -> SessionConfig;
}

/// The simulator as a rig.
pub struct SimRig {
    /// The simulated microscope.
    pub scope: SimMicroscope,
    /// Its ground truth and fault injection.
    pub handle: SimHandle,
    grid: (u32, u32),
}

/// The simulator settings the suite uses (seed, grid, optional frame time).
pub fn sim_config(seed: u64, grid: (u32, u32), frame_time: Duration) -> SimConfig {
    let mut c = SimConfig::bundled();
    if let Some(slide) = std::env::var_os("LEUKOSCOPE_SLIDE") {
        c.slide = PathBuf::from(slide).into();
    }
    c.seed = seed;
    c.grid = Some(grid);
    c.frame_time = frame_time;
    c
}

impl SimRig {
    /// A simulated microscope over the suite's slide.
    pub fn new(seed: u64, grid: (u32, u32), frame_time: Duration) -> Result<Self, String> {
        let (scope, handle) =
            leukoscope::board::sim::microscope(sim_config(seed, grid, frame_time))
                .map_err(|e| chain(&e))?;
        Ok(SimRig {
            scope,
            handle,
            grid,
        })
    }
}

impl Rig for SimRig {
    type C = leukoscope::board::sim::SimCamera;
    type L = leukoscope::board::sim::SimLight;
    type F = leukoscope::board::sim::SimFocus;
    type S = leukoscope::board::sim::SimStage;
    type B = leukoscope::board::sim::SimButton;
    type T = leukoscope::board::sim::SimStatus;

    fn name(&self) -> &'static str {
        "sim"
    }
    fn scope(&mut self) -> &mut SimMicroscope {
        &mut self.scope
    }
    fn best_focus(&self) -> Option<i32> {
        Some(self.handle.best_focus())
    }
    fn inject(&mut self, faults: Faults) -> Result<(), String> {
        self.handle.set_faults(faults);
        Ok(())
    }
    fn session_config(&self, target: u32) -> SessionConfig {
        SessionConfig {
            target,
            grid: self.grid,
            refocus_every: 0,
            retry: leukoscope::session::RetryPolicy {
                attempts: 5,
                first_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(20),
            },
            ..SessionConfig::default()
        }
    }
}

/// The real board as a rig.
#[cfg(feature = "rpi")]
pub struct RpiRig {
    board: leukoscope::board::rpi::Board,
    config: leukoscope::board::config::BoardConfig,
}

#[cfg(feature = "rpi")]
impl RpiRig {
    /// Opens the board file named by `LEUKOSCOPE_BOARD`.
    pub fn open() -> Result<Self, String> {
        let path = std::env::var_os("LEUKOSCOPE_BOARD")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("deploy/board.toml"));
        let config = leukoscope::board::config::BoardConfig::load(&path).map_err(|e| chain(&e))?;
        let board = leukoscope::board::rpi::Board::open(&config).map_err(|e| chain(&e))?;
        Ok(RpiRig { board, config })
    }
}

#[cfg(feature = "rpi")]
impl Rig for RpiRig {
    type C = Box<dyn Camera<Error = leukoscope::capture::CaptureError>>;
    type L = leukoscope::board::led::PwmLed<leukoscope::board::rpi::RpiPwm>;
    type F = leukoscope::board::rpi::RpiStepper;
    type S = leukoscope::board::stepper::XyStage<leukoscope::board::rpi::RpiStepper>;
    type B = leukoscope::board::rpi::RpiButton;
    type T = leukoscope::board::rpi::RpiStatus;

    fn name(&self) -> &'static str {
        "rpi"
    }
    fn scope(&mut self) -> &mut leukoscope::board::rpi::RpiMicroscope {
        &mut self.board.scope
    }
    fn best_focus(&self) -> Option<i32> {
        None
    }
    fn inject(&mut self, _: Faults) -> Result<(), String> {
        Err("fault injection needs the simulator".into())
    }
    fn session_config(&self, target: u32) -> SessionConfig {
        let mut c = SessionConfig {
            target,
            ..SessionConfig::default()
        };
        if let Some(s) = &self.config.stage {
            c.grid = s.grid;
            c.pitch = s.field_pitch;
        }
        c
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A fresh scratch folder for one case.
pub fn scratch(case: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leukoscope-hil-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The count cases' analysis: the real pipeline or the model-free double.
pub enum AnyAnalyzer {
    /// Segmentation + embedded classifier.
    Model(Box<leukoscope::Pipeline>),
    /// The model-free test double.
    Blobs(BlobAnalyzer),
}

/// Analysis failed.
#[derive(Debug)]
pub struct AnalyzerError(pub String);

impl std::fmt::Display for AnalyzerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AnalyzerError {}

impl Analyzer for AnyAnalyzer {
    type Error = AnalyzerError;
    fn analysis(&self) -> Analysis {
        match self {
            AnyAnalyzer::Model(p) => p.analysis(),
            AnyAnalyzer::Blobs(b) => b.analysis(),
        }
    }
    fn analyze(&mut self, frame: &Frame) -> Result<Vec<Cell>, AnalyzerError> {
        match self {
            AnyAnalyzer::Model(p) => {
                Analyzer::analyze(p.as_mut(), frame).map_err(|e| AnalyzerError(e.to_string()))
            }
            AnyAnalyzer::Blobs(b) => b.analyze(frame).map_err(|e| AnalyzerError(e.to_string())),
        }
    }
}

/// `LEUKOSCOPE_HIL_ANALYZER`, or the embedded model when it loads, else blobs; with a note of which.
pub fn analyzer() -> (AnyAnalyzer, String) {
    let want = std::env::var("LEUKOSCOPE_HIL_ANALYZER").unwrap_or_default();
    if want != "blobs" {
        match leukoscope::Classifier::embedded() {
            Ok(c) => {
                return (
                    AnyAnalyzer::Model(Box::new(leukoscope::Pipeline::new(c))),
                    "embedded model".into(),
                )
            }
            Err(e) if want == "model" => panic!("LEUKOSCOPE_HIL_ANALYZER=model but: {e}"),
            Err(e) => {
                return (
                    AnyAnalyzer::Blobs(BlobAnalyzer::default()),
                    format!("BlobAnalyzer (embedded model unavailable: {e})"),
                )
            }
        }
    }
    (
        AnyAnalyzer::Blobs(BlobAnalyzer::default()),
        "BlobAnalyzer (LEUKOSCOPE_HIL_ANALYZER=blobs)".into(),
    )
}

/// One case as the runner sees it: its name and how to run it on each rig. Made by [`hil_cases!`].
pub struct Case {
    /// The case's name (its function's).
    pub name: &'static str,
    /// Builds the case's simulator and runs the case on it.
    pub on_sim: fn() -> CaseResult,
    /// Runs the case on the opened board.
    #[cfg(feature = "rpi")]
    pub on_rpi: fn(&mut RpiRig) -> CaseResult,
}

/// Turns case functions `fn case<R: Rig>(rig: &mut R) -> CaseResult` into the list of [`Case`]s that
/// [`main`] runs: `fn suite() -> Vec<Case>`. The simulator of each case is built by `$sim` (an
/// expression yielding `Result<SimRig, String>`).
#[macro_export]
macro_rules! hil_cases {
    ($($case:ident => $sim:expr;)+) => {
        /// Every case of the suite, in order.
        fn suite() -> Vec<$crate::Case> {
            vec![$(
                $crate::Case {
                    name: stringify!($case),
                    on_sim: || {
                        let mut rig: $crate::SimRig =
                            $sim.map_err(|e| format!("the simulator did not open: {e}"))?;
                        cases::$case(&mut rig)
                    },
                    #[cfg(feature = "rpi")]
                    on_rpi: |rig| cases::$case(rig),
                },
            )+]
        }
    };
}

/// Runs the suite on the rig `LEUKOSCOPE_HIL` names and prints `N passed, N failed, N skipped` (see
/// [`runner`]).
pub fn main(cases: &[Case]) -> ExitCode {
    let args = runner::Args::parse(std::env::args().skip(1));
    let selected: Vec<&Case> = cases.iter().filter(|c| args.selects(c.name)).collect();
    if args.list {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for c in &selected {
            if writeln!(out, "{}: test", c.name).is_err() {
                break; // a closed pipe (`--list | head`) is not an error
            }
        }
        return ExitCode::SUCCESS;
    }
    match runner::target() {
        Ok(Target::Sim) => {
            let runs = selected
                .iter()
                .map(|c| (c.name, Box::new(c.on_sim) as runner::Run))
                .collect();
            runner::finish("sim", &runner::run_all(runs))
        }
        Ok(Target::Rpi) => on_rpi(&selected),
        Err(why) => no_rig("?", &selected, &why),
    }
}

/// The rig could not be had: say why once, fail every selected case, exit non-zero.
fn no_rig(rig: &str, selected: &[&Case], why: &str) -> ExitCode {
    eprintln!("error: {why}");
    let names: Vec<&str> = selected.iter().map(|c| c.name).collect();
    runner::finish(
        rig,
        &runner::fail_all(&names, "no rig to run on (see the error above)"),
    );
    ExitCode::FAILURE
}

/// Runs the cases on the real board; a board that does not open fails them all.
#[cfg(feature = "rpi")]
fn on_rpi(selected: &[&Case]) -> ExitCode {
    let rig = match RpiRig::open() {
        Ok(rig) => std::cell::RefCell::new(rig),
        Err(e) => {
            return no_rig(
                "rpi",
                selected,
                &format!("LEUKOSCOPE_HIL=rpi but the board did not open: {e}"),
            )
        }
    };
    let rig = &rig;
    let runs = selected
        .iter()
        .map(|c| {
            let run: runner::Run = Box::new(move || (c.on_rpi)(&mut rig.borrow_mut()));
            (c.name, run)
        })
        .collect();
    runner::finish("rpi", &runner::run_all(runs))
}

/// Without the `rpi` feature there is no board to open: every case fails, with the reason.
#[cfg(not(feature = "rpi"))]
fn on_rpi(selected: &[&Case]) -> ExitCode {
    no_rig(
        "rpi",
        selected,
        "LEUKOSCOPE_HIL=rpi but this build has no board support: run `cargo test -p leukoscope-hil \
         --features rpi` on the Pi",
    )
}

/// An error and its causes, as anyhow's `{:#}` prints them (`a: b: c`): the firmware's own.
pub use leukoscope::hw::chain;

/// Fails a case with a message unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
