//! The microscope's peripherals other than the camera, behind small traits: illumination, focus, stage,
//! button, status LED; and [`Microscope`], the bundle of all of them with a camera from [`crate::capture`].
//!
//! Each trait follows embedded-hal's habits: few required methods with provided helpers built on them, an
//! associated `Error` whose [`crate::hw::Error::kind`] says *what* failed in a way the run loop can act on
//! (retry a timeout, pause on a disconnect, stop on a stalled motor), and a blanket impl for `&mut T` so a
//! caller can lend a peripheral without giving it away.
//!
//! Every trait has a real implementation and a simulated twin:
//!
//! | trait            | real                                                 | simulated          |
//! |------------------|------------------------------------------------------|--------------------|
//! | [`Illumination`] | [`led::PwmLed`] over any embedded-hal `SetDutyCycle` | [`sim::SimLight`]  |
//! | [`Focus`]        | [`stepper::Stepper`] (STEP/DIR, end stop)            | [`sim::SimFocus`]  |
//! | [`Stage`]        | [`stepper::XyStage`] of two steppers                 | [`sim::SimStage`]  |
//! | [`Button`]       | [`PinButton`] over an embedded-hal `InputPin`        | [`sim::SimButton`] |
//! | [`StatusLed`]    | [`PinStatusLed`] over an embedded-hal `OutputPin`    | [`sim::SimStatus`] |
//!
//! Cameras ([`crate::capture::Camera`]: rpicam, V4L2, replay) live in [`crate::capture`]; the simulated
//! one, [`sim::SimCamera`], lives here because it shares its world with the simulated focus, light and
//! stage. `board` uses `capture`, never the reverse; the error vocabulary both share is [`crate::hw`].
//!
//! This module must not know about cells, models or the journal: [`crate::session`] drives it.

use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};

use crate::hw::{Error, ErrorKind};

pub mod config;
pub mod led;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod sim;
pub mod stepper;

/// Largest illumination level: levels are per mille of full brightness.
pub const FULL: u16 = 1000;

/// The transmitted-light source under the slide.
pub trait Illumination {
    /// Why the light could not be set.
    type Error: Error;

    /// Sets the perceived brightness in per mille (0 = off, [`FULL`] = brightest allowed).
    fn set_level(&mut self, permille: u16) -> Result<(), Self::Error>;

    /// Turns the light off.
    fn off(&mut self) -> Result<(), Self::Error> {
        self.set_level(0)
    }
}

impl<T: Illumination + ?Sized> Illumination for &mut T {
    type Error = T::Error;
    fn set_level(&mut self, permille: u16) -> Result<(), Self::Error> {
        T::set_level(self, permille)
    }
}

/// The fine-focus axis (objective or stage height), in motor steps.
pub trait Focus {
    /// Why the axis could not move.
    type Error: Error;

    /// Moves to an absolute position in steps (within [`Focus::limits`]).
    fn move_to(&mut self, position: i32) -> Result<(), Self::Error>;

    /// The current position in steps.
    fn position(&self) -> i32;

    /// The soft limits, inclusive; moves outside fail with [`ErrorKind::Limit`].
    fn limits(&self) -> (i32, i32);

    /// Finds the reference position (end stop) and sets it as the zero. The default assumes an axis that
    /// needs no homing and moves to zero.
    fn home(&mut self) -> Result<(), Self::Error> {
        self.move_to(0)
    }

    /// Moves by a signed number of steps.
    fn move_by(&mut self, delta: i32) -> Result<(), Self::Error> {
        self.move_to(self.position().saturating_add(delta))
    }
}

impl<T: Focus + ?Sized> Focus for &mut T {
    type Error = T::Error;
    fn move_to(&mut self, position: i32) -> Result<(), Self::Error> {
        T::move_to(self, position)
    }
    fn position(&self) -> i32 {
        T::position(self)
    }
    fn limits(&self) -> (i32, i32) {
        T::limits(self)
    }
    fn home(&mut self) -> Result<(), Self::Error> {
        T::home(self)
    }
}

/// A motorised XY stage, in motor steps per axis.
pub trait Stage {
    /// Why the stage could not move.
    type Error: Error;

    /// Moves to an absolute `(x, y)` position in steps.
    fn move_to(&mut self, xy: (i32, i32)) -> Result<(), Self::Error>;

    /// The current position.
    fn position(&self) -> (i32, i32);

    /// Homes both axes. The default moves to the origin.
    fn home(&mut self) -> Result<(), Self::Error> {
        self.move_to((0, 0))
    }
}

impl<T: Stage + ?Sized> Stage for &mut T {
    type Error = T::Error;
    fn move_to(&mut self, xy: (i32, i32)) -> Result<(), Self::Error> {
        T::move_to(self, xy)
    }
    fn position(&self) -> (i32, i32) {
        T::position(self)
    }
    fn home(&mut self) -> Result<(), Self::Error> {
        T::home(self)
    }
}

/// The user's push button ("field moved, go on").
pub trait Button {
    /// Why the button could not be read.
    type Error: Error;

    /// Whether the button is held down now.
    fn is_pressed(&mut self) -> Result<bool, Self::Error>;

    /// Waits for a press (down, then up: one press is one event) and returns `Ok(false)` on timeout.
    /// Polls every 10 ms, which also debounces.
    fn wait_press(&mut self, timeout: Duration) -> Result<bool, Self::Error> {
        let start = Instant::now();
        let mut down = false;
        while start.elapsed() < timeout {
            let now = self.is_pressed()?;
            if down && !now {
                return Ok(true);
            }
            down = now;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(false)
    }
}

impl<T: Button + ?Sized> Button for &mut T {
    type Error = T::Error;
    fn is_pressed(&mut self) -> Result<bool, Self::Error> {
        T::is_pressed(self)
    }
    fn wait_press(&mut self, timeout: Duration) -> Result<bool, Self::Error> {
        T::wait_press(self, timeout)
    }
}

/// What the status LED shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Idle or finished: off.
    Idle,
    /// Working (focusing, capturing, counting): on.
    Busy,
    /// Needs the user (paused, move the slide): on too; the console says why.
    Attention,
}

/// The front-panel status LED.
pub trait StatusLed {
    /// Why the LED could not be set.
    type Error: Error;

    /// Shows a status.
    fn show(&mut self, status: Status) -> Result<(), Self::Error>;
}

impl<T: StatusLed + ?Sized> StatusLed for &mut T {
    type Error = T::Error;
    fn show(&mut self, status: Status) -> Result<(), Self::Error> {
        T::show(self, status)
    }
}

/// A pin operation failed (button or status LED).
#[derive(Debug, thiserror::Error)]
#[error("{what}: GPIO error: {message}")]
pub struct PinError {
    /// Which peripheral.
    pub what: &'static str,
    /// The HAL's error, formatted.
    pub message: String,
}

impl Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Io
    }
}

/// A push button on an embedded-hal input pin.
#[derive(Debug)]
pub struct PinButton<P> {
    pin: P,
    active_low: bool,
}

impl<P: InputPin> PinButton<P> {
    /// Wraps a pin; `active_low` for the usual button-to-ground with a pull-up.
    pub fn new(pin: P, active_low: bool) -> Self {
        PinButton { pin, active_low }
    }

    /// Gives the pin back.
    pub fn destroy(self) -> P {
        self.pin
    }
}

impl<P: InputPin> Button for PinButton<P> {
    type Error = PinError;
    fn is_pressed(&mut self) -> Result<bool, PinError> {
        let high = self.pin.is_high().map_err(|e| PinError {
            what: "button",
            message: format!("{e:?}"),
        })?;
        Ok(high != self.active_low)
    }
}

/// A status LED on an embedded-hal output pin (on while busy or waiting for the user).
#[derive(Debug)]
pub struct PinStatusLed<P> {
    pin: P,
}

impl<P: OutputPin> PinStatusLed<P> {
    /// Wraps a pin (LED lit when the pin is high).
    pub fn new(pin: P) -> Self {
        PinStatusLed { pin }
    }

    /// Gives the pin back.
    pub fn destroy(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> StatusLed for PinStatusLed<P> {
    type Error = PinError;
    fn show(&mut self, status: Status) -> Result<(), PinError> {
        let r = match status {
            Status::Idle => self.pin.set_low(),
            Status::Busy | Status::Attention => self.pin.set_high(),
        };
        r.map_err(|e| PinError {
            what: "status LED",
            message: format!("{e:?}"),
        })
    }
}

/// A placeholder for a microscope without a motorised stage: every move fails with [`ErrorKind::Config`],
/// so the run loop asks the user to move the slide instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStage;

/// The error of [`NoStage`].
#[derive(Debug, thiserror::Error)]
#[error("this microscope has no motorised stage")]
pub struct NoStageError;

impl Error for NoStageError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

impl Stage for NoStage {
    type Error = NoStageError;
    fn move_to(&mut self, _: (i32, i32)) -> Result<(), NoStageError> {
        Err(NoStageError)
    }
    fn position(&self) -> (i32, i32) {
        (0, 0)
    }
}

/// All the peripherals of one microscope. The stage, button and status LED are optional.
#[derive(Debug)]
pub struct Microscope<C, L, F, S, B, T> {
    /// Frames.
    pub camera: C,
    /// Transmitted light.
    pub light: L,
    /// Fine focus.
    pub focus: F,
    /// XY stage, if motorised.
    pub stage: Option<S>,
    /// The user's button, if fitted.
    pub button: Option<B>,
    /// The status LED, if fitted.
    pub status: Option<T>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};

    #[test]
    fn button_reads_active_low_and_waits_for_release() {
        let script = [
            PinTx::get(State::High),
            PinTx::get(State::Low),
            PinTx::get(State::Low),
            PinTx::get(State::High),
        ];
        let mut pin = PinMock::new(&script);
        let mut b = PinButton::new(pin.clone(), true);
        assert!(!b.is_pressed().unwrap());
        assert!(b.wait_press(Duration::from_secs(5)).unwrap());
        b.destroy();
        pin.done();
    }

    #[test]
    fn status_led_lights_while_busy() {
        let script = [
            PinTx::set(State::High),
            PinTx::set(State::Low),
            PinTx::set(State::High),
        ];
        let mut pin = PinMock::new(&script);
        let mut led = PinStatusLed::new(pin.clone());
        led.show(Status::Busy).unwrap();
        led.show(Status::Idle).unwrap();
        led.show(Status::Attention).unwrap();
        led.destroy();
        pin.done();
    }
}
