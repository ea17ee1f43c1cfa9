//! Leukoscope host library: data loading, the nets (tch), training, evaluation and ONNX export.
//!
//! The host depends on the device library (`leukoscope`) so that training inputs come from the device's own
//! preprocessing and evaluation runs the device's own tract inference.

pub mod augment;
pub mod bench;
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
pub mod pretrained;
pub mod reproduce;
pub mod train;
