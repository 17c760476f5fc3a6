//! `cargo xtask ci [--envs a,b] [--expect-gpus N] [--out DIR]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::gate::{Setup, Sources};
use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::gate::{ci, Device};
use crate::spec::Env;

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
    sources: Sources,
}

impl Ci {
    /// Every environment of the spec on `device`, results under `out`.
    pub fn every_env(device: Device, out: PathBuf) -> Ci {
        Ci {
            envs: Vec::new(),
            device: Some(device),
            expect_gpus: 0,
            out,
            sources: Sources::default(),
        }
    }
}

impl Run for Ci {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let envs: Vec<&Env> = if self.envs.is_empty() {
            spec.environments.values().collect()
        } else {
            self.envs
                .iter()
                .map(|n| spec.env(Some(n)))
                .collect::<std::result::Result<_, _>>()?
        };
        let mut setup = Setup::new(ctx, &spec, &self.sources, self.device, self.expect_gpus)
            .keep_reports(&self.out);
        let result = ctx.block_on(async { Ok(ci::run(&envs, &mut setup).await) })?;
        setup.print(&result);
        for p in &result.pairs {
            println!("{}: {}", p.case.name, p.case.message);
        }
        result
            .write(&self.out)
            .map_err(Error::io(format!("writing {}", self.out.display())))?;
        println!(
            "wrote {} and {}",
            self.out.join("summary.md").display(),
            self.out.join("junit.xml").display()
        );
        setup.finish(&result)
    }
}
