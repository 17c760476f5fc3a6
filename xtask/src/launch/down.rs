//! `cargo xtask down [ENV | --all] [--volumes]`: removes this user's
//! containers (only torchenv-managed ones of this uid, [`super::owner`];
//! another user's is refused); named volumes are kept unless `--volumes`,
//! and then only the torchenv-labelled ones of those environments that
//! carry this uid. The environment's network goes with its container. The
//! workspace is never touched.
//!
//! May use: `docker`, `launch`, `launch::owner`, `launch::up`, `spec`.

use std::path::Path;

use super::owner::{self, LABEL_OWNER_UID};
use super::Result;
use super::{container_name, note, Identity};
use crate::docker::{Docker, LABEL_ENV};
use crate::spec::Spec;

/// Remove an environment's container (volumes and workspace are kept).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Down {
    /// Environment name (default: the spec's `default:`).
    pub env: Option<String>,
    /// Every torchenv container of this user, also of environments no
    /// longer in the spec.
    #[arg(long, conflicts_with = "env")]
    pub all: bool,
    /// Also remove the environment's torchenv-created named volumes.
    #[arg(long)]
    pub volumes: bool,
}

impl Down {
    pub async fn down(&self, docker: &Docker, spec_path: &Path) -> Result<()> {
        let who = Identity::current()?;
        let envs: Vec<String> = if self.all {
            let mut envs: Vec<String> = owner::own_containers(docker, &who)
                .await?
                .into_iter()
                .map(|c| c.env)
                .collect();
            envs.dedup();
            envs
        } else {
            match &self.env {
                // A named env need not be in the spec any more.
                Some(e) => vec![e.clone()],
                None => vec![Spec::load(spec_path)?.default],
            }
        };
        if envs.is_empty() {
            note("no torchenv containers to remove");
        }
        for env in envs {
            self.down_env(docker, &env, &who).await?;
        }
        Ok(())
    }

    /// Removes `who`'s container and network of `env` (and with
    /// `--volumes` the volumes of `env` carrying `who`'s uid), after
    /// checking both are `who`'s: another user's is refused before
    /// anything is removed.
    async fn down_env(&self, docker: &Docker, env: &str, who: &Identity) -> Result<()> {
        let name = container_name(env, who);
        let container = docker.inspect_container(&name).await?;
        if let Some(c) = &container {
            super::up::ensure_owned(&name, c, who)?;
        }
        let network = super::network::owned(docker, env, who).await?;
        match container {
            Some(_) => {
                docker.remove_container(&name).await?;
                println!("removed {name}");
            }
            None => println!("{env}: not running (no container {name})"),
        }
        if let Some(network) = network {
            docker.remove_network(&network).await?;
        }
        if self.volumes {
            let uid = who.uid.to_string();
            let filter = [(LABEL_ENV, env), (LABEL_OWNER_UID, uid.as_str())];
            for v in docker.list_managed_volumes(&filter).await? {
                docker.remove_volume(&v.name).await?;
                println!("removed volume {}", v.name);
            }
        }
        Ok(())
    }
}
