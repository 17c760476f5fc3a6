//! `cargo xtask bundle [ENV] --out FILE` and `cargo xtask load FILE`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::build::ensure_env_image;
use crate::error::Result;
use crate::progress::{self, Progress};
use crate::share::bundle;

/// Write one file with the environment's image (docker save format), its
/// lock entry, its spec (the image's labels) and the locked weights its
/// checks use, for a machine without network or registry: `cargo xtask
/// load FILE` there, then `up` and `check` build and fetch nothing. The
/// image is built first if needed.
#[derive(clap::Args)]
pub struct Bundle {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// The bundle file (written as FILE.partial, renamed when complete).
    #[arg(long)]
    out: PathBuf,
}

impl Run for Bundle {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let progress = Progress::new();
        let written = ctx.block_on(async {
            let docker = ctx.docker().await?;
            let image = ensure_env_image(&docker, &spec, &lock, env, None, &progress).await?;
            Ok(bundle::write(&docker, &lock, env, &image, &self.out, &progress).await?)
        })?;
        println!(
            "wrote {} ({}): {} ({}), weights of {}; load it with `cargo xtask load {}`",
            self.out.display(),
            progress::bytes(written.bytes),
            written.manifest.tag,
            written.manifest.image_id,
            if written.manifest.weights.is_empty() {
                "no model".to_string()
            } else {
                written
                    .manifest
                    .weights
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.out.display()
        );
        Ok(())
    }
}

/// Load a bundle written by `cargo xtask bundle`: checked against this
/// checkout's spec, lock and harness sources (a difference names the
/// field) and the image id it names, before and after the engine loads it;
/// its weights go into the cache. Needs no network.
#[derive(clap::Args)]
pub struct Load {
    /// The bundle file.
    file: PathBuf,
}

impl Run for Load {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let progress = Progress::new();
        let image = ctx.block_on(async {
            let docker = ctx.docker().await?;
            Ok(bundle::load(&docker, &spec, &lock, &self.file, &progress).await?)
        })?;
        println!(
            "loaded {} ({}); `cargo xtask up {}` and `cargo xtask check {}` use it",
            image.tag,
            image.id,
            image
                .labels
                .get(crate::docker::LABEL_ENV)
                .map_or("", String::as_str),
            image
                .labels
                .get(crate::docker::LABEL_ENV)
                .map_or("", String::as_str),
        );
        Ok(())
    }
}
