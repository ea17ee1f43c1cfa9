//! PNG figures of an evaluation: the one-vs-rest ROC curves and the confusion-matrix heat map.
//!
//! Drawn with `plotters` on its bitmap backend into a buffer, then encoded with the `image` crate. Text is set
//! in DejaVu Sans, embedded in the binary from `host/assets/` (Bitstream Vera licence, beside it): no system
//! font is looked up at run time, so a figure looks the same on every machine. Class names come from the
//! caller (the model card's order), never from a fixed list, and titles are the caller's too, so that they can
//! name the model file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::{ImageFormat, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::eval::{class_auc, roc_curve, EvalError, Report, Scores};

/// DejaVu Sans 2.37 (`host/assets/DejaVuSans.ttf`), the figures' only font.
pub const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name the embedded font is registered under with plotters.
const FAMILY: &str = "DejaVu Sans";

/// Width and height of the ROC figure in pixels.
pub const ROC_SIZE: (u32, u32) = (760, 760);
/// Width and height of the confusion-matrix figure in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (820, 760);

/// Curve colour of class `c` is `CLASS_COLOURS[c % 10]` (matplotlib's "tab10": blue, orange, green, red, ...).
pub const CLASS_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The heat map's colour for a full row (100 % of a true class); an empty cell is white.
const HEAT: RGBColor = RGBColor(8, 48, 107);
/// The chance diagonal of the ROC figure.
const CHANCE: RGBColor = RGBColor(140, 140, 140);

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The scores are not valid input (see [`Scores::validate`]).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The embedded font does not parse (a corrupt build).
    #[error("the embedded font DejaVuSans.ttf cannot be read")]
    Font,
    /// plotters could not draw the figure.
    #[error("cannot draw the figure {title:?}")]
    Draw {
        /// The figure's title.
        title: String,
        /// plotters' error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
pub fn write_roc_png(
    scores: &Scores,
    classes: &[String],
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    save(&render_roc(scores, classes, title)?, path)
}

/// Draws the confusion matrix of `report` (see [`render_confusion`]) and writes it to `path` as a PNG.
pub fn write_confusion_png(
    report: &Report,
    classes: &[String],
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    save(&render_confusion(report, classes, title)?, path)
}

fn save(img: &RgbImage, path: &Path) -> Result<(), PlotError> {
    img.save_with_format(path, ImageFormat::Png)
        .map_err(|source| PlotError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Registers the embedded font with plotters, once per process.
fn register() -> Result<(), PlotError> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or(PlotError::Font)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A white `size` canvas painted by `paint`, as an image.
fn render(
    size: (u32, u32),
    title: &str,
    paint: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<RgbImage, PlotError> {
    register()?;
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        paint(&root)
            .and_then(|()| root.present().map_err(Into::into))
            .map_err(|source| PlotError::Draw {
                title: title.to_string(),
                source,
            })?;
    }
    Ok(RgbImage::from_raw(size.0, size.1, buf).expect("the buffer holds exactly the image"))
}

/// The name of class `c`, or its index when `classes` is too short.
fn class_name(classes: &[String], c: usize) -> String {
    classes
        .get(c)
        .cloned()
        .unwrap_or_else(|| format!("class {c}"))
}

/// The ROC figure, [`ROC_SIZE`]: `title` above a unit square with axes ticked every 0.1 and grid lines, the
/// dashed chance diagonal, one curve per class in [`CLASS_COLOURS`], and a legend giving each class's AUC. A
/// class whose AUC is undefined (no positive or no negative sample) has no curve and "AUC n/a".
pub fn render_roc(scores: &Scores, classes: &[String], title: &str) -> Result<RgbImage, PlotError> {
    scores.validate()?;
    render(ROC_SIZE, title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(24)
            .x_label_area_size(56)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(11)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((FAMILY, 15))
            .x_desc("False positive rate")
            .y_desc("True positive rate")
            .axis_desc_style((FAMILY, 17))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                CHANCE.stroke_width(1),
            ))?
            .label("chance")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], CHANCE.stroke_width(1)));
        for c in 0..classes.len() {
            let colour = CLASS_COLOURS[c % CLASS_COLOURS.len()];
            let auc = class_auc(scores, c);
            let auc = if auc.is_nan() {
                "n/a".to_string()
            } else {
                format!("{auc:.4}")
            };
            chart
                .draw_series(LineSeries::new(
                    roc_curve(scores, c),
                    colour.stroke_width(2),
                ))?
                .label(format!("{}  AUC {auc}", class_name(classes, c)))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(12)
            .label_font((FAMILY, 16))
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// The confusion-matrix figure, [`CONFUSION_SIZE`]: `title` above a heat map with one row per true class
/// (top to bottom in `classes` order) and one column per predicted class, each cell shaded by its share of the
/// row and labelled with its count and that share, and the class names on both axes.
pub fn render_confusion(
    report: &Report,
    classes: &[String],
    title: &str,
) -> Result<RgbImage, PlotError> {
    let n = report.confusion.len();
    render(CONFUSION_SIZE, title, |root| {
        // Cell (true t, predicted p) is centred on x = p, y = n - 1 - t, so that the first class is the top row;
        // ticks fall on the integers, and the labels name the classes there.
        let span = -0.5..n as f64 - 0.5;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(24)
            .x_label_area_size(64)
            .y_label_area_size(140)
            .build_cartesian_2d(span.clone(), span)?;
        let at = |v: f64, name: &dyn Fn(usize) -> String| {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 || i >= n as f64 {
                String::new()
            } else {
                name(i as usize)
            }
        };
        let column = |v: &f64| at(*v, &|i| class_name(classes, i));
        let row = |v: &f64| at(*v, &|i| class_name(classes, n - 1 - i));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&column)
            .y_label_formatter(&row)
            .label_style((FAMILY, 15))
            .x_desc("Predicted class")
            .y_desc("True class")
            .axis_desc_style((FAMILY, 17))
            .draw()?;
        let mut cells = Vec::with_capacity(n * n);
        for (t, row) in report.confusion.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                cells.push(((n - 1 - t) as f64, p as f64, count, share));
            }
        }
        chart.draw_series(cells.iter().map(|&(y, p, _, share)| {
            Rectangle::new(
                [(p - 0.5, y - 0.5), (p + 0.5, y + 0.5)],
                blend(WHITE, HEAT, share).filled(),
            )
        }))?;
        chart.draw_series(cells.iter().map(|&(y, p, _, _)| {
            Rectangle::new(
                [(p - 0.5, y - 0.5), (p + 0.5, y + 0.5)],
                CHANCE.stroke_width(1),
            )
        }))?;
        let centred = Pos::new(HPos::Center, VPos::Center);
        for &(y, p, count, share) in &cells {
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let big = TextStyle::from((FAMILY, 26).into_font())
                .color(&ink)
                .pos(centred);
            let small = TextStyle::from((FAMILY, 16).into_font())
                .color(&ink)
                .pos(centred);
            chart.draw_series([
                Text::new(count.to_string(), (p, y + 0.08), big),
                Text::new(format!("{:.1} %", 100.0 * share), (p, y - 0.18), small),
            ])?;
        }
        Ok(())
    })
}

/// `a` moved a fraction `t` (clamped to `[0, 1]`) of the way to `b`.
fn blend(a: RGBColor, b: RGBColor, t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CLASSES;
    use crate::eval::evaluate;
    use image::Rgb;

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

    fn names() -> Vec<String> {
        CLASSES.iter().map(|c| c.name().to_string()).collect()
    }

    fn rgb(c: RGBColor) -> Rgb<u8> {
        Rgb([c.0, c.1, c.2])
    }

    fn count_colour(img: &RgbImage, colour: RGBColor) -> usize {
        img.pixels().filter(|&&p| p == rgb(colour)).count()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("leukoscope-plot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn embedded_font_parses() {
        register().expect("DejaVuSans.ttf registers");
        assert!(FONT.len() > 100_000, "the whole font is embedded");
    }

    #[test]
    fn roc_has_every_class_curve_and_text() {
        let img = render_roc(&scores(), &names(), "edge16-int8-weights.onnx on TEST: ROC").unwrap();
        assert_eq!(img.dimensions(), ROC_SIZE);
        for (c, colour) in CLASS_COLOURS.iter().take(4).enumerate() {
            assert!(count_colour(&img, *colour) > 200, "class {c} curve");
        }
        // A fifth colour appears only with a fifth class.
        assert_eq!(count_colour(&img, CLASS_COLOURS[4]), 0);
        // The title is drawn (antialiased text leaves grey pixels at the top).
        let top_ink = (0..ROC_SIZE.0)
            .flat_map(|x| (0..40).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 != [255, 255, 255])
            .count();
        assert!(top_ink > 300, "title ink {top_ink}");
        // Different titles give different figures.
        let other = render_roc(&scores(), &names(), "edge.onnx on TEST: ROC").unwrap();
        assert_ne!(img, other);
    }

    #[test]
    fn confusion_shades_rows_by_share() {
        let s = scores();
        let report = evaluate(&s, "edge16", "TEST", "recipe").unwrap();
        let img = render_confusion(&report, &names(), "edge16.onnx on TEST: confusion").unwrap();
        assert_eq!(img.dimensions(), CONFUSION_SIZE);
        // Every row is mostly right here, so the darkest shades are present and some cells are near white.
        let dark = img.pixels().filter(|p| p.0[2] > 100 && p.0[0] < 80).count();
        assert!(dark > 10_000, "dark cells {dark}");
        assert_eq!(blend(WHITE, HEAT, 0.0), WHITE);
        assert_eq!(blend(WHITE, HEAT, 1.0), HEAT);
        assert_eq!(blend(WHITE, HEAT, 7.0), HEAT);
    }

    #[test]
    fn figures_are_written_as_png() {
        let dir = temp_dir("write");
        let s = scores();
        let report = evaluate(&s, "edge16", "TEST", "recipe").unwrap();
        let roc = dir.join("model-test-roc.png");
        let confusion = dir.join("model-test-confusion.png");
        write_roc_png(&s, &names(), "model.onnx on TEST: ROC (one vs rest)", &roc).unwrap();
        write_confusion_png(
            &report,
            &names(),
            "model.onnx on TEST: confusion matrix",
            &confusion,
        )
        .unwrap();
        for p in [&roc, &confusion] {
            let img = image::open(p).expect("PNG reads back").to_rgb8();
            assert!(img.width() > 500 && img.height() > 500);
        }
        if std::env::var_os("LEUKOSCOPE_KEEP_PLOTS").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!("figures kept in {}", dir.display());
        }
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent-leukoscope-dir/roc.png");
        let err = write_roc_png(&scores(), &names(), "t", path).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-leukoscope-dir/roc.png"),
            "{err}"
        );
        assert!(matches!(err, PlotError::Write { .. }));
    }

    #[test]
    fn empty_scores_are_an_error_not_a_panic() {
        let err = render_roc(&Scores::default(), &names(), "t").unwrap_err();
        assert!(matches!(err, PlotError::Eval(EvalError::Empty)), "{err}");
    }
}
