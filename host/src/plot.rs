//! PNG figures of an evaluation: the one-vs-rest ROC curves and the confusion-matrix heat map.
//!
//! Everything is drawn by hand onto an [`RgbImage`] and encoded with the `image` crate: lines with Bresenham's
//! algorithm (2 px thick) and text with a tiny built-in 5×7 bitmap font (digits, capital letters — lower case is
//! drawn as upper case — and a little punctuation; anything else shows as a hollow box), so no system font or
//! plotting library is needed.

use std::path::{Path, PathBuf};

use crate::data::CLASSES;
use image::{ImageFormat, Rgb, RgbImage};

use crate::eval::{class_auc, roc_curve, EvalError, Report, Scores, NUM_CLASSES};

/// Width and height of the ROC figure in pixels.
pub const ROC_SIZE: u32 = 640;
/// Width of the confusion-matrix figure in pixels.
pub const CONFUSION_WIDTH: u32 = 700;
/// Height of the confusion-matrix figure in pixels.
pub const CONFUSION_HEIGHT: u32 = 640;

/// Curve colour of each class, indexed like [`CLASSES`] (blue, orange, green, red).
pub const CLASS_COLOURS: [Rgb<u8>; NUM_CLASSES] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
];

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const CHANCE: Rgb<u8> = Rgb([140, 140, 140]);
/// The heat map's colour for a full row (100 % of a true class); empty cells are white.
const HEAT: Rgb<u8> = Rgb([8, 48, 107]);
/// Text scale: each font pixel is drawn as a `TEXT_SCALE`×`TEXT_SCALE` block.
const TEXT_SCALE: u32 = 2;

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The scores are not valid input (see [`Scores::validate`]).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Encoding or writing the PNG failed.
    #[error("cannot write PNG {}", path.display())]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
}

/// Draws the one-vs-rest ROC curve of every class (see [`render_roc`]) and writes it to `path` as a PNG.
pub fn write_roc_png(scores: &Scores, title: &str, path: &Path) -> Result<(), PlotError> {
    save(&render_roc(scores, title)?, path)
}

/// Draws the confusion matrix of `report` (see [`render_confusion`]) and writes it to `path` as a PNG.
pub fn write_confusion_png(report: &Report, path: &Path) -> Result<(), PlotError> {
    save(&render_confusion(report), path)
}

fn save(img: &RgbImage, path: &Path) -> Result<(), PlotError> {
    img.save_with_format(path, ImageFormat::Png)
        .map_err(|source| PlotError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The ROC figure, [`ROC_SIZE`] pixels square: a white canvas with the title, a unit square with grid lines every
/// 0.1 and tick labels every 0.2, the dashed diagonal chance line, one curve per class in [`CLASS_COLOURS`], and a
/// legend (colour swatch, class name and AUC). A class whose AUC is undefined (no positive or no negative sample)
/// has no curve and `N/A` in the legend.
pub fn render_roc(scores: &Scores, title: &str) -> Result<RgbImage, PlotError> {
    scores.validate()?;
    let mut img = RgbImage::from_pixel(ROC_SIZE, ROC_SIZE, WHITE);
    let (left, top, side) = (90i32, 50i32, 520i32);
    let (right, bottom) = (left + side, top + side);
    let to_px = |(x, y): (f64, f64)| {
        (
            left + (x * f64::from(side)).round() as i32,
            bottom - (y * f64::from(side)).round() as i32,
        )
    };

    draw_text_centered(&mut img, ROC_SIZE as i32 / 2, 14, title, TEXT_SCALE, BLACK);

    // Grid every 0.1, labels every 0.2.
    for i in 0..=10 {
        let offset = side * i / 10;
        let (x, y) = (left + offset, bottom - offset);
        draw_line(&mut img, (x, top), (x, bottom), 1, GRID, None);
        draw_line(&mut img, (left, y), (right, y), 1, GRID, None);
        if i % 2 == 0 {
            let label = format!("{:.1}", f64::from(i) / 10.0);
            draw_text_centered(&mut img, x, bottom + 10, &label, TEXT_SCALE, BLACK);
            let w = text_width(&label, TEXT_SCALE);
            draw_text(&mut img, left - 10 - w, y - 7, &label, TEXT_SCALE, BLACK);
        }
    }
    draw_text_centered(
        &mut img,
        left + side / 2,
        bottom + 38,
        "FALSE POSITIVE RATE",
        TEXT_SCALE,
        BLACK,
    );
    draw_text_up(
        &mut img,
        14,
        top + side / 2 + text_width("TRUE POSITIVE RATE", TEXT_SCALE) / 2,
        "TRUE POSITIVE RATE",
        TEXT_SCALE,
        BLACK,
    );

    draw_line(&mut img, (left, bottom), (right, top), 2, CHANCE, Some(8));
    draw_rect_outline(&mut img, left, top, right, bottom, BLACK);

    let mut legend = Vec::with_capacity(NUM_CLASSES);
    for (c, class) in CLASSES.iter().enumerate() {
        let points = roc_curve(scores, c);
        for pair in points.windows(2) {
            draw_line(
                &mut img,
                to_px(pair[0]),
                to_px(pair[1]),
                2,
                CLASS_COLOURS[c],
                None,
            );
        }
        let auc = class_auc(scores, c);
        let auc = if auc.is_nan() {
            "N/A".to_string()
        } else {
            format!("{auc:.4}")
        };
        legend.push(format!("{} AUC {auc}", class.name()));
    }

    // Legend in the lower right corner of the plot, where a useful ROC curve never goes.
    let row = 24;
    let width = 24
        + 10
        + legend
            .iter()
            .map(|l| text_width(l, TEXT_SCALE))
            .max()
            .unwrap_or(0)
        + 20;
    let height = row * NUM_CLASSES as i32 + 12;
    let (lx, ly) = (right - width - 10, bottom - height - 10);
    fill_rect(&mut img, lx, ly, lx + width, ly + height, WHITE);
    draw_rect_outline(&mut img, lx, ly, lx + width, ly + height, BLACK);
    for (c, label) in legend.iter().enumerate() {
        let y = ly + 8 + row * c as i32;
        fill_rect(&mut img, lx + 10, y + 2, lx + 34, y + 12, CLASS_COLOURS[c]);
        draw_text(&mut img, lx + 44, y, label, TEXT_SCALE, BLACK);
    }
    Ok(img)
}

/// The confusion-matrix figure, [`CONFUSION_WIDTH`]×[`CONFUSION_HEIGHT`]: rows are true classes, columns predicted
/// ones, labelled with the class names. Each cell shows its count and its share of the true class (row); the
/// shade goes from white (0 %) to dark blue (100 % of the row).
pub fn render_confusion(report: &Report) -> RgbImage {
    let mut img = RgbImage::from_pixel(CONFUSION_WIDTH, CONFUSION_HEIGHT, WHITE);
    let (left, top, cell) = (170i32, 56i32, 128i32);
    let side = cell * NUM_CLASSES as i32;

    let title = format!("CONFUSION MATRIX: {} ON {}", report.arch, report.split);
    draw_text_centered(
        &mut img,
        CONFUSION_WIDTH as i32 / 2,
        16,
        &title,
        TEXT_SCALE,
        BLACK,
    );

    for (t, class) in CLASSES.iter().enumerate() {
        let row = report.confusion.get(t).map(Vec::as_slice).unwrap_or(&[]);
        let row_total: u64 = row.iter().take(NUM_CLASSES).sum();
        for p in 0..NUM_CLASSES {
            let count = row.get(p).copied().unwrap_or(0);
            let share = if row_total == 0 {
                0.0
            } else {
                count as f64 / row_total as f64
            };
            let (x0, y0) = (left + cell * p as i32, top + cell * t as i32);
            fill_rect(
                &mut img,
                x0,
                y0,
                x0 + cell,
                y0 + cell,
                blend(WHITE, HEAT, share),
            );
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let (cx, cy) = (x0 + cell / 2, y0 + cell / 2);
            draw_text_centered(&mut img, cx, cy - 26, &count.to_string(), 3, ink);
            draw_text_centered(
                &mut img,
                cx,
                cy + 6,
                &format!("{:.1}%", 100.0 * share),
                TEXT_SCALE,
                ink,
            );
        }
        // Row label (true class), right-aligned against the grid.
        let name = class.name();
        let y = top + cell * t as i32 + cell / 2 - 7;
        draw_text(
            &mut img,
            left - 10 - text_width(name, TEXT_SCALE),
            y,
            name,
            TEXT_SCALE,
            BLACK,
        );
        // Column label (predicted class).
        draw_text_centered(
            &mut img,
            left + cell * t as i32 + cell / 2,
            top + side + 10,
            name,
            TEXT_SCALE,
            BLACK,
        );
    }
    for i in 0..=NUM_CLASSES as i32 {
        let offset = cell * i;
        draw_line(
            &mut img,
            (left + offset, top),
            (left + offset, top + side),
            1,
            CHANCE,
            None,
        );
        draw_line(
            &mut img,
            (left, top + offset),
            (left + side, top + offset),
            1,
            CHANCE,
            None,
        );
    }
    draw_text_centered(
        &mut img,
        left + side / 2,
        top + side + 40,
        "PREDICTED",
        TEXT_SCALE,
        BLACK,
    );
    draw_text_up(
        &mut img,
        12,
        top + side / 2 + text_width("TRUE", TEXT_SCALE) / 2,
        "TRUE",
        TEXT_SCALE,
        BLACK,
    );
    img
}

/// Linear interpolation from `a` (t = 0) to `b` (t = 1).
fn blend(a: Rgb<u8>, b: Rgb<u8>, t: f64) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    Rgb(std::array::from_fn(|i| {
        (f64::from(a.0[i]) + (f64::from(b.0[i]) - f64::from(a.0[i])) * t).round() as u8
    }))
}

/// Sets a pixel, ignoring coordinates outside the image.
fn put(img: &mut RgbImage, x: i32, y: i32, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

/// Fills the rectangle `[x0, x1) × [y0, y1)`.
fn fill_rect(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
    for y in y0..y1 {
        for x in x0..x1 {
            put(img, x, y, colour);
        }
    }
}

/// A 2 px outline along the rectangle with corners `(x0, y0)` and `(x1, y1)`.
fn draw_rect_outline(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
    for (a, b) in [
        ((x0, y0), (x1, y0)),
        ((x1, y0), (x1, y1)),
        ((x1, y1), (x0, y1)),
        ((x0, y1), (x0, y0)),
    ] {
        draw_line(img, a, b, 2, colour, None);
    }
}

/// Bresenham line from `a` to `b`, both ends included. Every step stamps a `thickness`×`thickness` square whose
/// top-left corner is on the line; with `dash = Some(n)` the line is drawn `n` steps on, `n` steps off.
fn draw_line(
    img: &mut RgbImage,
    (mut x, mut y): (i32, i32),
    (x1, y1): (i32, i32),
    thickness: i32,
    colour: Rgb<u8>,
    dash: Option<u32>,
) {
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    let mut step = 0u32;
    loop {
        if dash.is_none_or(|n| (step / n) % 2 == 0) {
            fill_rect(img, x, y, x + thickness, y + thickness, colour);
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
        step += 1;
    }
}

/// Glyph rows, top to bottom; bit 4 is the leftmost of the 5 columns.
type Glyph = [u8; 7];

/// Drawn for characters the font lacks.
const MISSING: Glyph = [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F];

/// The 5×7 font (after the classic HD44780 character set).
fn glyph(c: char) -> Glyph {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        _ => MISSING,
    }
}

/// Width in pixels of `text` at `scale` (5 px glyphs, 1 px gaps, no trailing gap).
fn text_width(text: &str, scale: u32) -> i32 {
    let n = text.chars().count() as i32;
    if n == 0 {
        0
    } else {
        (6 * n - 1) * scale as i32
    }
}

/// Calls `plot(column, row)` for every set pixel of `text`, in unscaled font coordinates of the whole line.
fn for_each_text_pixel(text: &str, mut plot: impl FnMut(i32, i32)) {
    for (i, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    plot(6 * i as i32 + col, row as i32);
                }
            }
        }
    }
}

/// Draws `text` with its top-left corner at `(x, y)`, 7·`scale` pixels high.
fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32, colour: Rgb<u8>) {
    let s = scale as i32;
    for_each_text_pixel(text, |col, row| {
        fill_rect(
            img,
            x + col * s,
            y + row * s,
            x + (col + 1) * s,
            y + (row + 1) * s,
            colour,
        );
    });
}

/// Draws `text` horizontally centred on `cx`, top at `y`.
fn draw_text_centered(
    img: &mut RgbImage,
    cx: i32,
    y: i32,
    text: &str,
    scale: u32,
    colour: Rgb<u8>,
) {
    draw_text(
        img,
        cx - text_width(text, scale) / 2,
        y,
        text,
        scale,
        colour,
    );
}

/// Draws `text` rotated 90° anticlockwise (reading upwards), starting at the bottom with its left edge (the
/// glyphs' top) at `x`.
fn draw_text_up(img: &mut RgbImage, x: i32, bottom: i32, text: &str, scale: u32, colour: Rgb<u8>) {
    let s = scale as i32;
    for_each_text_pixel(text, |col, row| {
        let (px, py) = (x + row * s, bottom - (col + 1) * s);
        fill_rect(img, px, py, px + s, py + s, colour);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluate;

    /// A deterministic, imperfect classifier: 40 samples per class whose true-class probability varies.
    fn scores() -> Scores {
        let mut s = Scores::default();
        let mut state = 12345u32;
        let mut next = || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            f32::from((state >> 16) as u16 % 1000) / 1000.0
        };
        for class in CLASSES {
            for _ in 0..40 {
                let mut raw = [next(), next(), next(), next()];
                raw[class.index()] += 0.4 + 0.3 * class.index() as f32 / 3.0;
                let total: f32 = raw.iter().sum();
                s.push(raw.map(|r| r / total), class);
            }
        }
        s
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("leukoscope-plot-{}-{name}", std::process::id()))
    }

    fn count_colour(img: &RgbImage, colour: Rgb<u8>) -> usize {
        img.pixels().filter(|&&p| p == colour).count()
    }

    #[test]
    fn font_covers_the_needed_characters() {
        for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.%:- =/()_,+".chars() {
            assert_ne!(glyph(c), MISSING, "{c:?}");
        }
        assert_eq!(glyph('a'), glyph('A'));
        assert_eq!(glyph('~'), MISSING);
        assert_eq!(glyph(' '), [0; 7]);
        assert_eq!(text_width("", 2), 0);
        assert_eq!(text_width("AB", 2), 22);
    }

    #[test]
    fn text_is_drawn_where_asked() {
        let mut img = RgbImage::from_pixel(20, 20, WHITE);
        draw_text(&mut img, 1, 1, "-", 2, BLACK);
        // '-' is the middle row: y = 1 + 3·2 .. 1 + 4·2, x = 1 .. 1 + 5·2.
        assert_eq!(count_colour(&img, BLACK), 10 * 2);
        assert_eq!(*img.get_pixel(1, 7), BLACK);
        assert_eq!(*img.get_pixel(10, 8), BLACK);
        assert_eq!(*img.get_pixel(11, 7), WHITE);
        assert_eq!(*img.get_pixel(1, 6), WHITE);
    }

    #[test]
    fn bresenham_lines() {
        let mut img = RgbImage::from_pixel(10, 10, WHITE);
        draw_line(&mut img, (0, 0), (9, 9), 1, BLACK, None);
        assert_eq!(count_colour(&img, BLACK), 10);
        assert!((0..10).all(|i| *img.get_pixel(i, i) == BLACK));

        let mut img = RgbImage::from_pixel(10, 10, WHITE);
        draw_line(&mut img, (8, 2), (1, 2), 2, BLACK, None);
        assert_eq!(count_colour(&img, BLACK), 9 * 2);

        // Shallow line: one pixel per column, ends included, never off by more than half a pixel.
        let mut img = RgbImage::from_pixel(10, 10, WHITE);
        draw_line(&mut img, (0, 0), (9, 3), 1, BLACK, None);
        for x in 0..10u32 {
            let ys: Vec<u32> = (0..10).filter(|&y| *img.get_pixel(x, y) == BLACK).collect();
            assert_eq!(ys.len(), 1, "column {x}");
            assert!(
                (f64::from(ys[0]) - f64::from(x) / 3.0).abs() <= 0.5,
                "column {x}: {ys:?}"
            );
        }

        // Dashed: 3 on, 3 off over 10 steps → steps 0–2 and 6–8.
        let mut img = RgbImage::from_pixel(10, 1, WHITE);
        draw_line(&mut img, (0, 0), (9, 0), 1, BLACK, Some(3));
        let on: Vec<u32> = (0..10).filter(|&x| *img.get_pixel(x, 0) == BLACK).collect();
        assert_eq!(on, vec![0, 1, 2, 6, 7, 8]);

        // Clipped, not panicking.
        draw_line(&mut img, (-5, -5), (50, 50), 2, BLACK, None);
    }

    #[test]
    fn roc_png_is_decodable_and_shows_every_class() {
        let path = temp_path("roc.png");
        write_roc_png(&scores(), "edge TEST", &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(img.dimensions(), (ROC_SIZE, ROC_SIZE));
        // Each class colour is on screen, beyond the 24×10 legend swatch, i.e. its curve is drawn too.
        for (c, colour) in CLASS_COLOURS.iter().enumerate() {
            assert!(count_colour(&img, *colour) > 24 * 10 + 100, "class {c}");
        }
        assert!(
            count_colour(&img, BLACK) > 2000,
            "axes, labels and legend text"
        );
        assert!(count_colour(&img, GRID) > 1000, "grid lines");
        assert!(count_colour(&img, CHANCE) > 200, "chance line");
    }

    #[test]
    fn roc_rejects_invalid_scores() {
        let bad = Scores {
            probs: vec![[0.25; 4]],
            labels: vec![7],
        };
        let err = render_roc(&bad, "x").unwrap_err();
        assert!(matches!(
            err,
            PlotError::Eval(EvalError::LabelOutOfRange { .. })
        ));
    }

    #[test]
    fn confusion_png_is_decodable_with_a_shaded_diagonal() {
        let report = evaluate(&scores(), "edge", "TEST", "test").unwrap();
        let path = temp_path("confusion.png");
        write_confusion_png(&report, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(img.dimensions(), (CONFUSION_WIDTH, CONFUSION_HEIGHT));
        // Cell (t, p) is shaded by its share of row t; sample a cell corner, away from the text.
        for t in 0..NUM_CLASSES {
            let total: u64 = report.confusion[t].iter().sum();
            for p in 0..NUM_CLASSES {
                let share = report.confusion[t][p] as f64 / total as f64;
                let (x, y) = (170 + 128 * p as u32 + 6, 56 + 128 * t as u32 + 6);
                assert_eq!(
                    *img.get_pixel(x, y),
                    blend(WHITE, HEAT, share),
                    "cell {t},{p}"
                );
            }
        }
        assert!(count_colour(&img, BLACK) > 1000, "labels");
    }

    #[test]
    fn write_error_names_the_path() {
        let report = evaluate(&scores(), "edge", "TEST", "test").unwrap();
        let path = temp_path("no-such-dir").join("confusion.png");
        let err = write_confusion_png(&report, &path).unwrap_err();
        assert!(matches!(&err, PlotError::Write { path: p, .. } if *p == path));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
