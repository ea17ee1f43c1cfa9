//! How much of each image a camera clipped: the share of pixels at 254 or 255 in each channel, and the
//! plasma ([`leukoscope::preprocess::white_point`]), median over the images of each folder given; and how
//! many images the device calls over-exposed ([`leukoscope::exposure::Clipping::over_exposed`]).
//!
//! ```text
//! cargo run --release -p leukoscope --example saturation -- [--every N] DIR...
//! ```
//!
//! `--every N` reads every N-th image of a folder (default: all). One line per folder.

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut every = 1usize;
    if let Some(i) = args.iter().position(|a| a == "--every") {
        every = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| anyhow::anyhow!("--every takes a count of at least 1"))?;
        args.drain(i..i + 2);
    }
    anyhow::ensure!(!args.is_empty(), "usage: saturation [--every N] DIR...");
    for dir in &args {
        let files = leukoscope::inputs::list_images(std::path::Path::new(dir))?;
        let (mut clipped, mut plasma) = (vec![Vec::new(); 3], vec![Vec::new(); 3]);
        let mut over = 0usize;
        for p in files.iter().step_by(every) {
            let f = leukoscope::Frame::open(p)?;
            let wp = leukoscope::preprocess::white_point(&f, 8);
            let clipping = leukoscope::exposure::Clipping::of(&f);
            over += usize::from(clipping.is_over());
            for c in 0..3 {
                clipped[c].push(f64::from(clipping.share[c]));
                plasma[c].push(wp[c]);
            }
        }
        let [r, g, b] = [0, 1, 2].map(|c| median(clipped[c].clone()));
        let [pr, pg, pb] = [0, 1, 2].map(|c| median(plasma[c].clone()));
        println!(
            "{dir}: {} images; pixels at 254-255: R {:.0} % G {:.0} % B {:.0} %; plasma {pr:.0} {pg:.0} {pb:.0}; \
             over-exposed {over}",
            files.len().div_ceil(every),
            100.0 * r,
            100.0 * g,
            100.0 * b
        );
    }
    Ok(())
}
