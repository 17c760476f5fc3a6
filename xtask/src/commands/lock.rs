//! `cargo xtask lock [ENV|--all] [--upgrade]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::build::lock::{self, LockOptions};
use crate::error::Result;

/// Resolve wheels (with sha256) and the base's Debian packages into
/// environments.lock. Unchanged environments keep their entries.
#[derive(clap::Args)]
pub struct Lock {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Lock every environment.
    #[arg(long, conflicts_with = "env")]
    all: bool,
    /// Resolve again even when the spec did not change (newer wheels).
    #[arg(long)]
    upgrade: bool,
}

impl Run for Lock {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        Ok(lock::lock(
            &spec,
            ctx.lock_path(),
            LockOptions {
                env: self.env.as_deref(),
                all: self.all,
                upgrade: self.upgrade,
            },
        )?)
    }
}
