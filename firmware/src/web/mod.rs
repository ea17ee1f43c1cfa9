//! The device's web page (issue 14), in progress: the parts that do not need the HTTP server yet.
//!
//! - [`auth`]: operators (`DATA/users`, argon2id), signed-in sessions with a CSRF token each, sign-in
//!   throttling.
//! - [`store`]: one journal per sample under `DATA/counts`, read through a cache.
//! - [`device`]: the microscope behind the page as one object-safe trait over any
//!   [`crate::board::Microscope`] (live frames, focus, light, stage, a count session).
//!
//! Review, sign-off and amendment are journal records ([`crate::journal::Record::Reviewed`],
//! [`crate::journal::Record::Signed`], [`crate::journal::Record::Amended`]), fsync'd before they count.
//! Not yet here: the server (`leukoscope serve`), its pages, and the browser test.

pub mod auth;
pub mod device;
pub mod store;
