//! The suite's own test runner (`harness = false`): the Rust test harness has no "skipped", and a case
//! that could not run must not look like one that passed.
//!
//! Every case prints one line (`ok`, `SKIPPED: <case>: <reason>`, `FAILED: <case>: <why>`), and the run
//! ends with the line `N passed, N failed, N skipped`, alone on a line, which CI reads. The exit status is
//! non-zero when a case failed, when `LEUKOSCOPE_HIL` names an unknown rig, or when `LEUKOSCOPE_HIL=rpi`
//! was asked for and the board cannot be opened (that is a failure of every selected case, never a skip).
//!
//! Arguments: case-name filters (substring; whole name with `--exact`), `--list`; the harness flags
//! cargo passes (`--nocapture`, `--test-threads N`, `-q`) are accepted and ignored (cases run one after
//! another: they share one rig).

use std::io::BufRead;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use crate::{CaseResult, Outcome};

/// Which rig the environment asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The simulator.
    Sim,
    /// A real Raspberry Pi board.
    Rpi,
}

/// `LEUKOSCOPE_HIL`: unset, empty or `sim` is the simulator, `rpi` the real board; anything else is an
/// error (a typo must not quietly test the simulator instead of the board).
pub fn target() -> Result<Target, String> {
    match std::env::var("LEUKOSCOPE_HIL").as_deref() {
        Err(_) | Ok("") | Ok("sim") => Ok(Target::Sim),
        Ok("rpi") => Ok(Target::Rpi),
        Ok(other) => Err(format!(
            "LEUKOSCOPE_HIL={other}: expected `sim` (the default) or `rpi`"
        )),
    }
}

/// Whether `LEUKOSCOPE_HIL_MANUAL` is set (to anything but empty or `0`): run the cases that need a
/// person at the rig, prompting on stderr.
pub fn manual() -> bool {
    std::env::var("LEUKOSCOPE_HIL_MANUAL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Asks the person at the rig to do something (on stderr) and waits for Enter on stdin.
pub fn ask(what: &str) -> Result<(), String> {
    ask_on(what, &mut std::io::stdin().lock())
}

/// [`ask`] reading the answer from `input`; end of input is an error (nobody is there to answer).
pub fn ask_on(what: &str, input: &mut impl BufRead) -> Result<(), String> {
    eprintln!("\n>>> {what}\n>>> then press Enter.");
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) => Err(format!(
            "no answer to \"{what}\": stdin is closed (LEUKOSCOPE_HIL_MANUAL needs a person at a \
             terminal)"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("reading the answer to \"{what}\": {e}")),
    }
}

/// One case of the suite, as the runner sees it: a name and a way to run it on the chosen rig.
pub type Run<'a> = Box<dyn FnOnce() -> CaseResult + 'a>;

/// What a run gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that ran and passed.
    pub passed: usize,
    /// Cases that failed (or panicked, or could not get their rig).
    pub failed: usize,
    /// Cases that could not run on this rig, with the reason printed.
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

impl Summary {
    /// Counts one outcome and prints its line.
    fn record(&mut self, name: &str, result: CaseResult, seconds: f64) {
        match result {
            Ok(Outcome::Passed) => {
                self.passed += 1;
                eprintln!("test {name} ... ok ({seconds:.2} s)");
            }
            Ok(Outcome::Skipped(why)) => {
                self.skipped += 1;
                eprintln!("SKIPPED: {name}: {why}");
            }
            Err(why) => {
                self.failed += 1;
                eprintln!("FAILED: {name}: {why}");
            }
        }
    }

    /// The exit status: failure when any case failed.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Runs cases one after another; a panic fails its case only.
pub fn run_all<'a>(cases: Vec<(&'a str, Run<'a>)>) -> Summary {
    let mut summary = Summary::default();
    for (name, run) in cases {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(format!("panicked: {msg}"))
        });
        summary.record(name, result, t.elapsed().as_secs_f64());
    }
    summary
}

/// Every selected case failed for one reason (the rig did not open).
pub fn fail_all(names: &[&str], why: &str) -> Summary {
    let mut summary = Summary::default();
    for name in names {
        summary.record(name, Err(why.to_owned()), 0.0);
    }
    summary
}

/// The command line: which cases, or only list them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// Name filters; none selects every case.
    pub filters: Vec<String>,
    /// Filters must match whole names.
    pub exact: bool,
    /// Print the case names and run nothing.
    pub list: bool,
}

impl Args {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Args {
        let mut a = Args::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--exact" => a.exact = true,
                "--list" => a.list = true,
                // Harness options with a separate value.
                "--test-threads" | "--format" | "--color" | "--skip" | "-Z" => {
                    args.next();
                }
                s if s.starts_with('-') => {} // --nocapture, -q, --test-threads=1, ...
                _ => a.filters.push(arg),
            }
        }
        a
    }

    /// Whether a case is selected.
    pub fn selects(&self, name: &str) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                if self.exact {
                    f == name
                } else {
                    name.contains(f.as_str())
                }
            })
    }
}

/// Prints the summary line (alone on its line, for CI) and gives the exit status.
pub fn finish(rig: &str, summary: &Summary) -> ExitCode {
    eprintln!("\nhil on {rig}:");
    println!("{summary}");
    summary.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_and_failures_are_counted_apart_from_passes() {
        let cases: Vec<(&str, Run)> = vec![
            ("passes", Box::new(|| Ok(Outcome::Passed))),
            ("skips", Box::new(|| Ok(Outcome::Skipped("no rig".into())))),
            ("fails", Box::new(|| Err("wrong".into()))),
            ("panics", Box::new(|| panic!("boom"))),
        ];
        let s = run_all(cases);
        assert_eq!(
            s,
            Summary {
                passed: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(s.to_string(), "1 passed, 2 failed, 1 skipped");
        assert_eq!(s.exit_code(), ExitCode::FAILURE);
        let only_skips = run_all(vec![(
            "skips",
            Box::new(|| Ok(Outcome::Skipped("x".into()))),
        )]);
        assert_eq!(only_skips.exit_code(), ExitCode::SUCCESS);
    }

    #[test]
    fn a_rig_that_does_not_open_fails_every_case() {
        let s = fail_all(&["a", "b"], "board did not open");
        assert_eq!(s.to_string(), "0 passed, 2 failed, 0 skipped");
    }

    #[test]
    fn harness_flags_are_ignored_and_filters_kept() {
        let a = Args::parse(
            ["--nocapture", "--test-threads", "1", "led", "--exact", "-q"].map(String::from),
        );
        assert_eq!(a.filters, ["led"]);
        assert!(a.exact && !a.list);
        assert!(a.selects("led") && !a.selects("led_ramp"));
        let b = Args::parse(["ramp".to_string(), "--test-threads=2".to_string()]);
        assert!(b.selects("led_ramp") && !b.selects("focus_homing"));
        assert!(Args::parse([]).selects("anything"));
    }

    #[test]
    fn a_manual_prompt_without_a_person_fails() {
        assert!(ask_on("unplug the camera", &mut &b"\n"[..]).is_ok());
        let err = ask_on("unplug the camera", &mut &b""[..]).unwrap_err();
        assert!(err.contains("stdin is closed"), "{err}");
    }
}
