//! The HTML report: one self-contained page (no external files) with the differential, flags, failed frames
//! and a gallery of each class's crops as inline base64 PNGs.

use super::{base64, Report};
use crate::count::{ADULT_REFERENCE, UNIDENTIFIED};
use crate::preprocess::CLASSES;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML page.
pub fn to_string(r: &Report) -> String {
    let d = &r.differential;
    let pct = d.percentages();
    let flags = r.flags();
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Leukoscope differential</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;\
         padding:4px 8px;text-align:right}td:first-child{text-align:left}.flag{color:#b00;font-weight:bold}\
         .g img{margin:2px;border:1px solid #ddd}</style></head><body>\n<h1>White-cell differential</h1>\n",
    );
    s += &format!(
        "<p>{} cells counted in {} frames; target {} {}.</p>\n",
        d.total(),
        r.frames.len(),
        r.stop.target,
        if r.done() { "reached" } else { "not reached" }
    );
    s += "<table><tr><th>class</th><th>count</th><th>% of identified</th><th>adult reference %</th><th>flag</th></tr>\n";
    for (c, rr) in CLASSES.iter().zip(ADULT_REFERENCE) {
        let flag = flags
            .iter()
            .find(|f| f.class == *c)
            .map_or(String::new(), |f| {
                format!("{:?}", f.direction).to_uppercase()
            });
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}–{}</td><td class=\"flag\">{flag}</td></tr>\n",
            c.name(),
            d.count(Some(*c)),
            pct[c.index()],
            rr.low,
            rr.high
        );
    }
    s += &format!(
        "<tr><td>{UNIDENTIFIED}</td><td>{}</td><td></td><td></td><td></td></tr></table>\n",
        d.unidentified()
    );
    s += "<p><small>Reference: MedlinePlus, <i>Blood differential test</i> \
          (https://medlineplus.gov/ency/article/003657.htm). A flag prompts a look; it is not a diagnosis.</small></p>\n";
    let failed: Vec<_> = r.frames.iter().filter_map(|f| f.error.as_ref()).collect();
    if !failed.is_empty() {
        s += "<h2>Frames that could not be analysed</h2><ul>\n";
        for e in failed {
            s += &format!("<li>{}</li>\n", escape(e));
        }
        s += "</ul>\n";
    }
    let names = CLASSES.iter().map(|c| c.name()).chain([UNIDENTIFIED]);
    for (name, items) in names.zip(&r.gallery) {
        s += &format!("<h2>{name} ({} shown)</h2><div class=\"g\">\n", items.len());
        for it in items {
            s += &format!(
                "<img alt=\"{name}\" title=\"{}\" src=\"data:image/png;base64,{}\">\n",
                escape(&it.caption),
                base64(&it.png)
            );
        }
        s += "</div>\n";
    }
    s += "</body></html>\n";
    s
}
