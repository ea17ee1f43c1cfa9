//! Test oracles and doubles: reference implementations and stand-ins that tests, benches and examples
//! compare the device's code against. Not part of the shipped API: compiled only for this crate's own
//! tests and with the `testing` feature (as tract keeps its references in `test-rt`), so the device binary
//! never carries them.

mod blobs;
pub mod dinic;
pub mod fuzz;
pub mod graphs;
pub mod voc;

pub use blobs::{BlobAnalyzer, NeverFails};
