//! `cargo xtask push [ENV|--all] [--registry R]` and `cargo xtask pull
//! [ENV|--all] [--registry R]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::build::ensure_env_image;
use crate::build::image::{pull_env_image, registry_reference};
use crate::build::registry::{self, REGISTRY_VAR};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spec::{Env, Spec};

/// Which environments, and which registry.
#[derive(clap::Args)]
struct Target {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Every environment of the spec.
    #[arg(long, conflicts_with = "env")]
    all: bool,
    /// HOST[:PORT][/PREFIX] (default: TORCHENV_REGISTRY, else the spec's
    /// `registry:`).
    #[arg(long)]
    registry: Option<String>,
}

impl Target {
    fn envs<'s>(&self, spec: &'s Spec) -> Result<Vec<&'s Env>> {
        Ok(if self.all {
            spec.environments.values().collect()
        } else {
            vec![spec.env(self.env.as_deref())?]
        })
    }

    fn registry(&self, spec: &Spec) -> Result<String> {
        let chosen = match &self.registry {
            Some(r) => Some(registry::location(r, "--registry")?),
            None => registry::configured(spec)?,
        };
        chosen.ok_or_else(|| Error::Usage {
            message: format!(
                "no registry: pass --registry HOST[:PORT][/PREFIX], set {REGISTRY_VAR} or `registry:` in {}",
                spec.path.display()
            ),
            help: None,
        })
    }
}

/// Push the environment's image (built first if needed) to a registry,
/// under a name every machine with this checkout computes without building
/// (`HOST/…/torchenv/<env>:<key of spec, lock and harness sources>`), with
/// the credentials of ~/.docker/config.json. `build`, `up` and `check`
/// with a registry configured (TORCHENV_REGISTRY, or `registry:` in the
/// spec) pull it before building.
#[derive(clap::Args)]
pub struct Push {
    #[command(flatten)]
    target: Target,
}

impl Run for Push {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let reg = self.target.registry(&spec)?;
        let progress = Progress::new();
        for env in self.target.envs(&spec)? {
            let remote = ctx.block_on(async {
                let docker = ctx.docker().await?;
                let image = ensure_env_image(&docker, &spec, &lock, env, None, &progress).await?;
                let remote = registry_reference(&spec, &lock, env, &reg)?;
                registry::push(&docker, &image.tag, &remote, &reg, &progress).await?;
                Ok(remote)
            })?;
            println!("{}: pushed {remote}", env.name);
        }
        Ok(())
    }
}

/// Pull the environment's image from a registry and check it: used only if
/// its labels (spec, lock, torch/CUDA/cuDNN, harness sources) and its base
/// layers are what this checkout gives; otherwise it is untagged again and
/// the error names the field. Exit 1 when the registry has none.
#[derive(clap::Args)]
pub struct Pull {
    #[command(flatten)]
    target: Target,
}

impl Run for Pull {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let reg = self.target.registry(&spec)?;
        let progress = Progress::new();
        for env in self.target.envs(&spec)? {
            let pulled = ctx.block_on(async {
                let docker = ctx.docker().await?;
                Ok(pull_env_image(&docker, &spec, &lock, env, &reg, &progress).await?)
            })?;
            match pulled {
                Some(image) => println!("{}: {} ({})", env.name, image.tag, image.id),
                None => {
                    return Err(Error::Failed {
                        message: format!(
                            "{reg} has no image of `{}` for this spec, lock and harness ({})",
                            env.name,
                            registry_reference(&spec, &lock, env, &reg)?
                        ),
                        help: Some(format!("push it from a machine that has it: `cargo xtask push {} --registry {reg}`", env.name)),
                    })
                }
            }
        }
        Ok(())
    }
}
