//! Frames: an owned RGB8 image, decoded from a file or handed over by a camera.
//!
//! This module only decodes and validates pixels; it knows nothing about cells or models.

use std::path::{Path, PathBuf};

/// Largest frame side we accept when decoding a file. Bigger images are rejected with a clear error rather
/// than risking a multi-gigabyte allocation on the device.
pub const MAX_SIDE: u32 = 16_384;

/// Most pixels an image file may declare (64 Mpx: a 64-megapixel camera's frame, five times the Pi HQ
/// camera's). The header is read first and a bigger image is refused before any pixel is decoded, so a
/// small file that claims a huge image (a decompression bomb) costs nothing.
pub const MAX_PIXELS: u64 = 64 << 20;

/// Most bytes a decoder may allocate for one image (the decoded pixels at up to 8 bytes each for 16-bit
/// RGBA, with room for the decoder's own buffers).
pub const MAX_DECODE_BYTES: u64 = 768 << 20;

/// Smallest image side [`Frame::open`] accepts. A white cell at the training scale is about 45 px across
/// (a small lymphocyte) and the second lab's crops are 120 px: an image under 32 px on a side cannot hold a
/// cell at any scale the model reads, so it is refused rather than typed from a handful of pixels.
pub const MIN_SIDE: u32 = 32;

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
    /// The file is damaged: a JPEG that ends before its end-of-image marker (a copy cut short, a camera
    /// that lost power) or whose compressed data is corrupt, which a lenient decoder would paint over with
    /// grey and a warning. A cell typed from half an image is a wrong count nobody notices, so it is refused.
    #[error("{path}: damaged image: {reason}")]
    Damaged {
        /// The file (empty from [`Frame::decode`]; [`Frame::open`] fills it in).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The image is larger than the device decodes ([`MAX_SIDE`], [`MAX_PIXELS`]), read from its header
    /// before any pixel is decoded.
    #[error("{path}: image of {width}x{height} px is too large (at most {MAX_PIXELS} pixels and {MAX_SIDE} px a side)")]
    TooLarge {
        /// The file (empty from [`Frame::decode`]; [`Frame::open`] fills it in).
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The image is too small to hold a white cell ([`MIN_SIDE`]).
    #[error("{path}: image of {width}x{height} px is too small to hold a white cell (at least {MIN_SIDE} px a side)")]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
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

    /// Decodes an image file (JPEG, PNG, BMP or TIFF) that is to hold white cells: refused when damaged,
    /// too large, or smaller than [`MIN_SIDE`] on a side.
    pub fn open(path: &Path) -> Result<Self, FrameError> {
        let bytes = read_image_file(path)?;
        let frame = Frame::decode(&bytes).map_err(|e| e.at(path))?;
        if frame.width < MIN_SIDE || frame.height < MIN_SIDE {
            return Err(FrameError::TooSmall {
                path: path.to_owned(),
                width: frame.width,
                height: frame.height,
            });
        }
        Ok(frame)
    }

    /// Decodes JPEG, PNG, BMP or TIFF bytes (the error's path is empty; [`Frame::open`] fills it in).
    ///
    /// The header is read first: an image over [`MAX_SIDE`] or [`MAX_PIXELS`] is refused before decoding.
    /// JPEG is decoded strictly: a missing end-of-image marker, a premature end of data or corrupt entropy
    /// data is [`FrameError::Damaged`], where a lenient decoder would fill the rest with grey.
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
        if format == image::ImageFormat::Jpeg {
            return decode_jpeg(bytes);
        }
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let decoder = reader.into_decoder().map_err(|e| too_large_or(e, bytes))?;
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        check_size(width, height)?;
        let img = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
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

    /// The RGB8 bytes, row-major, given back (a buffer to reuse).
    pub fn into_data(self) -> Vec<u8> {
        self.data
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

impl FrameError {
    /// The same error naming `path` (decoding errors are made without one).
    fn at(self, path: &Path) -> FrameError {
        let path = path.to_owned();
        match self {
            FrameError::Io { source, .. } => FrameError::Io { path, source },
            FrameError::Decode { source, .. } => FrameError::Decode { path, source },
            FrameError::Damaged { reason, .. } => FrameError::Damaged { path, reason },
            FrameError::TooLarge { width, height, .. } => FrameError::TooLarge {
                path,
                width,
                height,
            },
            FrameError::TooSmall { width, height, .. } => FrameError::TooSmall {
                path,
                width,
                height,
            },
            other @ FrameError::Geometry { .. } => other,
        }
    }
}

/// Largest image file read (256 MiB: an uncompressed 64 Mpx frame is 192 MiB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The bytes of a regular file of at most [`MAX_FILE_BYTES`]: a device (`/dev/zero`), a pipe or a huge
/// file is refused by name instead of being read until memory runs out.
fn read_image_file(path: &Path) -> Result<Vec<u8>, FrameError> {
    use std::io::Read;
    let io = |source| FrameError::Io {
        path: path.to_owned(),
        source,
    };
    let refuse = |reason: &str| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            reason.to_string(),
        ))
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse("larger than the 256 MiB an image file may have"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse("larger than the 256 MiB an image file may have"));
    }
    Ok(bytes)
}

/// Refuses a declared size over [`MAX_SIDE`] or [`MAX_PIXELS`].
fn check_size(width: u32, height: u32) -> Result<(), FrameError> {
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(FrameError::TooLarge {
            path: PathBuf::new(),
            width,
            height,
        });
    }
    Ok(())
}

/// An image error from reading a header, as [`FrameError::TooLarge`] when the limits refused it (the
/// declared size is read again for the message) and [`FrameError::Decode`] otherwise.
fn too_large_or(e: image::ImageError, bytes: &[u8]) -> FrameError {
    if matches!(e, image::ImageError::Limits(_)) {
        let dims = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        if let Some((width, height)) = dims {
            return FrameError::TooLarge {
                path: PathBuf::new(),
                width,
                height,
            };
        }
    }
    FrameError::Decode {
        path: PathBuf::new(),
        source: e,
    }
}

/// Strict JPEG decoding to RGB8 (zune-jpeg, the decoder `image` itself uses, with its strict mode on).
fn decode_jpeg(bytes: &[u8]) -> Result<Frame, FrameError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let damaged = |reason: String| FrameError::Damaged {
        path: PathBuf::new(),
        reason,
    };
    if !jpeg_is_complete(bytes) {
        return Err(damaged(
            "the JPEG ends before its end-of-image marker (truncated)".into(),
        ));
    }
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| damaged(format!("unreadable JPEG header: {e}")))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| damaged("the JPEG header gives no size".into()))?;
    let (width, height) = (
        u32::try_from(w).unwrap_or(u32::MAX),
        u32::try_from(h).unwrap_or(u32::MAX),
    );
    check_size(width, height)?;
    let data = decoder
        .decode()
        .map_err(|e| damaged(format!("the JPEG's data is corrupt: {e}")))?;
    if decoder.output_colorspace() != Some(ColorSpace::RGB) {
        return Err(damaged(format!(
            "the JPEG decodes to {:?}, not RGB",
            decoder.output_colorspace()
        )));
    }
    Frame::new(width, height, data)
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

    fn sample(rel: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../samples")
                .join(rel),
        )
        .unwrap()
    }

    /// A PNG chunk: length, type, data, CRC-32 over type and data.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.finalize().to_be_bytes());
        c
    }

    /// A PNG of a few dozen bytes whose header claims `width × height` RGB pixels (an empty zlib stream).
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // 60000 x 60000 RGB in a few hundred bytes: one zlib stream of zeros would fill 10 GB.
        let png = png_claiming(60_000, 60_000);
        let t = std::time::Instant::now();
        let err = Frame::decode(&png).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    width: 60_000,
                    height: 60_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(t.elapsed().as_secs_f32() < 1.0, "refused before decoding");
        // Within the side limit but over the pixel budget (12000 x 12000 = 144 Mpx).
        let png = png_claiming(12_000, 12_000);
        let err = Frame::decode(&png).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("12000x12000"), "{err}");
    }

    #[test]
    fn a_png_with_a_bad_crc_is_refused() {
        let f = Frame::filled(40, 40, [200, 100, 150]).unwrap();
        let mut png = f.to_png().unwrap();
        assert_eq!(Frame::decode(&png).unwrap(), f);
        // Change one byte of the IDAT payload without fixing its CRC.
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        png[idat + 6] ^= 0x01;
        let err = Frame::decode(&png).unwrap_err();
        assert!(matches!(err, FrameError::Decode { .. }), "{err}");
    }

    #[test]
    fn an_image_smaller_than_a_cell_is_named() {
        let dir = std::env::temp_dir().join(format!("leuko-frame-small-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tiny.png");
        std::fs::write(
            &p,
            Frame::filled(31, 200, [1, 2, 3]).unwrap().to_png().unwrap(),
        )
        .unwrap();
        let err = Frame::open(&p).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooSmall {
                    width: 31,
                    height: 200,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("tiny.png"), "{err}");
        std::fs::write(
            &p,
            Frame::filled(32, 32, [1, 2, 3]).unwrap().to_png().unwrap(),
        )
        .unwrap();
        assert!(Frame::open(&p).is_ok());
    }

    #[test]
    fn strict_jpeg_matches_the_lenient_decoder_on_good_files_and_refuses_corrupt_data() {
        let good = sample("cells/NEUTROPHIL/_0_1966.jpeg");
        let strict = Frame::decode(&good).unwrap();
        let lenient = image::load_from_memory(&good).unwrap().into_rgb8();
        assert_eq!((strict.width(), strict.height()), lenient.dimensions());
        assert_eq!(strict.data(), lenient.as_raw().as_slice());
        // One flipped bit that makes an unknown marker inside the entropy-coded data (found by flipping
        // every bit of this file): the lenient decoder logs it and paints the rest of the image grey.
        let mut bad = good.clone();
        bad[885] ^= 1 << 3;
        assert!(
            image::load_from_memory(&bad).is_ok(),
            "the lenient decoder accepts it"
        );
        let Err(err) = Frame::decode(&bad) else {
            panic!("a corrupt JPEG was decoded");
        };
        assert!(matches!(err, FrameError::Damaged { .. }), "{err}");
    }
}
