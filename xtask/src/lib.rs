//! torchenv's `cargo xtask`: lock, build, launch and gate reproducible
//! PyTorch-CUDA environments declared in `environments.yaml`.
//!
//! One module per capability; `main.rs` only dispatches.

pub mod base;
pub mod bench_harness;
pub mod bench_up;
pub mod cache;
pub mod compat;
pub mod docker;
pub mod doctor;
pub mod error;
pub mod gate;
pub mod harness_build;
pub mod host_tools;
pub mod image;
pub mod launch;
pub mod lock;
pub mod models;
pub mod pip;
pub mod progress;
pub mod prune;
pub mod spec;
pub mod suite;
pub mod tasks;
pub mod wheels;
