//! torchenv harness library: everything the `harness` binary does, as
//! modules the integration tests can call directly.

pub mod checkpoint;
pub mod cli;
pub mod cuda;
pub mod dataset;
pub mod eval;
pub mod imagenet;
pub mod jpeg;
pub mod models;
pub mod npy;
pub mod preprocess;
pub mod report;
pub mod resample;
pub mod runtime;
pub mod weights_download;
