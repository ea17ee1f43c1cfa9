//! The CSV report: one row per cell (failed frames get one row with the error), header first.

use super::Report;

/// The header row.
pub const HEADER: &str =
    "frame,cell,x0,y0,x1,y1,class,confidence,predicted,p_eosinophil,p_lymphocyte,p_monocyte,p_neutrophil,counted,error";

/// Quotes a field when it holds a comma, quote or line break (RFC 4180).
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report as CSV text.
pub fn to_string(r: &Report) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for f in &r.frames {
        let path = field(&f.path);
        if let Some(e) = &f.error {
            s += &format!("{path},,,,,,,,,,,,,,{}\n", field(e));
        }
        for (i, c) in f.cells.iter().enumerate() {
            let [x0, y0, x1, y1] = c.bbox;
            let [pe, pl, pm, pn] = c.probs;
            s += &format!(
                "{path},{i},{x0},{y0},{x1},{y1},{},{},{},{pe},{pl},{pm},{pn},{},\n",
                c.class, c.confidence, c.predicted, c.counted
            );
        }
    }
    s
}
