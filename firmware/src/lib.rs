//! Leukoscope device library: everything the point-of-care white-blood-cell counter runs.
//!
//! Data flow (see `DESIGN.md`): a [`frame::Frame`] from a camera or a file ([`inputs`] finds the files)
//! is segmented ([`segment`]) and each white cell cut into a classifier input by [`preprocess`] (the one
//! contract shared with the host trainer), typed by [`classify::Classifier`] (tract, CPU only) into the one
//! cell type [`cell::Cell`], counted ([`count`]) and reported ([`report`]); a microscope [`session`] does
//! the same field by field and keeps every cell in its [`journal`]. The classes are the model card's
//! ([`classes::Classes`]). This crate never depends on libtorch.
#![warn(missing_docs)]

pub mod adapt;
pub mod autofocus;
pub mod board;
pub mod capture;
pub mod cell;
pub mod classes;
pub mod classify;
pub mod contain;
pub mod count;
pub mod exposure;
pub mod frame;
pub mod hw;
pub mod inputs;
pub mod journal;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod rect;
pub mod report;
pub mod scale;
pub mod segment;
pub mod session;
pub mod stain;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod web;

pub use cell::{Cell, Prediction};
pub use classes::Classes;
pub use classify::Classifier;
pub use count::Differential;
pub use frame::Frame;
pub use model::{ModelCard, ModelSource};
pub use pipeline::{FrameResult, Pipeline};
