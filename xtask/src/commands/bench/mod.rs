//! `cargo xtask bench harness|up`: speed comparisons, each measured in one
//! process, one run (ratios, never absolute thresholds).
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;

mod harness;
mod up;

/// Benchmarks.
#[derive(clap::Args)]
pub struct Bench {
    #[command(subcommand)]
    bench: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    Harness(harness::BenchHarness),
    Up(up::BenchUp),
}

impl Run for Bench {
    fn run(self, ctx: &Ctx) -> Result<()> {
        match self.bench {
            Which::Harness(b) => b.run(ctx),
            Which::Up(b) => b.run(ctx),
        }
    }
}
