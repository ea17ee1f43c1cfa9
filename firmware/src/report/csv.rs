//! The CSV report: a header block of `#` comment lines naming what made it (software, date, model and its
//! sha256, classes and threshold, inputs), then the column header and one row per cell (a failed frame gets
//! one row with its error). Columns: `frame,cell,x0,y0,x1,y1,class,confidence,predicted`, then
//! `p_<class>` per class of the model (lower case, model order), then `counted,error`. Readers that take
//! comment lines (`pandas.read_csv(f, comment="#")`, R's `read.csv(comment.char="#")`) read it as is.

use super::{round4, Report};

/// Quotes a field when it holds a comma, quote or line break (RFC 4180).
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The column header row for these classes.
pub fn header(r: &Report) -> String {
    let probs: Vec<String> = r
        .classes()
        .iter()
        .map(|c| format!("p_{}", c.to_lowercase()))
        .collect();
    format!(
        "frame,cell,x0,y0,x1,y1,class,confidence,predicted,{},counted,error",
        probs.join(",")
    )
}

/// The `#` lines before the header.
fn preamble(r: &Report) -> String {
    let a = &r.analysis;
    let model = a.model.as_ref().map_or_else(
        || format!("none (analyzer {})", a.analyzer),
        ToString::to_string,
    );
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut s = format!("# {}\n", r.provenance.software);
    s += &format!("# date: {}\n", r.provenance.date);
    s += &format!("# model: {}\n", one_line(&model));
    s += &format!(
        "# classes: {}; unidentified below {}\n",
        r.classes(),
        a.unidentified_threshold
    );
    for input in &r.provenance.inputs {
        s += &format!("# input: {}\n", one_line(input));
    }
    s += &format!("# {}\n", r.headline());
    s
}

/// The report as CSV text.
pub fn to_string(r: &Report) -> String {
    let classes = r.classes();
    let mut s = preamble(r) + &header(r) + "\n";
    for f in &r.frames {
        let path = field(&f.source);
        if let Some(e) = &f.error {
            s += &format!("{path}{}{}\n", ",".repeat(10 + classes.len()), field(e));
        }
        for (i, c) in f.cells.iter().enumerate() {
            let r = c.rect;
            let p = c.prediction.as_ref();
            let conf = p.map_or(String::new(), |p| round4(p.confidence).to_string());
            let predicted = p.map_or("", |p| classes.label(Some(p.predicted)));
            let probs: Vec<String> = (0..classes.len())
                .map(|k| {
                    p.and_then(|p| p.probs.get(k))
                        .map_or(String::new(), |&v| round4(v).to_string())
                })
                .collect();
            s += &format!(
                "{path},{i},{},{},{},{},{},{conf},{predicted},{},{},\n",
                r.x0,
                r.y0,
                r.x1,
                r.y1,
                classes.label(c.class()),
                probs.join(","),
                f.counts(i)
            );
        }
    }
    s
}
