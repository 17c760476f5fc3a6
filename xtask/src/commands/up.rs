//! `cargo xtask up [ENV]`: the flags are [`launch::up::Up`].
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch::up::Up;

impl Run for Up {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        if let Some(warning) = spec.env(self.env.as_deref())?.exposure_warning() {
            eprintln!("torchenv: warning: {warning}");
        }
        let ready = ctx.block_on(async {
            let docker = ctx.docker().await?;
            Ok(self.up(&docker, &spec, ctx.lock_path()).await?)
        })?;
        print!("{}", ready.describe());
        Ok(())
    }
}
