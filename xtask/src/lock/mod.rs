//! `environments.lock`: its data model ([`file`]), whether it belongs to the
//! spec ([`fresh`]), its error, and `cargo xtask lock` ([`resolve`]), which
//! resolves every environment's wheels and base packages into it.
//!
//! `file`, `fresh` and `error` use only `spec`, `cache` and `exit`, so the
//! build can depend on them; `resolve` (the lock command) uses the build's
//! bootstrap, pip and wheel fetching.
//!
//! May use: nothing else of the crate.

mod error;
mod file;
mod fresh;
pub mod resolve;

pub use error::LockError;
pub use file::*;
pub use fresh::{check_fresh, inputs_hash};
pub use resolve::{lock, LockOptions, SOURCE_DATE_EPOCH};
