//! Raspberry Pi board support (feature `rpi`): the pins of `board.toml` opened with rppal and handed to
//! the generic drivers ([`PwmLed`], [`Stepper`], [`PinButton`], [`PinStatusLed`]); the camera from
//! [`crate::capture::open`]. This is the only module that knows rppal.
//!
//! ## Wiring (defaults of `deploy/board.toml`, BCM numbering)
//!
//! | Function              | GPIO | Header pin | Connects to                                              |
//! |-----------------------|------|------------|----------------------------------------------------------|
//! | LED PWM (PWM0)        | 18   | 12         | gate of a logic-level MOSFET / DIM input of an LED driver |
//! | Focus STEP            | 23   | 16         | STEP of an A4988/DRV8825/TMC2208                           |
//! | Focus DIR             | 24   | 18         | DIR                                                       |
//! | Focus end stop        | 25   | 22         | switch to GND (internal pull-up; closed = triggered)      |
//! | Focus driver EN       | 22   | 15         | EN (active low; optional)                                 |
//! | Button                | 17   | 11         | push button to GND (internal pull-up)                     |
//! | Status LED            | 27   | 13         | LED + 330 Ω to GND                                        |
//! | Stage X STEP/DIR/stop | 5/6/13 | 29/31/33 | second driver (optional `[stage]`)                        |
//! | Stage Y STEP/DIR/stop | 16/20/21 | 36/38/40 | third driver (optional `[stage]`)                       |
//! | Camera                | —    | CSI        | Pi camera module (ribbon), or a USB/UVC camera             |
//!
//! Motor drivers take 3.3 V logic; power them (VMOT, 12 V) from their own supply with a common ground, and
//! never connect or disconnect a motor while VMOT is on.
//!
//! ## Setup
//!
//! - Hardware PWM: add `dtoverlay=pwm,pin=18,func=2` to `/boot/firmware/config.txt` and reboot;
//!   `/sys/class/pwm/pwmchip0` must exist.
//! - The user running `leukoscope` must be in the `gpio` group (and `video` for the camera).
//!
//! ## Troubleshooting
//!
//! - **`Permission denied` opening `/dev/gpiomem`** or the PWM sysfs files: add the user to `gpio`
//!   (`sudo usermod -aG gpio,video $USER`, log in again); the systemd unit sets these groups.
//! - **`PWM channel 0 ... not found`**: the `pwm` overlay is missing or points at another pin; on a Pi 5
//!   the overlay is `dtoverlay=pwm-2chan` and the chip may be `pwmchip2`.
//! - **Focus homing fails with "end stop not reached"**: the switch is unplugged, wired normally-closed
//!   (swap `endstop_active_low`), or the driver has no motor power; check `home_max_steps` covers the
//!   whole travel.
//! - **The motor hums but does not turn / skips steps**: `max_speed` or `accel` too high for the load,
//!   or the driver's current limit too low.
//! - **Banding in frames**: raise `led.frequency_hz` (≥ 20 kHz) so PWM is faster than the rolling shutter.
//! - **`rpicam-vid` not found**: `sudo apt install rpicam-apps` (Bookworm); on Bullseye the program is
//!   `libcamera-vid`, tried automatically.

use embedded_hal::pwm::{ErrorKind as PwmErrorKind, ErrorType, SetDutyCycle};
use rppal::gpio::{Gpio, InputPin, OutputPin};
use rppal::hal::Delay;
use rppal::pwm::{Channel, Polarity, Pwm};

use super::config::{AxisPins, BoardConfig};
use super::led::PwmLed;
use super::stepper::{Stepper, XyStage};
use super::{Microscope, PinButton, PinStatusLed};
use crate::capture::{self, Camera, CaptureError};
use crate::hw::{Error, ErrorKind};

/// rppal's hardware PWM behind embedded-hal 1.0's [`SetDutyCycle`] (rppal 0.22 implements only the 0.2
/// `PwmPin`). Duty is 16-bit.
#[derive(Debug)]
pub struct RpiPwm(Pwm);

/// A PWM error.
#[derive(Debug)]
pub struct RpiPwmError(pub rppal::pwm::Error);

impl embedded_hal::pwm::Error for RpiPwmError {
    fn kind(&self) -> PwmErrorKind {
        PwmErrorKind::Other
    }
}

impl ErrorType for RpiPwm {
    type Error = RpiPwmError;
}

impl SetDutyCycle for RpiPwm {
    fn max_duty_cycle(&self) -> u16 {
        u16::MAX
    }
    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), RpiPwmError> {
        self.0
            .set_duty_cycle(f64::from(duty) / f64::from(u16::MAX))
            .map_err(RpiPwmError)
    }
}

/// One axis on the Pi.
pub type RpiStepper = Stepper<OutputPin, OutputPin, InputPin, Delay>;

/// The button on a Pi.
pub type RpiButton = PinButton<InputPin>;

/// The status LED on a Pi.
pub type RpiStatus = PinStatusLed<OutputPin>;

/// The microscope on a Pi.
pub type RpiMicroscope = Microscope<
    Box<dyn Camera<Error = CaptureError> + Send>,
    PwmLed<RpiPwm>,
    RpiStepper,
    XyStage<RpiStepper>,
    RpiButton,
    RpiStatus,
>;

/// A Pi board: the microscope plus pins it must hold (motor-driver enables, low while open).
pub struct Board {
    /// The peripherals.
    pub scope: RpiMicroscope,
    /// Driver enable pins, held low; released (reset) when the board is dropped, which disables the
    /// drivers.
    _enables: Vec<OutputPin>,
}

/// Why the board could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RpiError {
    /// GPIO could not be opened, or a pin is busy.
    #[error(
        "{what}: cannot open (is the user in the `gpio` group? see board::rpi Troubleshooting)"
    )]
    Gpio {
        /// Which pin.
        what: String,
        /// rppal's error.
        #[source]
        source: rppal::gpio::Error,
    },
    /// The PWM channel could not be opened.
    #[error("led PWM channel {channel}: cannot open (is `dtoverlay=pwm` in config.txt?)")]
    Pwm {
        /// The channel.
        channel: u8,
        /// rppal's error.
        #[source]
        source: rppal::pwm::Error,
    },
    /// The camera could not be opened.
    #[error(transparent)]
    Camera(#[from] CaptureError),
}

impl Error for RpiError {
    fn kind(&self) -> ErrorKind {
        match self {
            RpiError::Gpio { .. } | RpiError::Pwm { .. } => ErrorKind::Config,
            RpiError::Camera(e) => e.kind(),
        }
    }
}

fn gpio_err(what: impl Into<String>) -> impl FnOnce(rppal::gpio::Error) -> RpiError {
    let what = what.into();
    move |source| RpiError::Gpio { what, source }
}

fn output(gpio: &Gpio, pin: u8, what: &str) -> Result<OutputPin, RpiError> {
    Ok(gpio
        .get(pin)
        .map_err(gpio_err(format!("{what} (GPIO{pin})")))?
        .into_output_low())
}

fn input(gpio: &Gpio, pin: u8, what: &str) -> Result<InputPin, RpiError> {
    Ok(gpio
        .get(pin)
        .map_err(gpio_err(format!("{what} (GPIO{pin})")))?
        .into_input_pullup())
}

fn axis(
    gpio: &Gpio,
    pins: &AxisPins,
    name: &'static str,
    enables: &mut Vec<OutputPin>,
) -> Result<RpiStepper, RpiError> {
    if let Some(en) = pins.enable {
        enables.push(output(gpio, en, &format!("{name}.enable"))?); // low = driver on
    }
    Ok(Stepper::new(
        output(gpio, pins.step, &format!("{name}.step"))?,
        output(gpio, pins.dir, &format!("{name}.dir"))?,
        input(gpio, pins.endstop, &format!("{name}.endstop"))?,
        Delay::new(),
        name,
        pins.motion,
    ))
}

impl Board {
    /// Opens every pin of the board file and the camera.
    pub fn open(cfg: &BoardConfig) -> Result<Self, RpiError> {
        let gpio = Gpio::new().map_err(gpio_err("GPIO"))?;
        let channel = if cfg.led.pwm_channel == 0 {
            Channel::Pwm0
        } else {
            Channel::Pwm1
        };
        let pwm = Pwm::with_frequency(
            channel,
            f64::from(cfg.led.frequency_hz),
            0.0,
            Polarity::Normal,
            true,
        )
        .map_err(|source| RpiError::Pwm {
            channel: cfg.led.pwm_channel,
            source,
        })?;
        let mut enables = Vec::new();
        let focus = axis(&gpio, &cfg.focus, "focus", &mut enables)?;
        let stage = match &cfg.stage {
            Some(s) => Some(XyStage::new(
                axis(&gpio, &s.x, "stage.x", &mut enables)?,
                axis(&gpio, &s.y, "stage.y", &mut enables)?,
            )),
            None => None,
        };
        let button = match &cfg.button {
            Some(b) => Some(PinButton::new(input(&gpio, b.pin, "button")?, b.active_low)),
            None => None,
        };
        let status = match &cfg.status {
            Some(s) => Some(PinStatusLed::new(output(&gpio, s.pin, "status")?)),
            None => None,
        };
        let camera = capture::open(&cfg.camera)?;
        Ok(Board {
            scope: Microscope {
                camera,
                light: PwmLed::new(RpiPwm(pwm), cfg.led.led_config()),
                focus,
                stage,
                button,
                status,
            },
            _enables: enables,
        })
    }

    /// The microscope, and the pins that must live as long as it does (for the web page's
    /// [`crate::web::device::Bench`]).
    pub fn into_parts(self) -> (RpiMicroscope, Box<dyn Send>) {
        (self.scope, Box::new(self._enables))
    }
}
