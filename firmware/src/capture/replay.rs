//! Replay: frames from image files, as if a camera produced them (demos, regression runs, the HIL suite's
//! capture-timing baseline).

use std::path::{Path, PathBuf};

use super::{Camera, CaptureError};
use crate::frame::Frame;
use crate::inputs::list_images;

/// Images of a file or folder (sorted, recursively; the formats of [`crate::inputs`]), served in order.
#[derive(Debug)]
pub struct Replay {
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    served: u64,
}

impl Replay {
    /// Lists the images; `looping` starts again after the last one instead of ending the stream.
    pub fn open(path: &Path, looping: bool) -> Result<Self, CaptureError> {
        Ok(Replay {
            files: list_images(path).map_err(CaptureError::Inputs)?,
            next: 0,
            looping,
            served: 0,
        })
    }

    /// The files, in serving order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Camera for Replay {
    type Error = CaptureError;

    fn capture(&mut self) -> Result<Frame, CaptureError> {
        if self.next >= self.files.len() {
            if !self.looping {
                return Err(CaptureError::EndOfStream {
                    backend: "replay",
                    frames: self.served,
                });
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        self.served += 1;
        Frame::open(path).map_err(|source| CaptureError::Undecodable {
            backend: "replay",
            frame: self.served - 1,
            source,
        })
    }

    fn flush(&mut self) -> Result<(), CaptureError> {
        Ok(()) // files do not go stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::{Error, ErrorKind};

    #[test]
    fn serves_bundled_smears_in_order_then_ends() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/smears"));
        let mut r = Replay::open(dir, false).unwrap();
        let n = r.files().len();
        assert_eq!(n, 8);
        for _ in 0..n {
            assert_eq!(r.capture().unwrap().width(), 640);
        }
        assert_eq!(r.capture().unwrap_err().kind(), ErrorKind::Other);
    }

    #[test]
    fn missing_folder_is_named() {
        let msg = Replay::open(Path::new("/nonexistent/slide"), true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/slide"), "{msg}");
    }
}
