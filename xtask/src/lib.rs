//! torchenv's `cargo xtask`: lock, build, launch and gate reproducible
//! PyTorch-CUDA environments declared in `environments.yaml`.
//!
//! One module per capability; `main.rs` only dispatches.

pub mod cache;
pub mod compat;
pub mod docker;
pub mod error;
pub mod lock;
pub mod pip;
pub mod spec;
pub mod tasks;
