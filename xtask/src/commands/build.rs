//! `cargo xtask build [ENV|--all] [--harness PATH]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::build::{ensure_env_image, harness_builder, verify, BuildError};
use crate::error::Result;
use crate::lock::{self, Lock};
use crate::progress::{self, Progress};
use crate::spec::{Env, Spec};

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
    /// Check that the build is reproducible: build the image (if needed),
    /// bootstrap the base again and rebuild every layer in a scratch
    /// namespace, then compare the base rootfs sha256, every layer digest
    /// and the image id. Exit 0 only if all are the same.
    #[arg(long)]
    verify: bool,
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
        if self.verify {
            return self.verify(ctx, &spec, &lock, &envs);
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

impl Build {
    /// `--verify` for each selected environment.
    fn verify(&self, ctx: &Ctx, spec: &Spec, lock: &Lock, envs: &[&Env]) -> Result<()> {
        let mut differing = Vec::new();
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let progress = Progress::new();
            for env in envs {
                let harness = match &self.harness {
                    Some(h) => h.clone(),
                    None => {
                        let locked = lock::check_fresh(spec, lock, env)?;
                        harness_builder::build(&docker, locked, &progress)
                            .await?
                            .binary
                    }
                };
                let v = verify::verify(&docker, spec, lock, env, &harness, &progress).await?;
                println!("{}: {}", env.name, v.tag);
                for line in v.lines() {
                    println!("  {line}");
                }
                if !v.reproducible() {
                    differing.push(env.name.clone());
                }
            }
            Ok(())
        })?;
        if differing.is_empty() {
            println!("reproducible: every layer and the image id are the same");
            Ok(())
        } else {
            Err(BuildError::NotReproducible { envs: differing }.into())
        }
    }
}
