//! torchenv's `cargo xtask`: lock, build, launch and gate reproducible
//! PyTorch-CUDA environments declared in `environments.yaml`.
//!
//! One module per capability; `main.rs` only dispatches.

pub mod build;
pub mod cache;
pub mod commands;
pub mod compat;
pub mod docker;
pub mod error;
pub mod exit;
pub mod gate;
pub mod launch;
pub mod lock;
pub mod process;
pub mod progress;
pub mod spec;
