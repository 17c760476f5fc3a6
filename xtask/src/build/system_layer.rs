//! The system layer: user `dev`, `/workspace`, sshd's configuration, the
//! entrypoint, no setuid files (`images/system.sh`), committed on top of
//! the venv stage image as `torchenv/system:<hash>`.
//!
//! The script runs as root in a network-less container of the venv stage
//! image with `images/` read-only at `/mnt` and a tmpfs `/tmp`; the engine
//! commits what it changed, and only when it exited 0. The script gives
//! every path it changes the lock's `SOURCE_DATE_EPOCH`, and checks below
//! keep anything outside the expected places out of the layer.
//!
//! May use: `docker`, `progress`.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};

use super::BuildError;
use crate::docker::run::{unique_name, RunOutput, LABEL_ONE_SHOT};
use crate::docker::{Docker, DockerError, LABEL_BASE, LABEL_MANAGED_BY, LABEL_STAGE, MANAGED_BY};
use crate::progress::Progress;

/// The script, in `images/`.
pub const SCRIPT: &str = "system.sh";
/// Repository of system stage images.
pub const REPO: &str = "torchenv/system";

/// What the system stage is made from.
pub struct SystemStage<'a> {
    /// `torchenv/system:<hash>`
    pub tag: &'a str,
    /// The venv stage image it is committed on.
    pub venv_tag: &'a str,
    /// The base, for the label.
    pub base_image: &'a str,
    /// `images/`, mounted read-only at `/mnt`.
    pub images_dir: &'a Path,
    pub epoch: u64,
}

/// Runs `images/system.sh` on the venv stage image and commits the result
/// as `stage.tag`.
pub async fn build(
    docker: &Docker,
    stage: &SystemStage<'_>,
    progress: &Progress,
) -> Result<(), BuildError> {
    let venv = docker
        .image_inspect(stage.venv_tag)
        .await?
        .ok_or_else(|| BuildError::failed(format!("{} is missing", stage.venv_tag)))?;
    let venv_config = venv.config.unwrap_or_default();
    let task = progress.spinner(format!("system layer ({SCRIPT})"));
    let images_dir = std::path::absolute(stage.images_dir).map_err(BuildError::io(format!(
        "resolving {}",
        stage.images_dir.display()
    )))?;
    let body = ContainerCreateBody {
        image: Some(stage.venv_tag.to_string()),
        user: Some("0:0".into()),
        // Passed on the command line, not as the container's environment,
        // which the commit would keep in the image.
        cmd: Some(vec![
            "/usr/bin/env".into(),
            format!("SOURCE_DATE_EPOCH={}", stage.epoch),
            "/bin/sh".into(),
            format!("/mnt/{SCRIPT}"),
        ]),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_ONE_SHOT.to_string(), "build system".to_string()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            binds: Some(vec![format!("{}:/mnt:ro", images_dir.display())]),
            tmpfs: Some(HashMap::from([("/tmp".to_string(), String::new())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (repo, tag) = crate::docker::images::split_tag(stage.tag);
    let config = ContainerConfig {
        env: venv_config.env,
        cmd: Some(vec!["/bin/bash".into()]),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_STAGE.to_string(), "system".to_string()),
            (LABEL_BASE.to_string(), stage.base_image.to_string()),
        ])),
        ..Default::default()
    };
    let mut on_line = |l: &str| match l.strip_prefix("==> ") {
        Some(phase) => task.log(phase),
        None => task.line(l),
    };
    let name = unique_name("system");
    let outcome = docker
        .run_once_then(&name, body, &mut on_line, |docker, out| {
            let name = name.clone();
            async move { commit_if_clean(&docker, &name, out, repo, tag, config).await }
        })
        .await
        .map_err(|e| BuildError::failed(format!("the system layer: {e}")))?;
    match outcome {
        Outcome::Committed => {
            task.finish("committed");
            Ok(())
        }
        Outcome::Failed(out) => {
            task.fail(SCRIPT);
            Err(BuildError::stage_script(SCRIPT, &out))
        }
        Outcome::Outside(paths) => {
            task.fail("changed the venv");
            Err(BuildError::StageScript {
                script: SCRIPT,
                code: 0,
                tail: std::iter::once(
                    "it changed paths the system layer must leave alone:".to_string(),
                )
                .chain(paths)
                .collect(),
            })
        }
    }
}

/// How the system script's run ended.
enum Outcome {
    Committed,
    /// Exited non-zero: nothing committed.
    Failed(RunOutput),
    /// Touched `/opt` (a copy of venv files into this layer): nothing committed.
    Outside(Vec<String>),
}

/// Commits the container when the script succeeded and left `/opt` alone.
async fn commit_if_clean(
    docker: &Docker,
    name: &str,
    out: RunOutput,
    repo: &str,
    tag: &str,
    config: ContainerConfig,
) -> Result<Outcome, DockerError> {
    if out.exit_code != 0 {
        return Ok(Outcome::Failed(out));
    }
    let outside: Vec<String> = docker
        .container_changes(name)
        .await?
        .into_iter()
        .filter(|c| c[2..].starts_with("/opt"))
        .collect();
    if !outside.is_empty() {
        return Ok(Outcome::Outside(outside));
    }
    docker.commit_container(name, repo, tag, config).await?;
    Ok(Outcome::Committed)
}
