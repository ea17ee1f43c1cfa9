//! The device's web page (`leukoscope serve`): live view, count, review, sign-off, reports and the
//! calibration export, served from the device by axum on tokio; pages are rendered here, with no script
//! or style fetched from anywhere else (a clinic's Pi may be offline).
//!
//! - [`auth`]: operators (`DATA/users`, argon2id), signed-in sessions with a CSRF token each, sign-in
//!   throttling.
//! - [`store`]: one journal per sample under `DATA/counts`, read through a cache.
//! - [`device`]: the microscope behind the page as one object-safe trait over any
//!   [`crate::board::Microscope`] (live frames, focus, light, stage, a count session).
//! - [`app`]: what the page does, without HTTP: one count at a time on a worker thread, review,
//!   sign-off, amendment, calibration export.
//! - [`pages`]: the HTML.
//! - [`routes`]: the HTTP side: routes, session cookie, CSRF check, body limit.
//!
//! Review, sign-off and amendment are journal records ([`crate::journal::Record::Reviewed`],
//! [`crate::journal::Record::Signed`], [`crate::journal::Record::Amended`]), fsync'd before the page
//! answers, so a server killed at any moment shows the same state when it starts again.

pub mod app;
pub mod auth;
pub mod device;
pub mod pages;
pub mod routes;
pub mod store;
