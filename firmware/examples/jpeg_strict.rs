//! What strict JPEG decoding refuses, measured (docs/reliability.md):
//! `cargo run --release -p leukoscope --example jpeg_strict -- ../shared/data samples`
//! 1. every JPEG under the folders named decodes strictly, to the same pixels as `image`'s lenient decoder;
//! 2. on one bundled cell, 1,000 one-bit flips and 1,000 cuts inside the compressed data (end marker kept):
//!    how many each decoder still decodes. JPEG has no checksum, so most damage of this kind decodes.
use std::path::PathBuf;

fn main() {
    let mut stack: Vec<PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let (mut n, mut refused, mut differ) = (0, 0, 0);
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            continue;
        }
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ext != "jpg" && ext != "jpeg" {
            continue;
        }
        n += 1;
        let bytes = std::fs::read(&p).unwrap();
        match leukoscope::Frame::decode(&bytes) {
            Err(e) => {
                refused += 1;
                println!("refused {}: {e}", p.display());
            }
            Ok(f) => {
                let l = image::load_from_memory(&bytes).unwrap().into_rgb8();
                if f.data() != l.as_raw().as_slice() {
                    differ += 1;
                    println!("differs {}", p.display());
                }
            }
        }
    }
    println!("{n} JPEGs: {refused} refused, {differ} decode to other pixels than image's decoder");

    let cell =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/cells/NEUTROPHIL/_0_1966.jpeg");
    let good = std::fs::read(cell).unwrap();
    let sos = good.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let mut rng = 12345u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    let data = good.len() - sos - 24;
    let (mut flip_lenient, mut flip_strict, mut cut_lenient, mut cut_strict) = (0, 0, 0, 0);
    for _ in 0..1000 {
        let mut bad = good.clone();
        bad[sos + 20 + next() % data] ^= 1 << (next() % 8);
        flip_lenient += image::load_from_memory(&bad).is_ok() as u32;
        flip_strict += leukoscope::Frame::decode(&bad).is_ok() as u32;
        let a = sos + 20 + next() % data;
        let cut = 1 + next() % (good.len() - 2 - a).max(1);
        let mut bad = good[..a].to_vec();
        bad.extend_from_slice(&good[(a + cut).min(good.len() - 2)..]);
        cut_lenient += image::load_from_memory(&bad).is_ok() as u32;
        cut_strict += leukoscope::Frame::decode(&bad).is_ok() as u32;
    }
    println!("1000 one-bit flips in the compressed data: lenient decodes {flip_lenient}, strict {flip_strict}");
    println!("1000 cuts inside the compressed data (end marker kept): lenient decodes {cut_lenient}, strict {cut_strict}");
}
