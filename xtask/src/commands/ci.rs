//! `cargo xtask ci [--envs a,b] [--expect-gpus N] [--out DIR]`.

use std::path::PathBuf;

use super::check::GateSources;
use super::{Ctx, Run};
use crate::error::Result;
use crate::gate::{self, Device};

/// Build and check environments, compare them with each other, write
/// DIR/summary.md and DIR/junit.xml. Exit 0 only if every env passes.
#[derive(clap::Args)]
pub struct Ci {
    /// Environments, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    envs: Vec<String>,
    /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Fail unless this many GPUs pass `harness cuda` in each env.
    #[arg(long, default_value_t = 0)]
    expect_gpus: u32,
    /// Where summary.md and junit.xml go.
    #[arg(long, default_value = "ci-out")]
    out: PathBuf,
    #[command(flatten)]
    sources: GateSources,
}

impl Run for Ci {
    fn run(self, ctx: &Ctx) -> Result<()> {
        gate::Ci {
            envs: self.envs,
            device: self.device,
            expect_gpus: self.expect_gpus,
            out: self.out,
            sources: self.sources.into(),
        }
        .run(ctx.spec_path())
    }
}
