//! `cargo xtask down [ENV | --all] [--volumes]`: removes this user's
//! containers (only torchenv-managed ones); named volumes are kept unless
//! `--volumes`, and then only the torchenv-labelled ones of those
//! environments. The environment's network goes with its container. The
//! workspace is never touched.
//!
//! May use: `docker`, `launch`, `launch::up`, `spec`.

use std::path::Path;

use super::Result;
use super::{container_name, note, Identity, LABEL_OWNER};
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
        let who = Identity::current();
        let envs: Vec<String> = if self.all {
            let mut envs: Vec<String> = docker
                .list_managed_containers(&[(LABEL_OWNER, &who.user)])
                .await?
                .into_iter()
                .filter_map(|c| c.labels?.get(LABEL_ENV).cloned())
                .collect();
            envs.sort();
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
            let name = container_name(&env, &who);
            match docker.inspect_container(&name).await? {
                Some(c) => {
                    super::up::ensure_managed(&name, &c)?;
                    docker.remove_container(&name).await?;
                    println!("removed {name}");
                }
                None => println!("{env}: not running (no container {name})"),
            }
            super::network::remove(docker, &env, &who).await?;
            if self.volumes {
                for v in docker.list_managed_volumes(&[(LABEL_ENV, &env)]).await? {
                    docker.remove_volume(&v.name).await?;
                    println!("removed volume {}", v.name);
                }
            }
        }
        Ok(())
    }
}
