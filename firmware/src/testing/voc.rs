//! Pascal VOC annotations (the BCCD data set's `Annotations/*.xml`), read minimally by hand: the reference
//! boxes detection is measured against (`examples/bccd_quality.rs`, the segmenter's tests). A test oracle:
//! not part of the shipped API. It knows no pixels; box overlap is [`Rect::iou`].

use crate::rect::Rect;

/// The boxes `[xmin, ymin, xmax, ymax]` of every `<object>` named `name` (case-insensitive), as written
/// (edges in the wrong order are kept, so such a box is empty). Objects without a complete, numeric
/// `<bndbox>` are skipped.
pub fn voc_boxes(xml: &str, name: &str) -> Vec<Rect> {
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
            Some(Rect::from([v("xmin")?, v("ymin")?, v("xmax")?, v("ymax")?]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_boxes() {
        let xml = "<annotation><object><name>RBC</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax>\
                   <ymax>4</ymax></bndbox></object><object>\n<name>WBC</name><bndbox>\n<xmin>68</xmin>\n\
                   <ymin>315</ymin><xmax>286</xmax><ymax>480</ymax></bndbox></object></annotation>";
        assert_eq!(voc_boxes(xml, "WBC"), vec![Rect::new(68, 315, 286, 480)]);
        assert_eq!(voc_boxes(xml, "rbc").len(), 1);
        assert!(voc_boxes("garbage", "WBC").is_empty());
    }
}
