//! `cargo xtask check [ENV] [--device cpu|cuda] [--expect-gpus N] [--gpus G]
//! [--no-build] [--result FILE]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::gate::{Setup, Sources};
use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::gate::{ci, Device};
use crate::report_view::files::write_atomic;
use crate::spec::Gpus;

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
    /// GPUs for this check instead of the spec's `gpus:`, in its words
    /// (`all`, `none`, a count, `device=0,1`, CDI names); a Slurm task
    /// passes its allocation's devices.
    #[arg(long)]
    gpus: Option<Gpus>,
    /// Also write what the check found to FILE as JSON, pass or fail
    /// (atomically): how `ci --slurm` collects its tasks.
    #[arg(long)]
    result: Option<PathBuf>,
    #[command(flatten)]
    sources: Sources,
}

impl Run for Check {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let mut env = spec.env(self.env.as_deref())?.clone();
        if let Some(gpus) = self.gpus {
            env.gpus = gpus;
        }
        let mut setup = Setup::new(ctx, &spec, &self.sources, self.device, self.expect_gpus);
        let result = ctx.block_on(async { Ok(ci::run(&[&env], &mut setup).await) })?;
        setup.print(&result);
        if let Some(path) = &self.result {
            let json = serde_json::to_vec_pretty(&result.envs[0]).map_err(|e| {
                Error::failed(format!("the check's result does not serialize: {e}"))
            })?;
            write_atomic(path, &json).map_err(|e| Error::failed(e.to_string()))?;
        }
        setup.finish(&result)
    }
}
