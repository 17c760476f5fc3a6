//! `cargo xtask exec ENV -- CMD…`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::shell::exited;
use super::{Ctx, Run};
use crate::error::Result;
use crate::launch;

/// Run a command in a running environment; its exit code is ours.
#[derive(clap::Args)]
pub struct Exec {
    /// Environment name.
    env: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

impl Run for Exec {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let code = ctx.block_on(async {
            let docker = ctx.docker().await?;
            Ok(launch::session::exec(&docker, ctx.spec_path(), Some(&self.env), &self.cmd).await?)
        })?;
        exited(code)
    }
}
