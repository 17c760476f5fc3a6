//! The regression gate: `cargo xtask check` and `cargo xtask ci`.
//!
//! The harness evaluates each model of an environment on the fixture images
//! ([`check`]); [`compare`] judges the run against the baselines in
//! `fixtures/baselines` ([`baseline`]) within the environment's tolerances;
//! [`ci`] does that for several environments, compares them with each
//! other and writes `summary.md` ([`summary`]) and `junit.xml` ([`junit`]).
//!
//! The harness runs in the environment's container as `up` would create it,
//! in one-shot mode (`launch::plan`); its GPUs are `gpus:` resolved against
//! the daemon as in `up`. A typed failure of that resolution (GPUs the
//! engine cannot serve, a CUDA check in an environment without GPUs) keeps
//! its exit code.
//!
//! The command line (`check`, `ci`: where the image, weights and baselines
//! come from, the verdict and exit code) is in `commands::gate`.
//!
//! May use: nothing else of the crate.

pub mod baseline;
pub mod check;
pub mod ci;
pub mod compare;
pub mod junit;
pub mod report;
pub mod summary;

#[cfg(test)]
mod tests;

pub use check::{CheckOptions, Device, EnvResult, Outcome, Runner};
