//! The hardware-in-loop cases, written once and run on the rig `LEUKOSCOPE_HIL` names (default: the
//! simulator) by the suite's own runner (`harness = false`). See the crate docs for the environment
//! variables.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use leukoscope_hil::{check, hil_cases, scratch, CaseResult, Outcome, Rig, SimRig};

fn sim(seed: u64) -> Result<SimRig, String> {
    SimRig::new(seed, (12, 12), Duration::ZERO)
}

hil_cases! {
    led_ramp => sim(1);
    focus_homing => sim(2);
    autofocus_convergence => sim(3);
    capture_timing => sim(4);
    full_count_100 => sim(5);
    camera_unplugged_mid_run => sim(6);
    flaky_camera_is_survived => sim(7);
    stuck_focus_motor_pauses => sim(8);
    kill9_mid_count_then_resume => sim(9);
    power_cut_torn_write_then_resume => sim(9);
    asking_for_a_board_that_is_not_there_fails => sim(10);
}

fn main() -> ExitCode {
    if let Some(journal) = std::env::var_os("LEUKOSCOPE_HIL_CHILD") {
        kill9_child(std::path::Path::new(&journal));
        return ExitCode::FAILURE; // the parent kills the child before it gets here
    }
    leukoscope_hil::main(&suite())
}

/// The child side of the kill -9 cases (the parent sets `LEUKOSCOPE_HIL_CHILD` to the journal path):
/// a slow session (10 ms per frame) so the parent can kill it mid-count.
fn kill9_child(journal: &std::path::Path) {
    match SimRig::new(9, (12, 12), Duration::from_millis(10)) {
        Ok(mut rig) => {
            let out = cases::session_in(&mut rig, journal, KILL_TARGET, true);
            eprintln!("child finished unexpectedly early: {out:?}");
        }
        Err(e) => eprintln!("child: the simulator did not open: {e}"),
    }
}

const KILL_TARGET: u32 = 60;

mod cases {
    use super::*;
    use leukoscope::autofocus::{autofocus, AutofocusConfig};
    use leukoscope::board::sim::Faults;
    use leukoscope::board::{Focus, Illumination, Status, StatusLed};
    use leukoscope::capture::Camera;
    use leukoscope::hw::{Error, ErrorKind};
    use leukoscope::journal::{self, Header, Journal};
    use leukoscope::session::Analyzer;
    use leukoscope::session::{self, Event};
    use leukoscope::testing::BlobAnalyzer;
    use std::path::Path;

    fn mean(f: &leukoscope::Frame) -> u64 {
        f.data().iter().map(|&v| u64::from(v)).sum::<u64>() / f.data().len() as u64
    }

    fn e<E: std::error::Error>(what: &'static str) -> impl Fn(E) -> String {
        move |err| format!("{what}: {}", leukoscope_hil::chain(&err))
    }

    /// Brightness rises with the LED level and the light goes off.
    pub fn led_ramp<R: Rig>(rig: &mut R) -> CaseResult {
        let s = rig.scope();
        s.focus.home().map_err(e("home"))?;
        let mut means = Vec::new();
        for level in (0..=1000).step_by(200) {
            s.light.set_level(level).map_err(e("light"))?;
            s.camera.flush().map_err(e("flush"))?;
            means.push(mean(&s.camera.capture().map_err(e("capture"))?));
        }
        s.light.off().map_err(e("light off"))?;
        eprintln!("led ramp {}: mean grey {means:?}", rig.name());
        check!(
            means.windows(2).all(|w| w[1] + 2 >= w[0]),
            "brightness not monotonic: {means:?}"
        );
        check!(means[5] > means[0] + 40, "LED has no effect: {means:?}");
        Ok(Outcome::Passed)
    }

    /// Homing finds the end stop; soft limits refuse moves outside and leave the position alone.
    pub fn focus_homing<R: Rig>(rig: &mut R) -> CaseResult {
        let s = rig.scope();
        s.focus.home().map_err(e("home"))?;
        let (lo, hi) = s.focus.limits();
        let p = s.focus.position();
        check!(
            p >= lo && p <= lo + 100,
            "after homing at {p}, limits {lo}..={hi}"
        );
        s.focus.move_to(lo + 50).map_err(e("move"))?;
        check!(
            s.focus.position() == lo + 50,
            "position {}",
            s.focus.position()
        );
        let err = s
            .focus
            .move_to(hi + 1)
            .err()
            .ok_or("move beyond the soft limit succeeded")?;
        check!(
            err.kind() == ErrorKind::Limit,
            "wrong kind {:?}: {err}",
            err.kind()
        );
        check!(s.focus.position() == lo + 50, "limit error moved the axis");
        s.focus.home().map_err(e("home again"))?;
        Ok(Outcome::Passed)
    }

    /// From the bottom, middle and top of travel: ±1 step of best focus (where known) in ≤ 25 frames.
    pub fn autofocus_convergence<R: Rig>(rig: &mut R) -> CaseResult {
        let best = rig.best_focus();
        let name = rig.name();
        let s = rig.scope();
        s.light.set_level(700).map_err(e("light"))?;
        s.focus.home().map_err(e("home"))?;
        let (lo, hi) = s.focus.limits();
        let mut found = Vec::new();
        for start in [lo, (lo + hi) / 2, hi] {
            s.focus.move_to(start).map_err(e("move"))?;
            let r = autofocus(&mut s.camera, &mut s.focus, &AutofocusConfig::default())
                .map_err(e("autofocus"))?;
            eprintln!(
                "autofocus {name}: start {start} → {} (best {best:?}) in {} frames, {:.1} ms",
                r.position,
                r.frames,
                r.elapsed.as_secs_f64() * 1e3
            );
            check!(r.frames <= 25, "{} frames", r.frames);
            if let Some(b) = best {
                check!((r.position - b).abs() <= 1, "found {} best {b}", r.position);
            }
            found.push(r.position);
        }
        let spread = found.iter().max().unwrap_or(&0) - found.iter().min().unwrap_or(&0);
        check!(spread <= 2, "not repeatable: {found:?}");
        s.light.off().map_err(e("light off"))?;
        Ok(Outcome::Passed)
    }

    /// 30 frames arrive; their timing is printed (never asserted).
    pub fn capture_timing<R: Rig>(rig: &mut R) -> CaseResult {
        let name = rig.name();
        let s = rig.scope();
        s.light.set_level(700).map_err(e("light"))?;
        s.camera.capture().map_err(e("first capture"))?;
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let f = s.camera.capture().map_err(e("capture"))?;
            times.push(t.elapsed());
            check!(
                f.width() >= 64 && f.height() >= 48,
                "tiny frame {}x{}",
                f.width(),
                f.height()
            );
        }
        s.light.off().map_err(e("light off"))?;
        let total: Duration = times.iter().sum();
        let max = times.iter().max().copied().unwrap_or_default();
        eprintln!(
            "capture timing {name}: mean {:.1} ms, max {:.1} ms, {:.1} fps",
            total.as_secs_f64() * 1e3 / 30.0,
            max.as_secs_f64() * 1e3,
            30.0 / total.as_secs_f64()
        );
        Ok(Outcome::Passed)
    }

    /// A session in a journal at `path` with the model-free analyzer; `resume` continues an existing one.
    pub fn session_in<R: Rig>(
        rig: &mut R,
        path: &Path,
        target: u32,
        resume: bool,
    ) -> Result<session::Outcome, String> {
        session_with(rig, path, target, resume, &mut |_| {})
    }

    /// [`session_in`] with a look at each event.
    fn session_with<R: Rig>(
        rig: &mut R,
        path: &Path,
        target: u32,
        resume: bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<session::Outcome, String> {
        let mut j = if resume && path.exists() {
            Journal::resume(path).map_err(e("resume"))?
        } else {
            Journal::create(
                path,
                Header::new(target, rig.name(), BlobAnalyzer::default().analysis()),
            )
            .map_err(e("journal"))?
        };
        let cfg = rig.session_config(target);
        session::run(
            rig.scope(),
            &mut BlobAnalyzer::default(),
            &mut j,
            &cfg,
            on_event,
        )
        .map_err(e("session"))
    }

    /// A full 100-cell differential through the real pipeline (or the double, said so), every cell with a
    /// decodable crop.
    pub fn full_count_100<R: Rig>(rig: &mut R) -> CaseResult {
        let dir = scratch("full");
        let path = dir.join("count.jsonl");
        let (mut analyzer, which) = leukoscope_hil::analyzer();
        let mut j = Journal::create(&path, Header::new(100, rig.name(), analyzer.analysis()))
            .map_err(e("journal"))?;
        let cfg = rig.session_config(100);
        let t = Instant::now();
        let mut shown = 0;
        let out = session::run(rig.scope(), &mut analyzer, &mut j, &cfg, &mut |ev| {
            if let Event::Cell { .. } = ev {
                shown += 1;
            }
        })
        .map_err(e("session"))?;
        let st = journal::read(&path).map_err(e("read"))?;
        eprintln!(
            "full count {} with {which}: {out:?} in {:.1} s over {} fields",
            rig.name(),
            t.elapsed().as_secs_f64(),
            st.done_fields.len()
        );
        check!(
            out == session::Outcome::Finished { counted: 100 },
            "{out:?}"
        );
        check!(
            st.counted() == 100 && shown == 100,
            "journal {} shown {shown}",
            st.counted()
        );
        check!(
            st.cells().all(|c| c.crop.is_some()),
            "a cell without its crop"
        );
        Ok(Outcome::Passed)
    }

    /// A short unplug is ridden out by back-off; a long one pauses the session with the data kept, and a
    /// resume after re-plugging finishes without recounting.
    pub fn camera_unplugged_mid_run<R: Rig>(rig: &mut R) -> CaseResult {
        let glitch = Faults {
            unplug_at_frame: Some(24),
            unplug_len: 3,
            ..Faults::default()
        };
        if let Err(why) = rig.inject(glitch) {
            if leukoscope_hil::manual() {
                return camera_unplugged_by_hand(rig);
            }
            return Ok(Outcome::Skipped(format!(
                "{why}; on a real board a person can pull the cable: set LEUKOSCOPE_HIL_MANUAL=1"
            )));
        }
        let dir = scratch("unplug");
        let p1 = dir.join("glitch.jsonl");
        let mut j = Journal::create(
            &p1,
            Header::new(20, rig.name(), BlobAnalyzer::default().analysis()),
        )
        .map_err(e("journal"))?;
        let mut retries = 0;
        let cfg = rig.session_config(20);
        let out = session::run(
            rig.scope(),
            &mut BlobAnalyzer::default(),
            &mut j,
            &cfg,
            &mut |ev| {
                if let Event::Retry { .. } = ev {
                    retries += 1;
                }
            },
        )
        .map_err(e("session"))?;
        check!(out == session::Outcome::Finished { counted: 20 }, "{out:?}");
        check!(retries >= 3, "{retries} retries");

        let p2 = dir.join("gone.jsonl");
        let mut j = Journal::create(
            &p2,
            Header::new(60, rig.name(), BlobAnalyzer::default().analysis()),
        )
        .map_err(e("journal"))?;
        rig.inject(Faults {
            unplug_at_frame: Some(25),
            unplug_len: u32::MAX,
            ..Faults::default()
        })?;
        let cfg = rig.session_config(60);
        let out = session::run(
            rig.scope(),
            &mut BlobAnalyzer::default(),
            &mut j,
            &cfg,
            &mut |_| {},
        )
        .map_err(e("session"))?;
        let session::Outcome::Paused { reason, counted } = out else {
            return Err(format!("expected a pause, got {out:?}"));
        };
        eprintln!("paused as expected: {reason}");
        check!(
            reason.contains("camera") && reason.contains("--resume"),
            "{reason}"
        );
        check!(rig.scope().status.as_mut().is_some(), "no status LED");
        let before = journal::read(&p2).map_err(e("read"))?;
        check!(
            before.counted() == counted && counted > 0,
            "{counted} vs {}",
            before.counted()
        );
        drop(j);
        rig.inject(Faults::default())?;
        resume_keeps_paused_cells(rig, &p2, 60, &before)
    }

    /// Resumes the paused session in `path` to `target` cells: it must finish, and the cells journaled
    /// before the pause (`before`) must be untouched.
    fn resume_keeps_paused_cells<R: Rig>(
        rig: &mut R,
        path: &Path,
        target: u32,
        before: &journal::State,
    ) -> CaseResult {
        let out = session_in(rig, path, target, true)?;
        check!(
            out == session::Outcome::Finished { counted: target },
            "{out:?}"
        );
        let after = journal::read(path).map_err(e("read"))?;
        check!(
            after.frames[..before.frames.len()] == before.frames[..],
            "paused cells changed"
        );
        Ok(Outcome::Passed)
    }

    /// The manual twin of [`camera_unplugged_mid_run`] (`LEUKOSCOPE_HIL_MANUAL`): after the first field a
    /// person disconnects the camera; the session must pause with the cells kept, and after the camera is
    /// back a resume must finish without recounting.
    fn camera_unplugged_by_hand<R: Rig>(rig: &mut R) -> CaseResult {
        let path = scratch("unplug-by-hand").join("j.jsonl");
        let mut asked: Option<Result<(), String>> = None;
        let out = session_with(rig, &path, 60, false, &mut |ev| {
            if matches!(ev, Event::FrameCommitted { .. }) && asked.is_none() {
                asked = Some(leukoscope_hil::ask(
                    "MANUAL camera_unplugged_mid_run: disconnect the camera now (a USB camera: pull \
                     its cable; the Pi camera module: never pull the ribbon while powered, freeze its \
                     program instead with `sudo pkill -STOP rpicam-vid`) and leave it disconnected",
                ));
            }
        })?;
        asked.ok_or("the session committed no frame before the prompt")??;
        let session::Outcome::Paused { reason, counted } = out else {
            return Err(format!(
                "expected a pause after the camera was disconnected, got {out:?}"
            ));
        };
        eprintln!("paused as expected: {reason}");
        check!(
            reason.contains("camera") && counted > 0,
            "{reason} ({counted} cells)"
        );
        let before = journal::read(&path).map_err(e("read"))?;
        leukoscope_hil::ask(
            "MANUAL camera_unplugged_mid_run: connect the camera again (or `sudo pkill -CONT \
             rpicam-vid`)",
        )?;
        resume_keeps_paused_cells(rig, &path, 60, &before)
    }

    /// Dropped frames and timeouts every few captures do not stop a count.
    pub fn flaky_camera_is_survived<R: Rig>(rig: &mut R) -> CaseResult {
        if let Err(why) = rig.inject(Faults {
            drop_every: 4,
            timeout_every: 7,
            ..Faults::default()
        }) {
            return Ok(Outcome::Skipped(why));
        }
        let p = scratch("flaky").join("j.jsonl");
        let out = session_in(rig, &p, 30, false)?;
        check!(out == session::Outcome::Finished { counted: 30 }, "{out:?}");
        Ok(Outcome::Passed)
    }

    /// A stalled focus motor pauses before anything is counted, with advice about the motor.
    pub fn stuck_focus_motor_pauses<R: Rig>(rig: &mut R) -> CaseResult {
        if let Err(why) = rig.inject(Faults {
            focus_stuck: true,
            ..Faults::default()
        }) {
            return Ok(Outcome::Skipped(why));
        }
        let p = scratch("stuck").join("j.jsonl");
        let out = session_in(rig, &p, 10, false)?;
        let session::Outcome::Paused { reason, counted } = out else {
            return Err(format!("expected a pause, got {out:?}"));
        };
        check!(reason.contains("motor") && counted == 0, "{reason}");
        if let Some(led) = rig.scope().status.as_mut() {
            led.show(Status::Idle).map_err(e("status"))?;
        }
        Ok(Outcome::Passed)
    }

    /// Starts the child session and SIGKILLs it after at least `frames` committed frames.
    fn kill_child_after(path: &Path, frames: usize) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(e("current_exe"))?;
        let mut child = std::process::Command::new(exe)
            .env("LEUKOSCOPE_HIL_CHILD", path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(e("spawn child"))?;
        let start = Instant::now();
        loop {
            let done = std::fs::read_to_string(path)
                .map(|t| t.matches("\"frame_done\"").count())
                .unwrap_or(0);
            if done >= frames {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("child exited before the kill: {status}"));
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                return Err("child made no progress in 120 s".into());
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        child.kill().map_err(e("kill -9"))?; // SIGKILL on Unix: no destructors, no flush
        let status = child.wait().map_err(e("wait"))?;
        check!(!status.success(), "child was not killed: {status}");
        Ok(())
    }

    fn resume_and_check<R: Rig>(rig: &mut R, path: &Path) -> CaseResult {
        let before = journal::read(path).map_err(e("read after kill"))?;
        check!(
            before.counted() > 0 && before.counted() < KILL_TARGET,
            "killed at {} cells",
            before.counted()
        );
        let out = session_in(rig, path, KILL_TARGET, true)?;
        check!(
            out == session::Outcome::Finished {
                counted: KILL_TARGET
            },
            "{out:?}"
        );
        // read() refuses a field committed twice; check cells are unique and the old ones untouched.
        let after = journal::read(path).map_err(e("read after resume"))?;
        check!(after.counted() == KILL_TARGET, "{} cells", after.counted());
        check!(
            after.frames[..before.frames.len()] == before.frames[..],
            "cells committed before the kill changed"
        );
        let mut fields: Vec<u32> = after.frames.iter().map(|f| f.field).collect();
        fields.sort_unstable();
        fields.dedup();
        check!(
            fields.len() == after.frames.len(),
            "a field was counted twice"
        );
        eprintln!(
            "kill -9 at {} cells ({} orphan, {} torn bytes), resumed to {}",
            before.counted(),
            before.orphan_cells,
            before.torn_bytes,
            after.counted()
        );
        Ok(Outcome::Passed)
    }

    /// `kill -9` mid-count, then resume: nothing lost, nothing counted twice.
    pub fn kill9_mid_count_then_resume<R: Rig>(rig: &mut R) -> CaseResult {
        if rig.best_focus().is_none() {
            return Ok(Outcome::Skipped(
                "the child session runs on the simulator only".into(),
            ));
        }
        let path = scratch("kill9").join("j.jsonl");
        kill_child_after(&path, 4)?;
        resume_and_check(rig, &path)
    }

    /// A power cut mid-write (the kill plus half a record at the end): the torn line is ignored.
    pub fn power_cut_torn_write_then_resume<R: Rig>(rig: &mut R) -> CaseResult {
        if rig.best_focus().is_none() {
            return Ok(Outcome::Skipped(
                "the child session runs on the simulator only".into(),
            ));
        }
        let path = scratch("torn").join("j.jsonl");
        kill_child_after(&path, 3)?;
        let line = journal::encode_line(&journal::Record::FrameDone {
            frame: 999,
            field: 999,
            stage: None,
            focus: 0,
            cells: 0,
            clipped: None,
        });
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(e("open"))?;
        f.write_all(&line.as_bytes()[..line.len() / 2])
            .map_err(e("write"))?;
        drop(f);
        let st = journal::read(&path).map_err(e("read"))?;
        check!(st.torn_bytes > 0, "torn line not detected");
        resume_and_check(rig, &path)
    }

    /// The suite run with `LEUKOSCOPE_HIL=rpi` and no board that opens (a missing board file, or a build
    /// without `rpi`) must fail, not report skipped cases as passed; an unknown rig name fails too.
    pub fn asking_for_a_board_that_is_not_there_fails<R: Rig>(_rig: &mut R) -> CaseResult {
        let exe = std::env::current_exe().map_err(e("current_exe"))?;
        let board = scratch("no-board").join("missing.toml");
        for (hil, expect) in [
            ("rpi", "LEUKOSCOPE_HIL=rpi but"),
            ("pi", "LEUKOSCOPE_HIL=pi: expected `sim`"),
        ] {
            let out = std::process::Command::new(&exe)
                .args(["--exact", "led_ramp"])
                .env("LEUKOSCOPE_HIL", hil)
                .env("LEUKOSCOPE_BOARD", &board)
                .env_remove("LEUKOSCOPE_HIL_CHILD")
                .output()
                .map_err(e("run the suite"))?;
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            check!(
                !out.status.success(),
                "LEUKOSCOPE_HIL={hil} without a board passed: {stderr}"
            );
            check!(
                stderr.contains(expect)
                    && stdout.lines().any(|l| l == "0 passed, 1 failed, 0 skipped"),
                "LEUKOSCOPE_HIL={hil}: stdout {stdout:?}, stderr {stderr:?}"
            );
            eprintln!(
                "LEUKOSCOPE_HIL={hil} without a board: {}",
                stderr
                    .lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or("")
            );
        }
        Ok(Outcome::Passed)
    }
}
