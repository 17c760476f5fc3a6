//! `cargo xtask lock [ENV|--all] [--upgrade] [--dry-run]`.
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
    /// Only resolve the wheels and print each environment's CUDA and
    /// cuDNN, as the wheels say; bootstraps no base and writes nothing
    /// (pip fetches what resolving needs into its own cache: the wheels'
    /// metadata where the index serves it apart, else the wheels).
    #[arg(long)]
    dry_run: bool,
}

impl Run for Lock {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        if self.dry_run {
            return Ok(lock::dry_run(&spec, self.env.as_deref(), self.all)?);
        }
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
