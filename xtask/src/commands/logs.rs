//! `cargo xtask logs [ENV] [-f] [--tail N]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch;

/// Print (or follow) an environment's container log.
#[derive(clap::Args)]
pub struct Logs {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Keep following.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
}

impl Run for Logs {
    fn run(self, ctx: &Ctx) -> Result<()> {
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let (spec, env) = (ctx.spec_path(), self.env.as_deref());
            Ok(launch::session::logs(&docker, spec, env, self.follow, self.tail).await?)
        })
    }
}
