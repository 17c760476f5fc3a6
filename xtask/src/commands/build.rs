//! `cargo xtask build [ENV|--all] [--harness PATH]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::build::ensure_env_image;
use crate::error::Result;
use crate::lock;
use crate::progress::{self, Progress};

/// Build an environment's image from spec + lock, with no network in
/// the build; does nothing when the image for these inputs exists.
#[derive(clap::Args)]
pub struct Build {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Build every environment.
    #[arg(long, conflicts_with = "env")]
    all: bool,
    /// Harness binary to put at /usr/local/bin/harness (last layer).
    #[arg(long)]
    harness: Option<PathBuf>,
}

impl Run for Build {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let envs = spec.select(self.env.as_deref(), self.all)?;
        // Nothing is built on bad input: every selected env is checked first.
        for env in &envs {
            lock::check_fresh(&spec, &lock, env)?;
        }
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let progress = Progress::new();
            for env in envs {
                let start = std::time::Instant::now();
                let image = ensure_env_image(
                    &docker,
                    &spec,
                    &lock,
                    env,
                    self.harness.as_deref(),
                    &progress,
                )
                .await?;
                let what = if image.built { "built" } else { "up to date" };
                let size = docker
                    .image_inspect(&image.tag)
                    .await?
                    .and_then(|i| i.size)
                    .unwrap_or(0)
                    .max(0) as u64;
                progress.println(format!(
                    "{}: {} {} ({}, {})",
                    env.name,
                    image.tag,
                    what,
                    progress::bytes(size),
                    progress::seconds(start.elapsed())
                ));
            }
            Ok(())
        })
    }
}
