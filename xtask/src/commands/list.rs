//! `cargo xtask list`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;
use crate::spec::Base;

/// List the environments of the spec.
#[derive(clap::Args)]
pub struct List {}

impl Run for List {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        for env in spec.environments.values() {
            let base = match &env.base {
                Base::Debian { suite } => format!("debian {suite}"),
                Base::Image { reference } => reference.clone(),
            };
            let marker = if env.name == spec.default {
                " (default)"
            } else {
                ""
            };
            println!(
                "{:<28} torch {:<8} torchvision {:<8} torchaudio {:<8} cuda {:<6} python {} on {base}{marker}",
                env.name,
                env.torch,
                env.torchvision,
                env.torchaudio.as_deref().unwrap_or("-"),
                env.cuda.as_deref().unwrap_or("?"),
                env.python,
            );
        }
        Ok(())
    }
}
