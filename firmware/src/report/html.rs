//! The HTML report: one self-contained page (no external files) naming what made it, with the
//! differential, flags, failed frames and a gallery per class (and one for unidentified cells) of the
//! counted cells' crops as inline base64 PNGs ("48 of 122 shown").

use base64::Engine;

use super::{CropError, Report};
use crate::count::{reference_range, UNIDENTIFIED};

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML page; fails only when a crop cannot be encoded.
pub fn to_string(r: &Report) -> Result<String, CropError> {
    let d = &r.differential;
    let pct = d.percentages();
    let flags = r.flags();
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Leukoscope differential</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;\
         padding:4px 8px;text-align:right}td:first-child{text-align:left}.flag{color:#b00;font-weight:bold}\
         .g img{margin:2px;border:1px solid #ddd}</style></head><body>\n<h1>White-cell differential</h1>\n",
    );
    s += &format!("<p>{}.</p>\n", escape(&r.headline()));
    s += &format!("<p><small>{}</small></p>\n", escape(&r.made_by()));
    s += "<table><tr><th>class</th><th>count</th><th>% of identified</th><th>adult reference %</th><th>flag</th></tr>\n";
    for (i, name) in r.classes().iter().enumerate() {
        let flag = flags
            .iter()
            .find(|f| f.class == name)
            .map_or(String::new(), |f| {
                format!("{:?}", f.direction).to_uppercase()
            });
        let range =
            reference_range(name).map_or(String::new(), |rr| format!("{}–{}", rr.low, rr.high));
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{range}</td><td class=\"flag\">{flag}</td></tr>\n",
            escape(name),
            d.count(Some(i)),
            pct[i],
        );
    }
    s += &format!(
        "<tr><td>{UNIDENTIFIED}</td><td>{}</td><td></td><td></td><td></td></tr></table>\n",
        d.unidentified()
    );
    s += "<p><small>Reference: MedlinePlus, <i>Blood differential test</i> \
          (https://medlineplus.gov/ency/article/003657.htm). A flag prompts a look; it is not a diagnosis.</small></p>\n";
    if let Some(w) = r.exposure_warning() {
        s += &format!("<p class=\"flag\">Warning: {}</p>\n", escape(&w));
    }
    let failed: Vec<_> = r.frames.iter().filter_map(|f| f.error.as_ref()).collect();
    if !failed.is_empty() {
        s += "<h2>Frames that could not be analysed</h2><ul>\n";
        for e in failed {
            s += &format!("<li>{}</li>\n", escape(e));
        }
        s += "</ul>\n";
    }
    let totals = d.counts().iter().copied().chain([d.unidentified()]);
    for ((name, items), total) in r.gallery().zip(totals) {
        s += &format!(
            "<h2>{}: {} of {total} shown</h2><div class=\"g\">\n",
            escape(name),
            items.len()
        );
        for (source, index, cell) in items {
            let Some(crop) = &cell.crop else { continue };
            let png = crop.to_png().map_err(|e| CropError {
                frame: source.to_string(),
                cell: index,
                source: e,
            })?;
            let confidence = cell.prediction.as_ref().map_or(f32::NAN, |p| p.confidence);
            let caption = format!("{source} {} {confidence:.2}", cell.rect);
            s += &format!(
                "<img alt=\"{}\" title=\"{}\" src=\"data:image/png;base64,{}\">\n",
                escape(name),
                escape(&caption),
                base64::engine::general_purpose::STANDARD.encode(png)
            );
        }
        s += "</div>\n";
    }
    s += "</body></html>\n";
    Ok(s)
}
