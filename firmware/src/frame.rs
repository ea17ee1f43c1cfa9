//! Frames: an owned RGB8 image, decoded from a file or handed over by a camera.
//!
//! This module only decodes and validates pixels; it knows nothing about cells or models.

use std::path::{Path, PathBuf};

/// Largest frame side we accept when decoding a file. Bigger images are rejected with a clear error rather
/// than risking a multi-gigabyte allocation on the device.
pub const MAX_SIDE: u32 = 16_384;

/// The image formats [`Frame::decode`] reads (microscope cameras write BMP and TIFF).
pub const FORMATS: [image::ImageFormat; 4] = [
    image::ImageFormat::Jpeg,
    image::ImageFormat::Png,
    image::ImageFormat::Bmp,
    image::ImageFormat::Tiff,
];

/// PNG bytes of `width × height` pixels of `color`: the one PNG encoder of the device (frames, masks,
/// crops for the journal and the HTML report). Fails only when the buffer does not match the geometry.
pub fn encode_png(
    data: &[u8],
    width: u32,
    height: u32,
    color: image::ExtendedColorType,
) -> Result<Vec<u8>, image::ImageError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(data, width, height, color)?;
    Ok(out)
}

/// An RGB8 frame, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// Whether JPEG bytes hold an end-of-image marker (`FF D9`) after their last start-of-scan (`FF DA`).
/// Inside entropy-coded data every `FF` is stuffed (`FF 00`) or a restart marker, so an `FF D9` there is the
/// real end; trailing bytes after it (some cameras pad) are allowed.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// Why a frame could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The file could not be read.
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a decodable image (corrupt, truncated or an unsupported format).
    #[error("{path}: not a decodable image (JPEG, PNG, BMP or TIFF)")]
    Decode {
        /// The file (empty from [`Frame::decode`]; [`Frame::open`] fills it in).
        path: PathBuf,
        /// What the decoder said.
        #[source]
        source: image::ImageError,
    },
    /// The file decodes but is damaged: a JPEG that ends before its end-of-image marker (a copy cut short,
    /// a camera that lost power), whose missing rows the decoder would fill with grey. A cell typed from
    /// half an image is a wrong count nobody notices, so it is refused.
    #[error("{path}: damaged image: {reason}")]
    Damaged {
        /// The file (empty from [`Frame::decode`]; [`Frame::open`] fills it in).
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The pixel buffer does not match the stated size, or the size is zero or too large.
    #[error("bad frame geometry {width}x{height} with {len} bytes")]
    Geometry {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Buffer length in bytes.
        len: usize,
    },
}

impl Frame {
    /// Wraps an RGB8 buffer; fails when the length is not `width * height * 3` or a side is zero.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, FrameError> {
        let ok = width > 0
            && height > 0
            && width <= MAX_SIDE
            && height <= MAX_SIDE
            && data.len() == width as usize * height as usize * 3;
        if !ok {
            return Err(FrameError::Geometry {
                width,
                height,
                len: data.len(),
            });
        }
        Ok(Frame {
            width,
            height,
            data,
        })
    }

    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Result<Self, FrameError> {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Frame::new(width, height, data)
    }

    /// Decodes an image file (JPEG, PNG, BMP or TIFF).
    pub fn open(path: &Path) -> Result<Self, FrameError> {
        let bytes = std::fs::read(path).map_err(|source| FrameError::Io {
            path: path.to_owned(),
            source,
        })?;
        Frame::decode(&bytes).map_err(|e| match e {
            FrameError::Decode { source, .. } => FrameError::Decode {
                path: path.to_owned(),
                source,
            },
            FrameError::Damaged { reason, .. } => FrameError::Damaged {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Decodes JPEG, PNG, BMP or TIFF bytes (the error's path is empty; [`Frame::open`] fills it in).
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        use image::error::{ImageFormatHint, UnsupportedError, UnsupportedErrorKind};
        let decode_err = |source| FrameError::Decode {
            path: PathBuf::new(),
            source,
        };
        let format = image::guess_format(bytes).map_err(decode_err)?;
        if !FORMATS.contains(&format) {
            return Err(decode_err(image::ImageError::Unsupported(
                UnsupportedError::from_format_and_kind(
                    ImageFormatHint::Exact(format),
                    UnsupportedErrorKind::Format(ImageFormatHint::Exact(format)),
                ),
            )));
        }
        if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
            return Err(FrameError::Damaged {
                path: PathBuf::new(),
                reason: "the JPEG ends before its end-of-image marker (truncated)",
            });
        }
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(1 << 30);
        reader.limits(limits);
        let img = reader.decode().map_err(decode_err)?;
        let rgb = img.into_rgb8();
        let (w, h) = rgb.dimensions();
        Frame::new(w, h, rgb.into_raw())
    }

    /// The frame as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, image::ImageError> {
        encode_png(
            &self.data,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
        )
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB8 bytes, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixel at `(x, y)`; both must be in range.
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Scales the frame down by an integer factor, averaging each `f`×`f` block (integer arithmetic).
    /// The factor is clamped so the result is at least 1×1.
    pub fn downscale(&self, factor: u32) -> Frame {
        let f = factor.max(1).min(self.width).min(self.height);
        if f == 1 {
            return self.clone();
        }
        let (w, h) = (self.width / f, self.height / f);
        let n = f * f;
        let mut data = Vec::with_capacity(w as usize * h as usize * 3);
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for dy in 0..f {
                    let row = ((y * f + dy) as usize * self.width as usize + (x * f) as usize) * 3;
                    for px in self.data[row..row + f as usize * 3].chunks_exact(3) {
                        acc[0] += px[0] as u32;
                        acc[1] += px[1] as u32;
                        acc[2] += px[2] as u32;
                    }
                }
                data.extend(acc.iter().map(|&a| ((a + n / 2) / n) as u8));
            }
        }
        Frame {
            width: w,
            height: h,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_buffer_length() {
        assert!(Frame::new(2, 2, vec![0; 11]).is_err());
        assert!(Frame::new(0, 2, vec![]).is_err());
        assert!(Frame::new(2, 2, vec![0; 12]).is_ok());
    }

    #[test]
    fn garbage_bytes_give_decode_error() {
        let err = Frame::decode(b"definitely not a jpeg").unwrap_err();
        assert!(matches!(err, FrameError::Decode { .. }), "{err}");
    }

    #[test]
    fn open_names_the_file() {
        let dir = std::env::temp_dir().join(format!("leuko-frame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("broken.jpeg");
        std::fs::write(&p, [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F']).unwrap();
        let msg = Frame::open(&p).unwrap_err().to_string();
        assert!(msg.contains("broken.jpeg"), "{msg}");
    }

    #[test]
    fn bmp_and_tiff_decode_like_png() {
        let f = Frame::new(3, 2, (0..18).map(|i| i * 13).collect()).unwrap();
        for format in [image::ImageFormat::Bmp, image::ImageFormat::Tiff] {
            let img = image::RgbImage::from_raw(3, 2, f.data().to_vec()).unwrap();
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, format).unwrap();
            assert_eq!(Frame::decode(bytes.get_ref()).unwrap(), f, "{format:?}");
        }
        let png = f.to_png().unwrap();
        assert_eq!(Frame::decode(&png).unwrap(), f);
    }

    #[test]
    fn downscale_averages_blocks() {
        let f = Frame::new(2, 2, vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30]).unwrap();
        let d = f.downscale(2);
        assert_eq!((d.width(), d.height()), (1, 1));
        assert_eq!(d.pixel(0, 0), [15, 15, 15]);
        // 1x1 frames survive any factor.
        let one = Frame::filled(1, 1, [1, 2, 3]).unwrap();
        assert_eq!(one.downscale(8), one);
    }
}
