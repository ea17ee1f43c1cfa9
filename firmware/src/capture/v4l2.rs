//! USB/UVC microscope cameras through V4L2 (feature `v4l2`; the `v4l` crate needs `apt install
//! libclang-dev` to build). MJPEG frames are decoded with [`Frame::decode`]; YUYV with [`super::yuyv`].
//!
//! A camera unplugged mid-stream makes the dequeue fail: that is reported as
//! [`CaptureError::Disconnected`], the stream is dropped, and the next capture reopens the device node
//! (which reappears with the same name when the camera is plugged back into the same port).

use std::path::Path;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{yuyv, Camera, CameraConfig, CaptureError, PixelFormat};
use crate::frame::Frame;

/// An open V4L2 capture stream.
pub struct V4l2Camera {
    config: CameraConfig,
    stream: Option<(Stream<'static>, u32, u32, PixelFormat)>,
    frames: u64,
}

impl std::fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("device", &self.config.device)
            .field("open", &self.stream.is_some())
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaptureError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CaptureError::Disconnected {
                backend: "v4l2",
                reason: path.display().to_string(),
                source: Some(e),
            }
        } else {
            CaptureError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    }
}

impl V4l2Camera {
    /// Opens the device and negotiates the format.
    pub fn open(config: &CameraConfig) -> Result<Self, CaptureError> {
        let mut cam = V4l2Camera {
            config: config.clone(),
            stream: None,
            frames: 0,
        };
        cam.reopen()?;
        Ok(cam)
    }

    fn reopen(&mut self) -> Result<(), CaptureError> {
        let c = &self.config;
        let dev = Device::with_path(&c.device).map_err(io(&c.device))?;
        let mut fmt = dev.format().map_err(io(&c.device))?;
        fmt.width = c.width;
        fmt.height = c.height;
        fmt.fourcc = match c.format {
            PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
            PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        };
        let got = dev.set_format(&fmt).map_err(io(&c.device))?;
        if got.fourcc != fmt.fourcc {
            return Err(CaptureError::Config {
                backend: "v4l2",
                reason: format!(
                    "{} does not offer {:?} (it gave {}); try format = \"{}\"",
                    c.device.display(),
                    c.format,
                    got.fourcc,
                    if c.format == PixelFormat::Mjpeg {
                        "yuyv"
                    } else {
                        "mjpeg"
                    }
                ),
            });
        }
        let mut stream =
            Stream::with_buffers(&dev, Type::VideoCapture, 4).map_err(io(&c.device))?;
        stream.set_timeout(Duration::from_millis(c.timeout_ms.max(1)));
        self.stream = Some((stream, got.width, got.height, c.format));
        Ok(())
    }
}

impl Camera for V4l2Camera {
    type Error = CaptureError;

    fn capture(&mut self) -> Result<Frame, CaptureError> {
        if self.stream.is_none() {
            self.reopen()?;
        }
        let Some((stream, w, h, format)) = self.stream.as_mut() else {
            return Err(CaptureError::Disconnected {
                backend: "v4l2",
                reason: "stream not open".into(),
                source: None,
            });
        };
        let (w, h, format) = (*w, *h, *format);
        let frame_no = self.frames;
        let result = match stream.next() {
            Ok((buf, meta)) => {
                let used = (meta.bytesused as usize).min(buf.len());
                let data = &buf[..used];
                match format {
                    PixelFormat::Mjpeg => {
                        Frame::decode(data).map_err(|source| CaptureError::Undecodable {
                            backend: "v4l2",
                            frame: frame_no,
                            source,
                        })
                    }
                    PixelFormat::Yuyv => yuyv::to_frame(w, h, data, frame_no),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(CaptureError::Timeout {
                backend: "v4l2",
                ms: self.config.timeout_ms,
            }),
            Err(e) => {
                self.stream = None; // reopen on the next capture
                Err(CaptureError::Disconnected {
                    backend: "v4l2",
                    reason: self.config.device.display().to_string(),
                    source: Some(e),
                })
            }
        };
        self.frames += 1;
        result
    }
}
