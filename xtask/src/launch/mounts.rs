//! Mounts: the workspace (read-write, created by torchenv — it is its own),
//! `volumes:` (a host path must exist; a named volume is created with
//! torchenv's labels when missing), and the run-state files.
//!
//! May use: `docker`, `launch`, `spec`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{Mount, MountType};

use super::Result;
use super::{Identity, LaunchError, WORKSPACE_TARGET};
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use crate::spec::{Env, VolumeSource};

/// Where the Jupyter token file is mounted (read-only).
pub const TOKEN_TARGET: &str = "/run/torchenv/jupyter_token";
/// Where the SSH public key file is mounted (read-only); the entrypoint
/// copies it to a root-owned file sshd reads.
pub const AUTHORIZED_KEYS_TARGET: &str = "/run/torchenv/authorized_keys";

pub fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

pub fn volume(name: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(name.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The mounts of `env`, in order: workspace, `volumes:`, token file (when
/// Jupyter is on), SSH public key file (when SSH is on). Pure: checks
/// nothing on disk.
pub fn mounts(env: &Env, token_file: Option<&Path>, keys_file: Option<&Path>) -> Vec<Mount> {
    let mut out = vec![bind(&env.workspace, WORKSPACE_TARGET, false)];
    for v in &env.volumes {
        out.push(match &v.source {
            VolumeSource::Bind(path) => bind(path, &v.target, v.read_only),
            VolumeSource::Named(name) => volume(name, &v.target, v.read_only),
        });
    }
    if let Some(t) = token_file {
        out.push(bind(t, TOKEN_TARGET, true));
    }
    if let Some(k) = keys_file {
        out.push(bind(k, AUTHORIZED_KEYS_TARGET, true));
    }
    out
}

/// Every host path of `volumes:` must exist: a missing one is
/// [`LaunchError::VolumeMissing`], never an auto-created empty folder.
pub fn check_sources(env: &Env) -> Result<(), LaunchError> {
    for v in &env.volumes {
        if let VolumeSource::Bind(path) = &v.source {
            if !path.exists() {
                return Err(LaunchError::VolumeMissing {
                    path: path.clone(),
                    target: v.target.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Creates the workspace folder when missing (it is torchenv's own), owned
/// by the user the container maps `dev` to (matters when torchenv runs as
/// root on behalf of `TORCHENV_UID`).
pub fn ensure_workspace(env: &Env, who: &Identity) -> Result<PathBuf> {
    let ws = &env.workspace;
    if !ws.exists() {
        std::fs::create_dir_all(ws).map_err(LaunchError::io(format!(
            "create workspace {}",
            ws.display()
        )))?;
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(ws).map(|m| m.uid()).unwrap_or(who.uid);
        if who.uid != 0 && owner != who.uid {
            if let Err(e) = std::os::unix::fs::chown(ws, Some(who.uid), Some(who.gid)) {
                super::note(format!(
                    "cannot give {} to uid {}: {e}",
                    ws.display(),
                    who.uid
                ));
            }
        }
    }
    Ok(ws.clone())
}

/// Creates the missing named volumes of `env`, labelled as torchenv's.
pub async fn ensure_volumes(docker: &Docker, env: &Env) -> Result<()> {
    for v in &env.volumes {
        if let VolumeSource::Named(name) = &v.source {
            if docker.inspect_volume(name).await?.is_none() {
                let labels = HashMap::from([
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    (LABEL_ENV.to_string(), env.name.clone()),
                ]);
                docker.create_volume(name, labels).await?;
                super::note(format!("created volume {name}"));
            }
        }
    }
    Ok(())
}
