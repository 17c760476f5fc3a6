//! `environments.lock`: its data model ([`file`]), whether it belongs to the
//! spec as it is now ([`fresh`]), and its error. Resolving a spec into the
//! lock (`cargo xtask lock`) bootstraps bases and asks pip, so it is a build
//! step: `crate::build::lock`.
//!
//! May use: `spec`, `cache`, `exit` (nothing that builds), so the build can
//! depend on it.

mod error;
mod file;
mod fresh;

pub use error::LockError;
pub use file::*;
pub use fresh::{check_cuda, check_fresh, inputs_hash};
