//! `cargo xtask down [ENV|--all] [--volumes]`: the flags are
//! [`launch::down::Down`].
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch::down::Down;

impl Run for Down {
    fn run(self, ctx: &Ctx) -> Result<()> {
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            Ok(self.down(&docker, ctx.spec_path()).await?)
        })
    }
}
