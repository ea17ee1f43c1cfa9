//! Splits an MJPEG byte stream (concatenated JPEG images, as `rpicam-vid --codec mjpeg -o -` writes) into
//! whole JPEG images.
//!
//! Boundaries are found by walking the JPEG marker structure rather than by searching for `FF D9`, so an
//! EXIF thumbnail (a whole JPEG inside an APP1 segment) does not end a frame early. Garbage between
//! images is skipped; a stream that never completes a frame is capped at [`MAX_FRAME`] bytes.

/// Largest JPEG accepted; more bytes without an end marker means the stream is corrupt.
pub const MAX_FRAME: usize = 32 << 20;

/// Incremental splitter: push bytes as they come, get whole JPEGs out.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Bytes discarded as garbage so far (for diagnostics).
    skipped: usize,
}

enum Scan {
    /// A whole image ends at this offset (exclusive).
    Complete(usize),
    /// Need more bytes.
    Incomplete,
    /// Not a valid JPEG from the SOI at 0: resynchronise after it.
    Corrupt,
}

impl Splitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes thrown away because they were not inside a JPEG.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Adds bytes and returns every JPEG completed by them, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Drop everything before the next SOI.
            match find_soi(&self.buf) {
                Some(0) => {}
                Some(i) => {
                    self.skipped += i;
                    self.buf.drain(..i);
                }
                None => {
                    // Keep a trailing 0xFF: it may be the first half of the next SOI.
                    let keep = usize::from(self.buf.last() == Some(&0xFF));
                    let drop = self.buf.len() - keep;
                    self.skipped += drop;
                    self.buf.drain(..drop);
                    return out;
                }
            }
            match scan(&self.buf) {
                Scan::Complete(end) => out.push(self.buf.drain(..end).collect()),
                Scan::Incomplete => {
                    if self.buf.len() > MAX_FRAME {
                        self.skipped += 2;
                        self.buf.drain(..2);
                        continue;
                    }
                    return out;
                }
                Scan::Corrupt => {
                    self.skipped += 2;
                    self.buf.drain(..2);
                }
            }
        }
    }
}

fn find_soi(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == [0xFF, 0xD8])
}

/// Walks the marker segments of the JPEG starting at `b[0..2] == FF D8`.
fn scan(b: &[u8]) -> Scan {
    let mut i = 2;
    loop {
        // Expect a marker: FF, optional fill FFs, then the code.
        if i >= b.len() {
            return Scan::Incomplete;
        }
        if b[i] != 0xFF {
            return Scan::Corrupt;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        if i >= b.len() {
            return Scan::Incomplete;
        }
        let code = b[i];
        i += 1;
        match code {
            0xD9 => return Scan::Complete(i),
            0xD8 => return Scan::Corrupt, // a new SOI before this image ended
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if i + 2 > b.len() {
            return Scan::Incomplete;
        }
        let len = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
        if len < 2 {
            return Scan::Corrupt;
        }
        i += len;
        if code == 0xDA {
            // Entropy-coded data: runs until an FF that is neither stuffing (FF 00) nor a restart marker.
            loop {
                match b.get(i..).and_then(|s| s.iter().position(|&x| x == 0xFF)) {
                    None => return Scan::Incomplete,
                    Some(p) => {
                        i += p;
                        match b.get(i + 1) {
                            None => return Scan::Incomplete,
                            Some(0x00) | Some(0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal structurally valid JPEG: SOI, APP0, SOS with stuffed and restart bytes, EOI.
    fn tiny(tag: u8) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, tag, 0x00];
        v.extend([
            0xFF, 0xDA, 0x00, 0x02, 1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4, 0xFF, 0xD9,
        ]);
        v
    }

    #[test]
    fn splits_concatenated_images_across_any_chunking() {
        let mut stream = vec![0x00, 0x13, 0x37];
        for t in 0..5 {
            stream.extend(tiny(t));
        }
        for chunk in [1, 2, 3, 7, 1000] {
            let mut s = Splitter::new();
            let frames: Vec<Vec<u8>> = stream.chunks(chunk).flat_map(|c| s.push(c)).collect();
            assert_eq!(frames.len(), 5, "chunk {chunk}");
            assert_eq!(frames[3], tiny(3));
            assert_eq!(s.skipped(), 3);
        }
    }

    #[test]
    fn exif_thumbnail_does_not_end_the_frame() {
        let thumb = tiny(9);
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE1];
        v.extend(((thumb.len() + 2) as u16).to_be_bytes());
        v.extend(&thumb);
        v.extend([0xFF, 0xDA, 0x00, 0x02, 5, 6, 0xFF, 0xD9]);
        let frames = Splitter::new().push(&v);
        assert_eq!(frames, vec![v.clone()]);
    }

    #[test]
    fn truncated_image_is_skipped_at_the_next_soi() {
        let mut v = tiny(1);
        v.truncate(9); // cut inside the header
        v.extend(tiny(2));
        let frames = Splitter::new().push(&v);
        assert_eq!(frames, vec![tiny(2)]);
    }

    #[test]
    fn real_jpeg_file_round_trips() {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../samples/smears/BloodImage_00001.jpg"
        );
        let bytes = std::fs::read(p).unwrap();
        let mut stream = bytes.clone();
        stream.extend(&bytes);
        let frames: Vec<Vec<u8>> = {
            let mut s = Splitter::new();
            stream.chunks(4096).flat_map(|c| s.push(c)).collect()
        };
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], bytes);
        assert!(crate::Frame::decode(&frames[1]).is_ok());
    }
}
