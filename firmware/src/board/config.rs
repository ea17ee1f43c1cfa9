//! The board description file (`board.toml`): which GPIO drives what, motor mechanics, and the camera.
//!
//! Parsed and checked on any host (so a typo is caught before it reaches a Pi); used by
//! `board::rpi` to open the pins. Pins are BCM GPIO numbers. Example (also in `deploy/board.toml`):
//!
//! ```toml
//! [led]
//! pwm_channel = 0        # hardware PWM0 = GPIO18 (needs dtoverlay=pwm in config.txt)
//! frequency_hz = 20000
//! gamma = 2.2
//! max_permille = 900
//!
//! [focus]
//! step = 23
//! dir = 24
//! endstop = 25
//! max = 4000
//!
//! [button]
//! pin = 17
//!
//! [status]
//! pin = 27
//!
//! [camera]
//! backend = "rpicam"
//! width = 1280
//! height = 960
//! rbc_px = 52.0          # optional: red-cell diameter in frame pixels, from `classify --rbc-px auto`
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::led::LedConfig;
use super::stepper::StepperConfig;
use crate::capture::CameraConfig;
use crate::hw::{Error, ErrorKind};

/// The whole board.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    /// Illumination LED.
    pub led: LedPins,
    /// Fine-focus axis.
    pub focus: AxisPins,
    /// Optional motorised stage.
    #[serde(default)]
    pub stage: Option<StagePins>,
    /// Optional push button.
    #[serde(default)]
    pub button: Option<ButtonPin>,
    /// Optional status LED.
    #[serde(default)]
    pub status: Option<StatusPin>,
    /// The camera.
    #[serde(default)]
    pub camera: CameraConfig,
}

/// The illumination LED: a hardware PWM channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedPins {
    /// Hardware PWM channel: 0 (GPIO18 or GPIO12) or 1 (GPIO19 or GPIO13), as set by the `pwm` overlay.
    pub pwm_channel: u8,
    /// PWM frequency; ≥ 20 kHz avoids banding against the camera's rolling shutter.
    #[serde(default = "default_pwm_hz")]
    pub frequency_hz: u32,
    /// Gamma exponent.
    #[serde(default = "default_gamma")]
    pub gamma: f32,
    /// Ceiling, per mille.
    #[serde(default = "default_max")]
    pub max_permille: u16,
}

fn default_pwm_hz() -> u32 {
    20_000
}
fn default_gamma() -> f32 {
    2.2
}
fn default_max() -> u16 {
    900
}

impl LedPins {
    /// The brightness curve.
    pub fn led_config(&self) -> LedConfig {
        LedConfig {
            gamma: self.gamma,
            max_permille: self.max_permille,
        }
    }
}

/// One STEP/DIR axis with an end stop, plus its mechanics.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AxisPins {
    /// STEP pin.
    pub step: u8,
    /// DIR pin.
    pub dir: u8,
    /// End-stop input (pull-up enabled).
    pub endstop: u8,
    /// Optional driver ENABLE pin (active low), driven low while the session runs.
    #[serde(default)]
    pub enable: Option<u8>,
    /// Mechanics and limits.
    #[serde(flatten)]
    pub motion: StepperConfig,
}

/// Two axes and how far one field of view is, in steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePins {
    /// X axis.
    pub x: AxisPins,
    /// Y axis.
    pub y: AxisPins,
    /// Steps between neighbouring fields `(dx, dy)`.
    pub field_pitch: (i32, i32),
    /// Fields to visit `(columns, rows)`.
    pub grid: (u32, u32),
}

/// The user's button.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonPin {
    /// Input pin (pull-up enabled).
    pub pin: u8,
    /// Pressed reads low (button to ground).
    #[serde(default = "yes")]
    pub active_low: bool,
}

fn yes() -> bool {
    true
}

/// The status LED.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPin {
    /// Output pin.
    pub pin: u8,
}

/// Why a board file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read board file")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field, or a field has the wrong type.
    #[error("{path}: not a valid board file")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line, column and field).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// Parsed, but the values do not make sense.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// GPIO numbers of the 40-pin header.
const MAX_GPIO: u8 = 27;

impl BoardConfig {
    /// Reads and checks a board file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks board-file text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: BoardConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        cfg.check().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    /// Every pin once, in range; limits ordered; PWM channel 0 or 1.
    fn check(&self) -> Result<(), String> {
        let mut used: BTreeMap<u8, String> = BTreeMap::new();
        let mut claim = |pin: u8, what: String| -> Result<(), String> {
            if pin > MAX_GPIO {
                return Err(format!(
                    "{what}: GPIO{pin} is not on the 40-pin header (0..=27)"
                ));
            }
            if let Some(other) = used.insert(pin, what.clone()) {
                return Err(format!("GPIO{pin} is used twice: {other} and {what}"));
            }
            Ok(())
        };
        if self.led.pwm_channel > 1 {
            return Err(format!(
                "led.pwm_channel = {}: the Pi has hardware PWM channels 0 and 1",
                self.led.pwm_channel
            ));
        }
        // The PWM channel's default pin (GPIO18/19) is taken by the overlay.
        claim(18 + self.led.pwm_channel, "led (PWM)".into())?;
        let mut axes = vec![("focus", &self.focus)];
        if let Some(s) = &self.stage {
            axes.push(("stage.x", &s.x));
            axes.push(("stage.y", &s.y));
            crate::session::check_grid(s.grid).map_err(|e| format!("stage.{e}"))?;
        }
        for (name, a) in axes {
            claim(a.step, format!("{name}.step"))?;
            claim(a.dir, format!("{name}.dir"))?;
            claim(a.endstop, format!("{name}.endstop"))?;
            if let Some(en) = a.enable {
                claim(en, format!("{name}.enable"))?;
            }
            if a.motion.min > a.motion.max {
                return Err(format!(
                    "{name}: min {} is above max {}",
                    a.motion.min, a.motion.max
                ));
            }
            if a.motion.max_speed == 0 || a.motion.accel == 0 || a.motion.home_speed == 0 {
                return Err(format!("{name}: speeds and acceleration must be positive"));
            }
        }
        if let Some(d) = self.camera.rbc_px {
            if !crate::scale::RBC_PX_RANGE.contains(&d) {
                return Err(format!(
                    "camera.rbc_px = {d}: a red-cell diameter is {} to {} pixels",
                    crate::scale::RBC_PX_RANGE.start(),
                    crate::scale::RBC_PX_RANGE.end()
                ));
            }
        }
        if let Some(b) = &self.button {
            claim(b.pin, "button".into())?;
        }
        if let Some(s) = &self.status {
            claim(s.pin, "status".into())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/board.toml");

    #[test]
    fn example_board_file_parses() {
        let cfg = BoardConfig::parse(EXAMPLE, Path::new("deploy/board.toml")).unwrap();
        assert_eq!(cfg.focus.step, 23);
        assert!(cfg.button.is_some());
    }

    #[test]
    fn a_calibrated_red_cell_diameter_is_read_and_checked() {
        let with = |v: &str| {
            EXAMPLE.replace(
                "timeout_ms = 2000",
                &format!("timeout_ms = 2000\nrbc_px = {v}"),
            )
        };
        let cfg = BoardConfig::parse(&with("83.0"), Path::new("b.toml")).unwrap();
        assert_eq!(cfg.camera.rbc_px, Some(83.0));
        assert_eq!(
            BoardConfig::parse(EXAMPLE, Path::new("b.toml"))
                .unwrap()
                .camera
                .rbc_px,
            None
        );
        for bad in ["0.0", "-5.0", "1e9"] {
            let msg = BoardConfig::parse(&with(bad), Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("camera.rbc_px"), "{bad}: {msg}");
        }
    }

    #[test]
    fn pin_used_twice_is_named() {
        let text = EXAMPLE.replace("dir = 24", "dir = 23");
        let msg = BoardConfig::parse(&text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("GPIO23 is used twice"), "{msg}");
        assert!(msg.starts_with("b.toml"), "{msg}");
    }

    #[test]
    fn typo_gives_line_and_file() {
        let err = BoardConfig::parse("[led]\npwm_chanel = 0\n", Path::new("b.toml")).unwrap_err();
        let msg = crate::hw::chain(&err);
        assert!(
            msg.starts_with("b.toml: not a valid board file: ")
                && msg.contains("line 2")
                && msg.contains("pwm_chanel"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_says_so_once() {
        let err = BoardConfig::load(Path::new("/nonexistent/board.toml")).unwrap_err();
        let msg = crate::hw::chain(&err);
        assert_eq!(msg.matches("No such file").count(), 1, "{msg}");
        assert!(
            msg.starts_with("/nonexistent/board.toml: cannot read"),
            "{msg}"
        );
    }
}
