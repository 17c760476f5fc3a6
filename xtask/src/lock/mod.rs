//! `cargo xtask lock`: resolves every environment's wheels and base
//! packages into `environments.lock`.

mod file;

pub use file::*;
