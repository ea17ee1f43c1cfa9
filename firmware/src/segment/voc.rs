//! Pascal VOC annotations (the BCCD data set's `Annotations/*.xml`), read minimally by hand, and box overlap.
//! Used to measure detection; it knows no pixels.

/// The boxes `[xmin, ymin, xmax, ymax]` of every `<object>` named `name` (case-insensitive). Objects without
/// a complete, numeric `<bndbox>` are skipped.
pub fn voc_boxes(xml: &str, name: &str) -> Vec<[u32; 4]> {
    let tag = |s: &str, t: &str| -> Option<String> {
        let open = format!("<{t}>");
        let a = s.find(&open)? + open.len();
        let b = s[a..].find(&format!("</{t}>"))? + a;
        Some(s[a..b].trim().to_string())
    };
    xml.split("<object>")
        .skip(1)
        .filter_map(|obj| {
            let obj = obj.split("</object>").next()?;
            if !tag(obj, "name")?.eq_ignore_ascii_case(name) {
                return None;
            }
            let bb = tag(obj, "bndbox")?;
            let v = |t| {
                tag(&bb, t)
                    .and_then(|s| s.parse::<f32>().ok())
                    .map(|f| f.max(0.0) as u32)
            };
            Some([v("xmin")?, v("ymin")?, v("xmax")?, v("ymax")?])
        })
        .collect()
}

/// Intersection over union of two boxes `[x0, y0, x1, y1]` (0 when either is empty).
pub fn iou(a: [u32; 4], b: [u32; 4]) -> f32 {
    let area = |r: [u32; 4]| r[2].saturating_sub(r[0]) as u64 * r[3].saturating_sub(r[1]) as u64;
    let inter = [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ];
    let i = area(inter);
    let u = area(a) + area(b) - i;
    if u == 0 {
        0.0
    } else {
        i as f32 / u as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_boxes() {
        let xml = "<annotation><object><name>RBC</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax>\
                   <ymax>4</ymax></bndbox></object><object>\n<name>WBC</name><bndbox>\n<xmin>68</xmin>\n\
                   <ymin>315</ymin><xmax>286</xmax><ymax>480</ymax></bndbox></object></annotation>";
        assert_eq!(voc_boxes(xml, "WBC"), vec![[68, 315, 286, 480]]);
        assert_eq!(voc_boxes(xml, "rbc").len(), 1);
        assert!(voc_boxes("garbage", "WBC").is_empty());
    }

    #[test]
    fn iou_basics() {
        assert_eq!(iou([0, 0, 10, 10], [0, 0, 10, 10]), 1.0);
        assert_eq!(iou([0, 0, 10, 10], [10, 10, 20, 20]), 0.0);
        assert!((iou([0, 0, 10, 10], [5, 0, 15, 10]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou([0, 0, 0, 0], [0, 0, 0, 0]), 0.0);
    }
}
