//! YUYV (YUV 4:2:2 packed) to RGB8, BT.601 limited range, integer arithmetic.

use super::CaptureError;
use crate::frame::Frame;

/// Converts one YUYV buffer (`Y0 U Y1 V` per pixel pair) to an RGB frame; `frame` (the stream's frame
/// number) only names it in errors.
pub fn to_frame(width: u32, height: u32, data: &[u8], frame: u64) -> Result<Frame, CaptureError> {
    let need = width as usize * height as usize * 2;
    if width % 2 != 0 || data.len() < need {
        return Err(CaptureError::Dropped {
            backend: "v4l2",
            frame,
            reason: format!(
                "YUYV buffer of {} bytes for {width}x{height} (need {need})",
                data.len()
            ),
        });
    }
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for px in data[..need].chunks_exact(4) {
        let (u, v) = (i32::from(px[1]) - 128, i32::from(px[3]) - 128);
        for y in [px[0], px[2]] {
            let c = 298 * (i32::from(y) - 16);
            let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
            rgb.push(clamp(c + 409 * v));
            rgb.push(clamp(c - 100 * u - 208 * v));
            rgb.push(clamp(c + 516 * u));
        }
    }
    Frame::new(width, height, rgb).map_err(|source| CaptureError::Undecodable {
        backend: "v4l2",
        frame,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_white_black_and_red() {
        // Y=235 white, Y=16 black, neutral chroma.
        let f = to_frame(2, 1, &[235, 128, 16, 128], 0).unwrap();
        assert_eq!(f.pixel(0, 0), [255, 255, 255]);
        assert_eq!(f.pixel(1, 0), [0, 0, 0]);
        // BT.601 red: Y=81 U=90 V=240.
        let r = to_frame(2, 1, &[81, 90, 81, 240], 0).unwrap();
        let [red, green, blue] = r.pixel(0, 0);
        assert!(red > 250 && green < 5 && blue < 5, "{:?}", r.pixel(0, 0));
    }

    #[test]
    fn short_buffer_is_a_dropped_frame() {
        assert!(to_frame(4, 4, &[0; 10], 0).is_err());
        assert!(to_frame(3, 1, &[0; 6], 0).is_err());
    }
}
