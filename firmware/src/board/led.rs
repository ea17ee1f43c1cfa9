//! The illumination LED on a PWM channel: per-mille brightness → duty cycle with gamma and a hard ceiling.
//!
//! Perceived brightness is not linear in duty: a gamma curve (`duty = max_duty · (level/1000)^γ`) spreads the
//! usable steps over what the camera sees. The ceiling (`max_permille`) protects a LED driven without a
//! current limiter and keeps the camera out of saturation; a level above the ceiling is clamped, a level
//! above [`FULL`] is an error.
//!
//! Generic over any embedded-hal 1.0 [`SetDutyCycle`] (rppal's hardware PWM, a PCA9685 channel, a mock).

use embedded_hal::pwm::SetDutyCycle;

use super::{Illumination, FULL};
use crate::hw::{Error, ErrorKind};

/// Brightness curve and safety ceiling.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedConfig {
    /// Gamma exponent (1.0 = linear; 2.2 is typical for perceived brightness).
    pub gamma: f32,
    /// Highest level ever applied, per mille; higher requests are clamped to it.
    pub max_permille: u16,
}

impl Default for LedConfig {
    fn default() -> Self {
        LedConfig {
            gamma: 2.2,
            max_permille: 900,
        }
    }
}

/// Why the LED could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LedError<E: std::fmt::Debug> {
    /// The PWM peripheral failed.
    #[error("illumination PWM error: {0:?}")]
    Pwm(E),
    /// The level is not in `0..=1000`.
    #[error("illumination level {0}‰ is out of range 0..=1000")]
    OutOfRange(u16),
}

impl<E: std::fmt::Debug> Error for LedError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            LedError::Pwm(_) => ErrorKind::Io,
            LedError::OutOfRange(_) => ErrorKind::Limit,
        }
    }
}

/// A LED on a PWM channel.
#[derive(Debug)]
pub struct PwmLed<P> {
    pwm: P,
    config: LedConfig,
    max_duty: u16,
    level: u16,
}

impl<P: SetDutyCycle> PwmLed<P> {
    /// Wraps a PWM channel (reads its maximum duty once). The LED is left as it is until the first
    /// [`Illumination::set_level`].
    pub fn new(pwm: P, config: LedConfig) -> Self {
        let max_duty = pwm.max_duty_cycle();
        let config = LedConfig {
            gamma: if config.gamma.is_finite() && config.gamma > 0.0 {
                config.gamma
            } else {
                1.0
            },
            max_permille: config.max_permille.min(FULL),
        };
        PwmLed {
            pwm,
            config,
            max_duty,
            level: 0,
        }
    }

    /// Gives the PWM channel back.
    pub fn destroy(self) -> P {
        self.pwm
    }

    /// The level last applied (after clamping), per mille.
    pub fn level(&self) -> u16 {
        self.level
    }

    /// The duty cycle a level maps to (after clamping to the ceiling).
    pub fn duty_for(&self, permille: u16) -> u16 {
        duty_for(self.config, self.max_duty, permille)
    }
}

/// `max_duty · (min(level, ceiling)/1000)^γ`, rounded; 0 stays exactly 0 (off means off).
fn duty_for(config: LedConfig, max_duty: u16, permille: u16) -> u16 {
    let level = permille.min(config.max_permille).min(FULL);
    if level == 0 {
        return 0;
    }
    let x = f32::from(level) / f32::from(FULL);
    let duty = (f32::from(max_duty) * x.powf(config.gamma)).round();
    (duty as u16).min(max_duty)
}

impl<P: SetDutyCycle> Illumination for PwmLed<P> {
    type Error = LedError<P::Error>;

    fn set_level(&mut self, permille: u16) -> Result<(), Self::Error> {
        if permille > FULL {
            return Err(LedError::OutOfRange(permille));
        }
        let duty = self.duty_for(permille);
        self.pwm.set_duty_cycle(duty).map_err(LedError::Pwm)?;
        self.level = permille.min(self.config.max_permille);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as PwmTx};
    use embedded_hal_mock::eh1::MockError;

    #[test]
    fn gamma_curve_and_ceiling_reach_the_pwm() {
        let cfg = LedConfig {
            gamma: 2.0,
            max_permille: 800,
        };
        let script = [
            PwmTx::max_duty_cycle(1000),
            PwmTx::set_duty_cycle(0),   // off is exactly off
            PwmTx::set_duty_cycle(250), // 500‰ → 0.5² = 0.25
            PwmTx::set_duty_cycle(640), // 1000‰ clamped to 800‰ → 0.64
        ];
        let mut pwm = PwmMock::new(&script);
        let mut led = PwmLed::new(pwm.clone(), cfg);
        led.off().unwrap();
        led.set_level(500).unwrap();
        led.set_level(1000).unwrap();
        assert_eq!(led.level(), 800);
        led.destroy();
        pwm.done();
    }

    #[test]
    fn out_of_range_level_touches_nothing() {
        let mut pwm = PwmMock::new(&[PwmTx::max_duty_cycle(255)]);
        let mut led = PwmLed::new(pwm.clone(), LedConfig::default());
        let err = led.set_level(1001).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit);
        led.destroy();
        pwm.done();
    }

    #[test]
    fn pwm_failure_is_an_io_error() {
        let script = [
            PwmTx::max_duty_cycle(100),
            PwmTx::set_duty_cycle(100).with_error(MockError::Io(std::io::ErrorKind::NotConnected)),
        ];
        let mut pwm = PwmMock::new(&script);
        let mut led = PwmLed::new(
            pwm.clone(),
            LedConfig {
                gamma: 1.0,
                max_permille: 1000,
            },
        );
        assert_eq!(led.set_level(1000).unwrap_err().kind(), ErrorKind::Io);
        led.destroy();
        pwm.done();
    }

    #[test]
    fn duty_is_monotonic_in_level() {
        let cfg = LedConfig::default();
        let mut last = 0;
        for l in 0..=FULL {
            let d = duty_for(cfg, u16::MAX, l);
            assert!(d >= last, "level {l}");
            last = d;
        }
    }
}
