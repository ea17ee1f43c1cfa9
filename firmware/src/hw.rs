//! The vocabulary every peripheral error speaks: an [`ErrorKind`] the run loop acts on, and the [`Error`]
//! trait that exposes it.
//!
//! It lives on its own, below both [`crate::capture`] (cameras) and [`crate::board`] (light, focus,
//! stage, button, status LED), so that each can use it without importing the other: `board` uses
//! `capture` (its board file names a camera, its simulator has one), never the reverse. This module must
//! not know about any peripheral.

/// What kind of failure a peripheral reported; the run loop decides from this alone whether to retry,
/// back off, pause or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No answer in time (a frame that never came); retrying at once is reasonable.
    Timeout,
    /// A frame was lost or arrived damaged; the next one is probably fine.
    Dropped,
    /// The device is gone (unplugged camera, dead child process); retry with back-off, then pause.
    Disconnected,
    /// A motor did not move (end stop never reached, stalled axis).
    Stalled,
    /// A requested position or level is outside the configured limits; nothing moved.
    Limit,
    /// An axis was asked to move before it was homed.
    NotHomed,
    /// The peripheral is misconfigured (bad pin map, unsupported pixel format).
    Config,
    /// A bus or pin operation failed.
    Io,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether a retry of the same operation may succeed without a person doing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Dropped | ErrorKind::Disconnected
        )
    }
}

/// A peripheral error: displayable, with an [`ErrorKind`].
pub trait Error: std::error::Error {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;
}

/// An error and its causes on one line, `outer: cause: root`, as anyhow's `{:#}` prints them: for
/// messages that outlive the error (a pause record, an autofocus failure), so no cause is lost.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
