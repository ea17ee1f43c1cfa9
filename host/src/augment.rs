//! What varies between labs, simulated in training: stain, colour, white balance, focus, sensor noise and
//! magnification (issue 13, item 2).
//!
//! [`lab_shift`] takes the `u8 [N, H, W, 3]` batch the device would feed (after the geometric augmentation) and
//! returns it as `f32 [N, 3, H, W]` in `[0, 1]`, ready for [`crate::data::normalize01`]. In order:
//!
//! 1. **Magnification**: one zoom per batch about the centre, the scale drawn log-uniformly in `1 ± scale`
//!    (bilinear; a zoom out repeats the border, as the device's crop does at a frame edge).
//! 2. **Focus**: with probability `blur_p`, one Gaussian blur per batch, σ uniform in `[0.3, blur_sigma]` px.
//! 3. **Stain** (Beer–Lambert): per image, optical density `-ln(I)` is split into haematoxylin, eosin and
//!    residual channels with Ruifrok and Johnston's stain vectors, each channel scaled by `1 ± stain` and
//!    shifted by `± stain · 0.1` (Tellez et al. 2018's HED jitter), and recomposed.
//! 4. **Colour**: per image a hue rotation of up to `hue` turns (in YIQ), a saturation factor `1 ± saturation`,
//!    a white balance (per-channel gain `1 ± white`), then brightness and contrast `1 ± white`.
//! 5. **Sensor noise**: per image, Gaussian with σ uniform in `[0, noise]`.
//!
//! Not simulated: JPEG quality (every training image is already a JPEG; the device's camera frames are
//! decoded the same way).

use tch::{Kind, Tensor};

use crate::data::Rng;

/// How far [`lab_shift`] moves a batch. Two named strengths; which one ships is chosen by validation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LabShift {
    /// Small moves: scale ±15 %, stain ±5 %, hue ±0.03 turn, saturation ±15 %, white balance ±5 %.
    Light,
    /// Large moves: scale ±30 %, stain ±20 %, hue ±0.08 turn, saturation ±40 %, white balance ±15 %.
    Strong,
}

/// The numbers behind a [`LabShift`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Strength {
    /// Zoom range: `1 ± scale`.
    pub scale: f64,
    /// Probability of a blurred batch.
    pub blur_p: f64,
    /// Largest blur σ in pixels.
    pub blur_sigma: f64,
    /// Stain-density jitter.
    pub stain: f64,
    /// Largest hue rotation in turns.
    pub hue: f64,
    /// Saturation factor range `1 ± saturation`.
    pub saturation: f64,
    /// White balance, brightness and contrast range `1 ± white`.
    pub white: f64,
    /// Largest noise σ (in `[0, 1]` intensity).
    pub noise: f64,
}

impl LabShift {
    /// Its numbers.
    pub fn strength(self) -> Strength {
        match self {
            LabShift::Light => Strength {
                scale: 0.15,
                blur_p: 0.2,
                blur_sigma: 1.0,
                stain: 0.05,
                hue: 0.03,
                saturation: 0.15,
                white: 0.05,
                noise: 0.02,
            },
            LabShift::Strong => Strength {
                scale: 0.3,
                blur_p: 0.3,
                blur_sigma: 1.5,
                stain: 0.2,
                hue: 0.08,
                saturation: 0.4,
                white: 0.15,
                noise: 0.04,
            },
        }
    }

    /// Name in files and logs.
    pub fn name(self) -> &'static str {
        match self {
            LabShift::Light => "light",
            LabShift::Strong => "strong",
        }
    }
}

/// Ruifrok & Johnston's stain vectors (rows: haematoxylin, eosin, DAB) as optical density per RGB channel, the
/// matrix scikit-image calls `rgb_from_hed`.
const RGB_FROM_HED: [[f32; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Uniform in `[lo, hi)`, shape `shape`, on `like`'s device.
fn uniform(shape: &[i64], lo: f64, hi: f64, like: &Tensor) -> Tensor {
    Tensor::rand(shape, (Kind::Float, like.device())) * (hi - lo) + lo
}

/// Zooms an `f32 [N, 3, H, W]` batch by `s` about its centre (where the device puts the cell), keeping its
/// size; the translation augmentation moves it.
pub fn zoom(x: &Tensor, s: f64) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let (zh, zw) = (
        ((h as f64 * s).round() as i64).max(1),
        ((w as f64 * s).round() as i64).max(1),
    );
    if (zh, zw) == (h, w) {
        return x.shallow_clone();
    }
    let z = x.upsample_bilinear2d([zh, zw], false, None, None);
    let (ph, pw) = ((h - zh).max(0), (w - zw).max(0));
    let z = if ph > 0 || pw > 0 {
        let (t, l) = (ph / 2, pw / 2);
        z.replication_pad2d([l, pw - l, t, ph - t])
    } else {
        z
    };
    let (zh, zw) = (z.size()[2], z.size()[3]);
    z.narrow(2, (zh - h) / 2, h).narrow(3, (zw - w) / 2, w)
}

/// Gaussian blur of an `f32 [N, 3, H, W]` batch with standard deviation `sigma` pixels (borders repeated).
pub fn blur(x: &Tensor, sigma: f64) -> Tensor {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let taps: Vec<f32> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = taps.iter().sum();
    let k =
        Tensor::from_slice(&taps.iter().map(|t| t / sum).collect::<Vec<_>>()).to_device(x.device());
    let n = 2 * r + 1;
    let kh = k.view([1, 1, n, 1]).repeat([3, 1, 1, 1]);
    let kw = k.view([1, 1, 1, n]).repeat([3, 1, 1, 1]);
    let y = x.replication_pad2d([r, r, r, r]);
    let y = y.conv2d(&kh, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3);
    y.conv2d(&kw, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
}

/// Per-image stain jitter in optical density on an `f32 [N, 3, H, W]` batch in `[0, 1]`.
pub fn stain_jitter(x: &Tensor, sigma: f64) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    let m = Tensor::from_slice(&RGB_FROM_HED.concat())
        .view([3, 3])
        .to_device(dev);
    // Rows normalised to unit length, as the colour-deconvolution method does.
    let m = &m
        / m.square()
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            .sqrt();
    let minv = m.inverse();
    let od = -(x.clamp_min(1.0 / 255.0)).log(); // [N, 3, H, W]
                                                // stains[n, s, h, w] = sum_c od[n, c, h, w] * minv[c, s]
    let stains = Tensor::einsum("nchw,cs->nshw", &[&od, &minv], None::<i64>);
    let alpha = uniform(&[n, 3, 1, 1], 1.0 - sigma, 1.0 + sigma, x);
    let beta = uniform(&[n, 3, 1, 1], -0.1 * sigma, 0.1 * sigma, x);
    let stains = stains * alpha + beta;
    let od = Tensor::einsum("nshw,sc->nchw", &[&stains, &m], None::<i64>);
    (-od).exp().clamp(0.0, 1.0)
}

/// Per-image hue rotation (up to `hue` turns, in YIQ), saturation, white balance, brightness and contrast.
pub fn colour(x: &Tensor, st: &Strength) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    let yiq = Tensor::from_slice(&[
        0.299f32, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312,
    ])
    .view([3, 3])
    .to_device(dev);
    let rgb = yiq.inverse();
    let theta = uniform(&[n], -st.hue, st.hue, x) * (2.0 * std::f64::consts::PI);
    let sat = uniform(&[n], 1.0 - st.saturation, 1.0 + st.saturation, x);
    let (c, s) = (theta.cos() * &sat, theta.sin() * &sat);
    let one = Tensor::ones([n], (Kind::Float, dev));
    let zero = Tensor::zeros([n], (Kind::Float, dev));
    // Rotation of the chroma plane (I, Q) scaled by the saturation factor, luma kept: [N, 3, 3].
    let rot = Tensor::stack(
        &[
            Tensor::stack(&[&one, &zero, &zero], 1),
            Tensor::stack(&[&zero, &c, &(-&s)], 1),
            Tensor::stack(&[&zero, &s, &c], 1),
        ],
        1,
    );
    // RGB -> YIQ -> rotate -> RGB, one 3x3 per image.
    let t = rgb.unsqueeze(0).matmul(&rot).matmul(&yiq.unsqueeze(0));
    let y = Tensor::einsum("nkc,nchw->nkhw", &[&t, x], None::<i64>);
    let gain = uniform(&[n, 3, 1, 1], 1.0 - st.white, 1.0 + st.white, x);
    let bright = uniform(&[n, 1, 1, 1], 1.0 - st.white, 1.0 + st.white, x);
    let contrast = uniform(&[n, 1, 1, 1], 1.0 - st.white, 1.0 + st.white, x);
    let y = y * gain * bright;
    let mean = y.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    ((&y - &mean) * contrast + mean).clamp(0.0, 1.0)
}

/// The whole lab shift (module docs) on a `u8 [N, H, W, 3]` batch; returns `f32 [N, 3, H, W]` in `[0, 1]`.
pub fn lab_shift(x: &Tensor, shift: LabShift, rng: &mut Rng) -> Tensor {
    let st = shift.strength();
    let x = x.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    let u = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let s =
        ((1.0 - st.scale).ln() + u(rng) * ((1.0 + st.scale).ln() - (1.0 - st.scale).ln())).exp();
    let x = zoom(&x, s);
    let x = if u(rng) < st.blur_p {
        blur(&x, 0.3 + u(rng) * (st.blur_sigma - 0.3))
    } else {
        x
    };
    let x = stain_jitter(&x, st.stain);
    let x = colour(&x, &st);
    let n = x.size()[0];
    let sigma = uniform(&[n, 1, 1, 1], 0.0, st.noise, &x);
    (&x + x.randn_like() * sigma).clamp(0.0, 1.0)
}

/// Smallest and largest radius of the disc [`context_drop`] keeps about the crop's centre (where the
/// device puts the cell), as shares of the crop's side: from a little more than a large white cell's radius
/// at the training scale to the inscribed circle.
pub const CONTEXT_RADIUS: (f64, f64) = (0.35, 0.5);
/// Width, in pixels, of the ramp from the kept disc to the plasma (no hard edge for the net to learn).
pub const CONTEXT_RAMP: f64 = 3.0;
/// Side of the squares whose brightest mean is an image's plasma (as [`leukoscope::preprocess::white_point`]).
pub const PLASMA_BLOCK: i64 = 8;

/// Another lab's crop in the training lab's colours: for a share `p` of a `u8 [N, H, W, 3]` batch, every pixel
/// beyond a disc about the centre (its radius drawn uniformly in [`CONTEXT_RADIUS`] of the side) is replaced,
/// over a [`CONTEXT_RAMP`]-pixel ramp, by the image's own plasma: per channel, the brightest
/// [`PLASMA_BLOCK`]-square mean. The red cells and the neighbours around the cell go; the cell, its colours
/// and its size stay. Returns the batch as `u8 [N, H, W, 3]`.
pub fn context_drop(x: &Tensor, p: f64, rng: &mut Rng) -> Tensor {
    let (n, h, w) = (x.size()[0], x.size()[1], x.size()[2]);
    let dev = x.device();
    let u = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let side = h.min(w) as f64;
    let (mut radius, mut on) = (Vec::new(), Vec::new());
    for _ in 0..n {
        on.push(f32::from(u8::from(u(rng) < p)));
        let r = CONTEXT_RADIUS.0 + u(rng) * (CONTEXT_RADIUS.1 - CONTEXT_RADIUS.0);
        radius.push((r * side) as f32);
    }
    let f = x.to_kind(Kind::Float);
    let block = PLASMA_BLOCK.min(h).min(w).max(1);
    let plasma = f
        .permute([0, 3, 1, 2])
        .avg_pool2d(
            [block, block],
            [block, block],
            [0, 0],
            false,
            true,
            None::<i64>,
        )
        .amax([2, 3], false)
        .view([n, 1, 1, 3]);
    let ys = (Tensor::arange(h, (Kind::Float, dev)) - (h - 1) as f64 / 2.0).view([1, h, 1, 1]);
    let xs = (Tensor::arange(w, (Kind::Float, dev)) - (w - 1) as f64 / 2.0).view([1, 1, w, 1]);
    let d = (&ys * &ys + &xs * &xs).sqrt();
    let r = Tensor::from_slice(&radius)
        .to_device(dev)
        .view([n, 1, 1, 1]);
    let on = Tensor::from_slice(&on).to_device(dev).view([n, 1, 1, 1]);
    let alpha = ((d - r) / CONTEXT_RAMP).clamp(0.0, 1.0) * on;
    let keep: Tensor = 1.0 - &alpha;
    let y: Tensor = &f * keep + plasma * &alpha;
    y.round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// Range of the per-channel camera gain [`highlight_clip`] draws: from none to 1.6, which clips everything
/// above 160 of 255 (the training lab's plasma, at about 224, clips from a gain of 1.14 on).
pub const HIGHLIGHT_GAIN: (f64, f64) = (1.0, 1.6);

/// Another camera's exposure: for a share `p` of a `u8 [N, H, W, 3]` batch, each channel is multiplied by its
/// own gain, drawn uniformly in [`HIGHLIGHT_GAIN`], clipped at 255 (the sensor saturates) and divided by
/// the gain again. The colours below the clip stay; the plasma and pale parts above it become flat, as in
/// an over-exposed frame after the device's stain normalisation brings it back to the training lab's
/// brightness. Returns the batch as `u8 [N, H, W, 3]`.
pub fn highlight_clip(x: &Tensor, p: f64, rng: &mut Rng) -> Tensor {
    let n = x.size()[0];
    let u = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut gain = Vec::with_capacity(3 * n as usize);
    for _ in 0..n {
        let on = u(rng) < p;
        for _ in 0..3 {
            let g = HIGHLIGHT_GAIN.0 + u(rng) * (HIGHLIGHT_GAIN.1 - HIGHLIGHT_GAIN.0);
            gain.push(if on { g as f32 } else { 1.0 });
        }
    }
    let g = Tensor::from_slice(&gain)
        .to_device(x.device())
        .view([n, 1, 1, 3]);
    let f = x.to_kind(Kind::Float);
    let y: Tensor = (&f * &g).clamp_max(255.0) / &g;
    y.round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Tensor {
        tch::manual_seed(0);
        Tensor::randint(256, [4, 32, 32, 3], (Kind::Uint8, tch::Device::Cpu))
    }

    fn as01(x: &Tensor) -> Tensor {
        x.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn highlight_clip_flattens_only_what_a_gain_saturates() {
        let x = batch();
        let mut rng = Rng::new(3);
        // Share 0: untouched.
        assert!(
            max_diff(
                &highlight_clip(&x, 0.0, &mut rng).to_kind(Kind::Float),
                &x.to_kind(Kind::Float)
            ) < 0.5
        );
        let y = highlight_clip(&x, 1.0, &mut rng).to_kind(Kind::Float);
        let f = x.to_kind(Kind::Float);
        // Never brighter; dark pixels (below 255 / 1.6) exactly kept, up to rounding.
        assert!((&y - &f).max().double_value(&[]) <= 0.5);
        let dark = f.le(255.0 / HIGHLIGHT_GAIN.1);
        let kept = (&y - &f).abs().masked_select(&dark).max().double_value(&[]);
        assert!(kept <= 0.5, "{kept}");
        // Bright pixels of one image and channel all become the same value: 255 / its gain.
        let (c0, c1) = (f.select(0, 0).select(2, 0), y.select(0, 0).select(2, 0));
        let top = c1.masked_select(&c0.ge(250.0));
        assert!(top.numel() > 0);
        assert!((top.max() - top.min()).double_value(&[]) <= 1.0);
        let g = 255.0 / top.mean(Kind::Float).double_value(&[]);
        assert!(
            (HIGHLIGHT_GAIN.0 - 0.01..=HIGHLIGHT_GAIN.1 + 0.01).contains(&g),
            "gain {g}"
        );
        // Some pixels were clipped somewhere in the batch.
        assert!((&f - &y).max().double_value(&[]) > 10.0);
    }

    #[test]
    fn zero_strength_steps_are_identities() {
        let x = as01(&batch());
        assert!(max_diff(&zoom(&x, 1.0), &x) < 1e-6);
        // Stain deconvolution and recomposition round-trip (pixels above the 1/255 floor).
        let x = x.clamp_min(1.0 / 255.0);
        assert!(max_diff(&stain_jitter(&x, 0.0), &x) < 1e-4);
        let none = Strength {
            scale: 0.0,
            blur_p: 0.0,
            blur_sigma: 1.0,
            stain: 0.0,
            hue: 0.0,
            saturation: 0.0,
            white: 0.0,
            noise: 0.0,
        };
        assert!(max_diff(&colour(&x, &none), &x) < 1e-4);
    }

    #[test]
    fn blur_keeps_a_flat_image_and_smooths_an_edge() {
        let flat = Tensor::full([1, 3, 16, 16], 0.4, (Kind::Float, tch::Device::Cpu));
        assert!(max_diff(&blur(&flat, 1.2), &flat) < 1e-5);
        let edge = Tensor::cat(
            &[
                Tensor::zeros([1, 3, 16, 8], (Kind::Float, tch::Device::Cpu)),
                Tensor::ones([1, 3, 16, 8], (Kind::Float, tch::Device::Cpu)),
            ],
            3,
        );
        let b = blur(&edge, 1.0);
        let v = b.double_value(&[0, 0, 8, 8]);
        assert!(v > 0.5 && v < 0.95, "{v}");
    }

    #[test]
    fn zoom_in_and_out_keep_the_size_and_the_centre() {
        // A bright square in the middle stays in the middle whatever the zoom.
        let x = Tensor::zeros([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let _ = x.narrow(2, 12, 8).narrow(3, 12, 8).fill_(1.0);
        for s in [0.7, 1.3] {
            let z = zoom(&x, s);
            assert_eq!(z.size(), vec![1, 3, 32, 32]);
            assert!(z.double_value(&[0, 0, 16, 16]) > 0.9, "scale {s}");
            assert!(z.double_value(&[0, 0, 0, 0]) < 0.1, "scale {s}");
        }
    }

    #[test]
    fn lab_shift_stays_in_range_and_moves_colour_more_when_strong() {
        let x = batch();
        let x01 = as01(&x);
        let mut spread = Vec::new();
        for shift in [LabShift::Light, LabShift::Strong] {
            let mut rng = Rng::new(3);
            tch::manual_seed(3);
            let y = lab_shift(&x, shift, &mut rng);
            assert_eq!(y.size(), vec![4, 3, 32, 32]);
            assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
            // Mean colour of each image against the original's: the strong shift moves it further.
            let m = |t: &Tensor| t.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
            spread.push((m(&y) - m(&x01)).abs().mean(Kind::Float).double_value(&[]));
        }
        assert!(spread[1] > spread[0], "{spread:?}");
    }

    #[test]
    fn context_drop_keeps_the_cell_and_replaces_the_surroundings_by_the_plasma() {
        // A violet cell in the centre, red cells in the corners, one plasma-coloured square.
        let (n, side) = (3i64, 64i64);
        let mut px = vec![0u8; (n * side * side * 3) as usize];
        for i in 0..n {
            for y in 0..side {
                for x in 0..side {
                    let (dx, dy) = (x as f64 - 31.5, y as f64 - 31.5);
                    let c: [u8; 3] = if dx * dx + dy * dy < 15.0 * 15.0 {
                        [120, 60, 160]
                    } else if x < 8 && y < 8 {
                        [240, 230, 200]
                    } else {
                        [200, 120, 120]
                    };
                    let k = (((i * side + y) * side + x) * 3) as usize;
                    px[k..k + 3].copy_from_slice(&c);
                }
            }
        }
        let x = Tensor::from_slice(&px).view([n, side, side, 3]);
        let mut rng = Rng::new(7);
        assert!(max_diff(&as01(&context_drop(&x, 0.0, &mut rng)), &as01(&x)) == 0.0);
        let y = context_drop(&x, 1.0, &mut rng);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.kind(), Kind::Uint8);
        let at = |t: &Tensor, i: i64, yy: i64, xx: i64| -> Vec<i64> {
            (0..3).map(|c| t.int64_value(&[i, yy, xx, c])).collect()
        };
        for i in 0..n {
            // The cell (radius 15 < 0.35 · 64) is untouched; a corner beyond every disc is the plasma.
            assert_eq!(at(&y, i, 32, 32), vec![120, 60, 160]);
            assert_eq!(at(&y, i, 32, 20), vec![120, 60, 160]);
            assert_eq!(at(&y, i, 63, 63), vec![240, 230, 200]);
            assert_eq!(at(&y, i, 0, 63), vec![240, 230, 200]);
        }
    }
}
