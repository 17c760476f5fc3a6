//! `cargo xtask lock`: resolves every environment's wheels and base
//! packages into `environments.lock`.

mod file;
mod resolve;

pub use file::*;
pub use resolve::{check_fresh, inputs_hash, lock, LockOptions, SOURCE_DATE_EPOCH};
