//! A STEP/DIR stepper axis (A4988, DRV8825, TMC2208 in legacy mode) with a trapezoidal speed ramp, end-stop
//! homing and soft limits; and an XY stage made of two of them.
//!
//! Generic over embedded-hal 1.0: two [`OutputPin`]s (STEP, DIR), one [`InputPin`] (end stop) and a
//! [`DelayNs`]. The driver owns its pins (`new(...)` / `destroy()`), counts every step it issues and refuses
//! to move before [`Focus::home`] has found the end stop, because a lost position on a focus axis drives the
//! objective into the slide.
//!
//! Timing: each step is a `pulse_ns` high pulse followed by a low time that makes up the step interval of
//! the ramp: speed rises by `sqrt(2·a·i)` from the start, is capped at
//! `max_speed`, and falls symmetrically towards the end, so short moves become triangles.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};

use super::{Focus, Stage};
use crate::hw::{Error, ErrorKind};

/// Mechanics and safety limits of one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StepperConfig {
    /// Lowest allowed position after homing (steps from the end stop).
    pub min: i32,
    /// Highest allowed position.
    pub max: i32,
    /// Cruise speed, steps per second.
    pub max_speed: u32,
    /// Acceleration, steps per second².
    pub accel: u32,
    /// STEP high time, ns (A4988 needs ≥ 1 µs).
    pub pulse_ns: u32,
    /// DIR setup time before the first STEP edge, ns.
    pub dir_setup_ns: u32,
    /// Speed while seeking the end stop, steps per second.
    pub home_speed: u32,
    /// Give up homing after this many steps without the end stop.
    pub home_max_steps: u32,
    /// Steps to back off the end stop after it triggered (the axis's zero stays at the end stop).
    pub backoff_steps: u32,
    /// End stop reads low when triggered (switch to ground with a pull-up).
    pub endstop_active_low: bool,
    /// Swap the meaning of DIR (motor wired the other way round).
    pub invert_dir: bool,
}

impl Default for StepperConfig {
    fn default() -> Self {
        StepperConfig {
            min: 0,
            max: 4000,
            max_speed: 2000,
            accel: 8000,
            pulse_ns: 2_000,
            dir_setup_ns: 1_000,
            home_speed: 400,
            home_max_steps: 10_000,
            backoff_steps: 20,
            endstop_active_low: true,
            invert_dir: false,
        }
    }
}

/// Why an axis did not move.
#[derive(Debug, thiserror::Error)]
pub enum StepperError {
    /// A STEP, DIR or end-stop pin operation failed.
    #[error("{axis}: {pin} pin error: {message}")]
    Pin {
        /// Axis name.
        axis: &'static str,
        /// "STEP", "DIR" or "end stop".
        pin: &'static str,
        /// The HAL's error.
        message: String,
    },
    /// Moves are refused until the axis is homed.
    #[error("{axis}: not homed; home the axis first")]
    NotHomed {
        /// Axis name.
        axis: &'static str,
    },
    /// The target is outside the soft limits; nothing moved.
    #[error("{axis}: target {target} outside soft limits {min}..={max}")]
    SoftLimit {
        /// Axis name.
        axis: &'static str,
        /// Requested position.
        target: i32,
        /// Lower limit.
        min: i32,
        /// Upper limit.
        max: i32,
    },
    /// Homing gave up: the motor is stalled, unpowered, or the end stop is unplugged.
    #[error(
        "{axis}: end stop not reached after {steps} steps (motor stalled or end stop unplugged?)"
    )]
    EndStopNotFound {
        /// Axis name.
        axis: &'static str,
        /// Steps issued.
        steps: u32,
    },
}

impl Error for StepperError {
    fn kind(&self) -> ErrorKind {
        match self {
            StepperError::Pin { .. } => ErrorKind::Io,
            StepperError::NotHomed { .. } => ErrorKind::NotHomed,
            StepperError::SoftLimit { .. } => ErrorKind::Limit,
            StepperError::EndStopNotFound { .. } => ErrorKind::Stalled,
        }
    }
}

/// The interval (ns) between step `i` and step `i + 1` of an `n`-step move: trapezoidal (or triangular)
/// speed profile, `v = min(max_speed, sqrt(2·a·(i+1)), sqrt(2·a·(n−i)))`.
fn ramp_interval_ns(i: u32, n: u32, config: &StepperConfig) -> u32 {
    let a = f64::from(config.accel.max(1));
    let from_start = (2.0 * a * f64::from(i + 1)).sqrt();
    let to_end = (2.0 * a * f64::from(n.saturating_sub(i).max(1))).sqrt();
    let v = from_start
        .min(to_end)
        .min(f64::from(config.max_speed.max(1)));
    (1e9 / v).min(f64::from(u32::MAX)) as u32
}

/// One STEP/DIR axis with an end stop.
#[derive(Debug)]
pub struct Stepper<STEP, DIR, END, D> {
    step: STEP,
    dir: DIR,
    end: END,
    delay: D,
    config: StepperConfig,
    name: &'static str,
    position: i32,
    homed: bool,
}

impl<STEP, DIR, END, D> Stepper<STEP, DIR, END, D>
where
    STEP: OutputPin,
    DIR: OutputPin,
    END: InputPin,
    D: DelayNs,
{
    /// Takes the pins and a delay. The axis starts unhomed.
    pub fn new(
        step: STEP,
        dir: DIR,
        end: END,
        delay: D,
        name: &'static str,
        config: StepperConfig,
    ) -> Self {
        Stepper {
            step,
            dir,
            end,
            delay,
            config,
            name,
            position: 0,
            homed: false,
        }
    }

    /// Gives the pins and the delay back.
    pub fn destroy(self) -> (STEP, DIR, END, D) {
        (self.step, self.dir, self.end, self.delay)
    }

    /// Whether [`Focus::home`] succeeded.
    pub fn is_homed(&self) -> bool {
        self.homed
    }

    fn pin_err(&self, pin: &'static str, e: impl std::fmt::Debug) -> StepperError {
        StepperError::Pin {
            axis: self.name,
            pin,
            message: format!("{e:?}"),
        }
    }

    fn set_dir(&mut self, positive: bool) -> Result<(), StepperError> {
        let r = if positive != self.config.invert_dir {
            self.dir.set_high()
        } else {
            self.dir.set_low()
        };
        r.map_err(|e| self.pin_err("DIR", e))?;
        self.delay.delay_ns(self.config.dir_setup_ns);
        Ok(())
    }

    fn pulse(&mut self, interval_ns: u32) -> Result<(), StepperError> {
        self.step.set_high().map_err(|e| self.pin_err("STEP", e))?;
        self.delay.delay_ns(self.config.pulse_ns);
        self.step.set_low().map_err(|e| self.pin_err("STEP", e))?;
        self.delay
            .delay_ns(interval_ns.saturating_sub(self.config.pulse_ns));
        Ok(())
    }

    fn endstop_triggered(&mut self) -> Result<bool, StepperError> {
        let high = self
            .end
            .is_high()
            .map_err(|e| self.pin_err("end stop", e))?;
        Ok(high != self.config.endstop_active_low)
    }
}

impl<STEP, DIR, END, D> Focus for Stepper<STEP, DIR, END, D>
where
    STEP: OutputPin,
    DIR: OutputPin,
    END: InputPin,
    D: DelayNs,
{
    type Error = StepperError;

    fn move_to(&mut self, target: i32) -> Result<(), StepperError> {
        if !self.homed {
            return Err(StepperError::NotHomed { axis: self.name });
        }
        let (min, max) = (self.config.min, self.config.max);
        if target < min || target > max {
            return Err(StepperError::SoftLimit {
                axis: self.name,
                target,
                min,
                max,
            });
        }
        let n = target.abs_diff(self.position);
        if n == 0 {
            return Ok(());
        }
        let positive = target > self.position;
        self.set_dir(positive)?;
        for i in 0..n {
            self.pulse(ramp_interval_ns(i, n, &self.config))?;
            // Counted per step so the position stays true when a pin fails mid-move.
            self.position += if positive { 1 } else { -1 };
        }
        Ok(())
    }

    fn position(&self) -> i32 {
        self.position
    }

    fn limits(&self) -> (i32, i32) {
        (self.config.min, self.config.max)
    }

    /// Seeks the end stop (towards negative positions) at `home_speed`, makes it the zero, then backs off
    /// `backoff_steps`.
    fn home(&mut self) -> Result<(), StepperError> {
        self.homed = false;
        let interval = 1_000_000_000 / self.config.home_speed.max(1);
        self.set_dir(false)?;
        let mut steps = 0;
        while !self.endstop_triggered()? {
            if steps >= self.config.home_max_steps {
                return Err(StepperError::EndStopNotFound {
                    axis: self.name,
                    steps,
                });
            }
            self.pulse(interval)?;
            steps += 1;
        }
        self.position = 0;
        if self.config.backoff_steps > 0 {
            self.set_dir(true)?;
            for _ in 0..self.config.backoff_steps {
                self.pulse(interval)?;
                self.position += 1;
            }
        }
        self.homed = true;
        Ok(())
    }
}

/// An XY stage made of two axes of the same kind (steppers, or simulated axes).
#[derive(Debug)]
pub struct XyStage<A> {
    /// The X axis.
    pub x: A,
    /// The Y axis.
    pub y: A,
}

impl<A: Focus> XyStage<A> {
    /// Pairs two axes.
    pub fn new(x: A, y: A) -> Self {
        XyStage { x, y }
    }

    /// Gives the axes back.
    pub fn destroy(self) -> (A, A) {
        (self.x, self.y)
    }
}

impl<A: Focus> Stage for XyStage<A> {
    type Error = A::Error;

    fn move_to(&mut self, (x, y): (i32, i32)) -> Result<(), A::Error> {
        self.x.move_to(x)?;
        self.y.move_to(y)
    }

    fn position(&self) -> (i32, i32) {
        (self.x.position(), self.y.position())
    }

    fn home(&mut self) -> Result<(), A::Error> {
        self.x.home()?;
        self.y.home()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
    use embedded_hal_mock::eh1::MockError;

    fn cfg() -> StepperConfig {
        StepperConfig {
            min: 0,
            max: 100,
            backoff_steps: 2,
            home_max_steps: 5,
            ..StepperConfig::default()
        }
    }

    fn pulses(n: usize) -> Vec<PinTx> {
        (0..n)
            .flat_map(|_| [PinTx::set(State::High), PinTx::set(State::Low)])
            .collect()
    }

    #[test]
    fn homes_on_the_end_stop_then_moves_within_limits() {
        // End stop (active low) open twice, then closed.
        let end_script = [
            PinTx::get(State::High),
            PinTx::get(State::High),
            PinTx::get(State::Low),
        ];
        let mut dir_script = vec![PinTx::set(State::Low), PinTx::set(State::High)];
        // Move 2 → 5 (+3), then 5 → 1 (−4).
        dir_script.extend([PinTx::set(State::High), PinTx::set(State::Low)]);
        let step_script = pulses(2 + 2 + 3 + 4);
        let (mut step, mut dir, mut end) = (
            PinMock::new(&step_script),
            PinMock::new(&dir_script),
            PinMock::new(&end_script),
        );
        let mut axis = Stepper::new(
            step.clone(),
            dir.clone(),
            end.clone(),
            NoopDelay::new(),
            "focus",
            cfg(),
        );
        assert_eq!(axis.move_to(3).unwrap_err().kind(), ErrorKind::NotHomed);
        axis.home().unwrap();
        assert_eq!(axis.position(), 2);
        axis.move_to(5).unwrap();
        assert_eq!(axis.position(), 5);
        axis.move_to(1).unwrap();
        assert_eq!(axis.position(), 1);
        axis.move_to(1).unwrap(); // no-op: no pin touched
        let err = axis.move_to(101).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit);
        assert!(err.to_string().contains("101"), "{err}");
        axis.destroy();
        step.done();
        dir.done();
        end.done();
    }

    #[test]
    fn homing_gives_up_when_the_end_stop_never_closes() {
        let end_script: Vec<PinTx> = (0..6).map(|_| PinTx::get(State::High)).collect();
        let (mut step, mut dir, mut end) = (
            PinMock::new(&pulses(5)),
            PinMock::new(&[PinTx::set(State::Low)]),
            PinMock::new(&end_script),
        );
        let mut axis = Stepper::new(
            step.clone(),
            dir.clone(),
            end.clone(),
            NoopDelay::new(),
            "focus",
            cfg(),
        );
        let err = axis.home().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Stalled);
        assert!(!axis.is_homed());
        axis.destroy();
        step.done();
        dir.done();
        end.done();
    }

    #[test]
    fn step_pin_failure_keeps_the_true_position() {
        let end_script = [PinTx::get(State::Low)];
        let mut step_script = pulses(2); // back-off
        step_script.extend(pulses(1)); // first step of the move
        step_script
            .push(PinTx::set(State::High).with_error(MockError::Io(std::io::ErrorKind::Other)));
        let dir_script = [
            PinTx::set(State::Low),
            PinTx::set(State::High),
            PinTx::set(State::High),
        ];
        let (mut step, mut dir, mut end) = (
            PinMock::new(&step_script),
            PinMock::new(&dir_script),
            PinMock::new(&end_script),
        );
        let mut axis = Stepper::new(
            step.clone(),
            dir.clone(),
            end.clone(),
            NoopDelay::new(),
            "focus",
            cfg(),
        );
        axis.home().unwrap();
        let err = axis.move_to(10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(axis.position(), 3);
        axis.destroy();
        step.done();
        dir.done();
        end.done();
    }

    #[test]
    fn ramp_is_symmetric_trapezoid_capped_at_cruise_speed() {
        let c = StepperConfig {
            max_speed: 1000,
            accel: 10_000,
            ..StepperConfig::default()
        };
        let n = 400;
        let iv: Vec<u32> = (0..n).map(|i| ramp_interval_ns(i, n, &c)).collect();
        assert_eq!(*iv.iter().min().unwrap(), 1_000_000); // cruise: 1 ms per step
        assert!(iv[0] > iv[10] && iv[10] > iv[40]); // accelerating
        for i in 0..n as usize {
            // symmetric up to the one-step offset of the two formulas
            let j = n as usize - 1 - i;
            let (a, b) = (iv[i] as f64, iv[j] as f64);
            assert!(
                (a - b).abs() / a < 0.2 || i.abs_diff(j) < 2,
                "{i}: {a} vs {b}"
            );
        }
        // A short move never reaches cruise speed: triangle.
        let short: Vec<u32> = (0..10).map(|i| ramp_interval_ns(i, 10, &c)).collect();
        assert!(short.iter().all(|&t| t > 1_000_000));
    }
}
