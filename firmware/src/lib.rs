//! Leukoscope device library: everything the point-of-care white-blood-cell counter runs.
//!
//! Data flow (see `DESIGN.md`): a [`frame::Frame`] from a camera or a file is cut into a classifier input by
//! [`preprocess`] (the one contract shared with the host trainer), typed by [`classify::Classifier`] (tract,
//! CPU only) and reported. This crate never depends on libtorch.
#![warn(missing_docs)]

pub mod classify;
pub mod frame;
pub mod model;
pub mod preprocess;

pub use classify::{Classifier, Prediction};
pub use frame::Frame;
pub use model::{ModelCard, ModelSource};
pub use preprocess::{Class, CLASSES};
