//! The microscope as the web page drives it: one object-safe trait over any [`Microscope`], so the server
//! is written once for the simulator and the Raspberry Pi board.

use std::sync::atomic::AtomicBool;

use crate::autofocus::{autofocus, AutofocusConfig, FocusReport};
use crate::board::{Button, Focus, Illumination, Microscope, Stage, StatusLed, FULL};
use crate::capture::Camera;
use crate::frame::Frame;
use crate::hw::chain;
use crate::journal::Journal;
use crate::pipeline::Pipeline;
use crate::session::{self, Event, Outcome, SessionConfig, SessionError};

/// What the live page shows about the microscope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceState {
    /// Fine-focus position, steps.
    pub focus: i32,
    /// Its soft limits.
    pub focus_limits: (i32, i32),
    /// Light level, per mille.
    pub light: u16,
    /// Stage position, when the stage is motorised.
    pub stage: Option<(i32, i32)>,
}

/// The microscope behind the web page. Errors are sentences for the operator.
pub trait Device: Send {
    /// One frame from the camera, as it is now.
    fn snapshot(&mut self) -> Result<Frame, String>;
    /// Focus, light and stage.
    fn state(&self) -> DeviceState;
    /// Moves the focus by `steps`.
    fn focus_by(&mut self, steps: i32) -> Result<(), String>;
    /// Runs the autofocus.
    fn autofocus(&mut self) -> Result<FocusReport, String>;
    /// Sets the light, per mille.
    fn set_light(&mut self, permille: u16) -> Result<(), String>;
    /// Moves the stage by `(dx, dy)` steps.
    fn stage_by(&mut self, dx: i32, dy: i32) -> Result<(), String>;
    /// Runs (or continues) a count session on this microscope ([`session::run_until`]).
    fn count(
        &mut self,
        analyzer: &mut Pipeline,
        journal: &mut Journal,
        cfg: &SessionConfig,
        interrupt: &AtomicBool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Outcome, SessionError>;
}

/// A [`Microscope`] with what the page needs beside it: the light level last set, and whatever must live
/// as long as the microscope (a board's driver-enable pins).
pub struct Bench<C, L, F, S, B, T> {
    scope: Microscope<C, L, F, S, B, T>,
    light: u16,
    autofocus: AutofocusConfig,
    _keep: Box<dyn Send>,
}

impl<C, L, F, S, B, T> Bench<C, L, F, S, B, T> {
    /// The microscope, with `keep` dropped only when the bench is (e.g. a board's enable pins).
    pub fn new(scope: Microscope<C, L, F, S, B, T>, keep: Box<dyn Send>) -> Self {
        Bench {
            scope,
            light: 0,
            autofocus: AutofocusConfig::default(),
            _keep: keep,
        }
    }
}

fn say<E: crate::hw::Error>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {}", chain(&e))
}

impl<C, L, F, S, B, T> Device for Bench<C, L, F, S, B, T>
where
    C: Camera + Send,
    L: Illumination + Send,
    F: Focus + Send,
    S: Stage + Send,
    B: Button + Send,
    T: StatusLed + Send,
{
    fn snapshot(&mut self) -> Result<Frame, String> {
        if self.light == 0 {
            // A dark field is no view: the first look turns the light on at the counting level.
            self.set_light(SessionConfig::default().light)?;
        }
        self.scope.camera.capture().map_err(say("camera"))
    }

    fn state(&self) -> DeviceState {
        DeviceState {
            focus: self.scope.focus.position(),
            focus_limits: self.scope.focus.limits(),
            light: self.light,
            stage: self.scope.stage.as_ref().map(Stage::position),
        }
    }

    fn focus_by(&mut self, steps: i32) -> Result<(), String> {
        let (lo, hi) = self.scope.focus.limits();
        let to = self.scope.focus.position().saturating_add(steps);
        if !(lo..=hi).contains(&to) {
            return Err(format!("focus {to} is outside the axis' limits {lo}..{hi}"));
        }
        self.scope.focus.move_to(to).map_err(say("focus"))
    }

    fn autofocus(&mut self) -> Result<FocusReport, String> {
        if self.light == 0 {
            self.set_light(SessionConfig::default().light)?;
        }
        let s = &mut self.scope;
        autofocus(&mut s.camera, &mut s.focus, &self.autofocus).map_err(|e| e.to_string())
    }

    fn set_light(&mut self, permille: u16) -> Result<(), String> {
        if permille > FULL {
            return Err(format!("light {permille} ‰: at most {FULL}"));
        }
        self.scope.light.set_level(permille).map_err(say("light"))?;
        self.light = permille;
        Ok(())
    }

    fn stage_by(&mut self, dx: i32, dy: i32) -> Result<(), String> {
        let Some(stage) = self.scope.stage.as_mut() else {
            return Err("this microscope has no motorised stage: move the slide by hand".into());
        };
        let (x, y) = stage.position();
        stage
            .move_to((x.saturating_add(dx), y.saturating_add(dy)))
            .map_err(say("stage"))
    }

    fn count(
        &mut self,
        analyzer: &mut Pipeline,
        journal: &mut Journal,
        cfg: &SessionConfig,
        interrupt: &AtomicBool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Outcome, SessionError> {
        let out = session::run_until(&mut self.scope, analyzer, journal, cfg, interrupt, on_event);
        // A session ends (or pauses) with the light off: the next look turns it on again.
        self.light = 0;
        out
    }
}
