//! Cameras: every way a [`crate::frame::Frame`] reaches the device, behind the [`Camera`] trait.
//!
//! - [`rpicam`]: the Raspberry Pi camera module through a supervised `rpicam-vid` (or `libcamera-vid`)
//!   child process streaming MJPEG on stdout; needs nothing but std.
//! - `v4l2` (feature `v4l2`): USB/UVC microscope cameras, MJPEG or YUYV.
//! - [`replay`]: frames from image files or folders, for demos and regression runs.
//!
//! The simulated microscope's camera, `board::sim::SimCamera`, implements [`Camera`] in
//! [`crate::board::sim`], next to the simulated focus and light whose state it renders.
//!
//! All backends share one error type, [`CaptureError`], whose [`Error::kind`] tells the run loop whether
//! to retry (timeout, dropped frame), back off (disconnected) or stop (configuration).
//!
//! This module must not depend on [`crate::board`] (which uses it): the shared error vocabulary is
//! [`crate::hw`].

use std::path::PathBuf;

use crate::frame::{Frame, FrameError};
use crate::hw::{Error, ErrorKind};

pub mod mjpeg;
pub mod replay;
pub mod rpicam;
#[cfg(feature = "v4l2")]
pub mod v4l2;
pub mod yuyv;

/// A source of frames.
pub trait Camera {
    /// Why a frame could not be had.
    type Error: Error;

    /// Takes the next frame (blocking, bounded by the backend's timeout).
    fn capture(&mut self) -> Result<Frame, Self::Error>;

    /// Drops frames already queued so the next [`Camera::capture`] shows the scene as it is *now* (after a
    /// motor move). The default takes and discards one frame.
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.capture().map(|_| ())
    }
}

impl<T: Camera + ?Sized> Camera for &mut T {
    type Error = T::Error;
    fn capture(&mut self) -> Result<Frame, Self::Error> {
        T::capture(self)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        T::flush(self)
    }
}

impl<T: Camera + ?Sized> Camera for Box<T> {
    type Error = T::Error;
    fn capture(&mut self) -> Result<Frame, Self::Error> {
        T::capture(self)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        T::flush(self)
    }
}

/// Why a frame could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No frame arrived in time.
    #[error("{backend}: no frame within {ms} ms")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// The timeout.
        ms: u64,
    },
    /// A frame arrived damaged (wrong length, injected corruption); it was dropped.
    #[error("{backend}: frame {frame} dropped: {reason}")]
    Dropped {
        /// Which backend.
        backend: &'static str,
        /// Frame number in this backend's stream.
        frame: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// A frame arrived but could not be decoded (truncated JPEG, unreadable file); it was dropped.
    #[error("{backend}: frame {frame} dropped")]
    Undecodable {
        /// Which backend.
        backend: &'static str,
        /// Frame number in this backend's stream.
        frame: u64,
        /// Why it did not decode.
        #[source]
        source: FrameError,
    },
    /// The camera is gone: unplugged, or its process exited. The backend reconnects on the next capture.
    #[error("{backend}: camera disconnected: {reason}")]
    Disconnected {
        /// Which backend.
        backend: &'static str,
        /// What happened (device node, exit status, last lines of the camera program's log).
        reason: String,
        /// The system's error, where there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The camera program is not installed.
    #[error(
        "none of {programs:?} could be started (install rpicam-apps: apt install rpicam-apps)"
    )]
    NotInstalled {
        /// Programs tried.
        programs: Vec<String>,
        /// The last spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A file or device could not be read.
    #[error("{path}: cannot read")]
    Io {
        /// The file or device.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The camera cannot be used as configured (format, size, empty replay folder).
    #[error("{backend}: {reason}")]
    Config {
        /// Which backend.
        backend: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A replay source or the simulator's slide names no image (missing, unreadable folder, no images).
    #[error(transparent)]
    Inputs(crate::inputs::InputError),
    /// An image of the simulator's slide could not be loaded.
    #[error("sim: cannot load the slide")]
    Slide {
        /// Why (the error names the file).
        #[source]
        source: FrameError,
    },
    /// A replay ran out of frames.
    #[error("{backend}: end of stream after {frames} frames")]
    EndOfStream {
        /// Which backend.
        backend: &'static str,
        /// Frames served.
        frames: u64,
    },
}

impl Error for CaptureError {
    fn kind(&self) -> ErrorKind {
        match self {
            CaptureError::Timeout { .. } => ErrorKind::Timeout,
            CaptureError::Dropped { .. } | CaptureError::Undecodable { .. } => ErrorKind::Dropped,
            CaptureError::Disconnected { .. } => ErrorKind::Disconnected,
            CaptureError::NotInstalled { .. }
            | CaptureError::Config { .. }
            | CaptureError::Slide { .. } => ErrorKind::Config,
            CaptureError::Io { .. } => ErrorKind::Io,
            CaptureError::Inputs(e) => match e {
                crate::inputs::InputError::Folder { .. } => ErrorKind::Io,
                _ => ErrorKind::Config,
            },
            CaptureError::EndOfStream { .. } => ErrorKind::Other,
        }
    }
}

/// Which camera backend a board uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pi camera module via `rpicam-vid` / `libcamera-vid`.
    #[default]
    Rpicam,
    /// USB/UVC camera via V4L2 (feature `v4l2`).
    V4l2,
    /// Image files.
    Replay,
}

/// Pixel format asked of a V4L2 camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG (most USB microscope cameras at full resolution).
    #[default]
    Mjpeg,
    /// Packed YUV 4:2:2 (uncompressed; lower resolutions only over USB 2).
    Yuyv,
}

/// The `[camera]` table of the board file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Which backend.
    pub backend: Backend,
    /// Requested width.
    pub width: u32,
    /// Requested height.
    pub height: u32,
    /// Requested frame rate.
    pub framerate: u32,
    /// How long to wait for one frame.
    pub timeout_ms: u64,
    /// V4L2 device node.
    pub device: PathBuf,
    /// V4L2 pixel format.
    pub format: PixelFormat,
    /// Camera program instead of `rpicam-vid` / `libcamera-vid` (tests use a script).
    pub program: Option<String>,
    /// Extra arguments for the camera program (e.g. `["--shutter", "8000"]`).
    pub extra_args: Vec<String>,
    /// Replay source: an image file or a folder of them.
    pub path: Option<PathBuf>,
    /// This microscope's red-cell diameter in its frames' pixels, measured once at calibration (as
    /// `classify --rbc-px auto` reports it): `run` then brings every field to the model's training scale
    /// by it. `run --rbc-px` overrides it; unset, fields are scaled by their size.
    pub rbc_px: Option<f32>,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            backend: Backend::Rpicam,
            width: 1280,
            height: 960,
            framerate: 10,
            timeout_ms: 2000,
            device: PathBuf::from("/dev/video0"),
            format: PixelFormat::Mjpeg,
            program: None,
            extra_args: Vec::new(),
            path: None,
            rbc_px: None,
        }
    }
}

/// Opens the configured camera.
pub fn open(
    config: &CameraConfig,
) -> Result<Box<dyn Camera<Error = CaptureError> + Send>, CaptureError> {
    match config.backend {
        Backend::Rpicam => Ok(Box::new(rpicam::RpiCam::new(config.clone()))),
        Backend::Replay => {
            let path = config.path.clone().ok_or_else(|| CaptureError::Config {
                backend: "replay",
                reason: "camera.path (a file or folder of images) is required".into(),
            })?;
            Ok(Box::new(replay::Replay::open(&path, true)?))
        }
        #[cfg(feature = "v4l2")]
        Backend::V4l2 => Ok(Box::new(v4l2::V4l2Camera::open(config)?)),
        #[cfg(not(feature = "v4l2"))]
        Backend::V4l2 => Err(CaptureError::Config {
            backend: "v4l2",
            reason: "this build has no V4L2 support; rebuild with `--features v4l2`".into(),
        }),
    }
}
