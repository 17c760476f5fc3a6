//! `cargo xtask check [ENV] [--device cpu|cuda] [--expect-gpus N]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::gate::{Setup, Sources};
use super::{Ctx, Run};
use crate::error::Result;
use crate::gate::{ci, Device};

/// Run the harness in an environment's container (`harness cuda`, then
/// `harness eval` per model) and compare with fixtures/baselines.
/// Exit 0 pass, 8 regression or missing baseline (a `.snap.new` is
/// written; accept with `cargo insta review`).
#[derive(clap::Args)]
pub struct Check {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Fail unless this many GPUs pass `harness cuda`.
    #[arg(long, default_value_t = 0)]
    expect_gpus: u32,
    #[command(flatten)]
    sources: Sources,
}

impl Run for Check {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let env = spec.env(self.env.as_deref())?;
        let mut setup = Setup::new(ctx, &spec, &self.sources, self.device, self.expect_gpus);
        let result = ctx.block_on(async { Ok(ci::run(&[env], &mut setup).await) })?;
        setup.print(&result);
        setup.finish(&result)
    }
}
