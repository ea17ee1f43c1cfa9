//! Leukoscope host library: data loading, the nets (tch), training, evaluation and ONNX export.
//!
//! The host depends on the device library (`leukoscope`) so that training inputs come from the device's own
//! preprocessing and evaluation runs the device's own tract inference.

pub mod cv;
pub mod data;
pub mod device;
pub mod eval;
pub mod export;
pub mod nets;
pub mod onnx;
pub mod pack;
pub mod plot;
pub mod predict;
pub mod reproduce;
pub mod train;

/// An error and its causes on one line, `outer: cause: …`, leaving out a cause whose text the line already
/// holds (most of our errors print their source themselves, and anyhow's `{:#}` would print it twice).
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{data, render_error};
    use anyhow::Context;

    #[test]
    fn causes_already_said_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = Err::<(), _>(data::DataError::Io {
            path: "x.pack".into(),
            source: io,
        })
        .context("training edge")
        .unwrap_err();
        assert_eq!(render_error(&e), "training edge: x.pack: No such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render_error(&plain), "outer: inner");
    }
}
