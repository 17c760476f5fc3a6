//! `cargo xtask bench harness|eval|up|build`: speed comparisons, each measured
//! in one process, one run (ratios, never absolute thresholds). The
//! scratch datasets they make from the fixture photos are in [`data`].
//!
//! May use: every capability module and `error` (this is the command layer).

use std::time::Duration;

use super::{Ctx, Run};
use crate::error::Result;

mod build;
mod data;
mod eval;
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
    Eval(eval::BenchEval),
    Up(up::BenchUp),
    Build(build::BenchBuild),
}

impl Run for Bench {
    fn run(self, ctx: &Ctx) -> Result<()> {
        match self.bench {
            Which::Harness(b) => b.run(ctx),
            Which::Eval(b) => b.run(ctx),
            Which::Up(b) => b.run(ctx),
            Which::Build(b) => b.run(ctx),
        }
    }
}

/// The middle of the values once sorted (the upper middle of an even
/// count). Panics on none.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_median_is_the_middle_run() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        assert_eq!(super::median(ms(&[30, 10, 20])), Duration::from_millis(20));
        assert_eq!(super::median(ms(&[5])), Duration::from_millis(5));
    }
}
