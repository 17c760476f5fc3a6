//! torchenv harness library: everything the `harness` binary does, as
//! modules the integration tests can call directly. The report types and
//! the ImageNet class table come from the `report` crate (shared with the
//! gate, which reads the reports).

pub mod checkpoint;
pub mod cli;
pub mod cuda;
pub mod dataset;
pub mod eval;
pub mod eval_report;
pub mod export;
pub mod gallery;
pub mod jpeg;
pub mod models;
pub mod npy;
pub mod onnx_session;
pub mod preprocess;
pub mod resample;
pub mod runtime;
pub mod weights_download;
