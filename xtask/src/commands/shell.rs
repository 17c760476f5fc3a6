//! `cargo xtask shell [ENV]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::launch;

/// An interactive shell in a running environment.
#[derive(clap::Args)]
pub struct Shell {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
}

impl Run for Shell {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let code = ctx.block_on(async {
            let docker = ctx.docker().await?;
            Ok(launch::session::shell(&docker, ctx.spec_path(), self.env.as_deref()).await?)
        })?;
        exited(code)
    }
}

/// A command's exit status as ours: nothing to report when it is 0.
pub(super) fn exited(code: i64) -> Result<()> {
    match code.clamp(0, 255) as u8 {
        0 => Ok(()),
        code => Err(Error::Exited(code)),
    }
}
