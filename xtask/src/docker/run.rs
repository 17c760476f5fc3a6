//! One-shot containers: create (binds, labels, no network), start, wait,
//! collect stdout and stderr, and always remove — on success, on error and
//! on ctrl-c. `cargo xtask check` runs the harness this way.

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;

use super::{Docker, DockerError, LABEL_MANAGED_BY, MANAGED_BY};

/// Label marking a container as a one-shot run (value: what it runs).
pub const LABEL_ONE_SHOT: &str = "dev.torchenv.one-shot";

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: std::path::PathBuf,
    pub container: String,
    pub read_only: bool,
}

impl Bind {
    pub fn ro(host: impl Into<std::path::PathBuf>, container: impl Into<String>) -> Bind {
        Bind {
            host: host.into(),
            container: container.into(),
            read_only: true,
        }
    }

    pub fn rw(host: impl Into<std::path::PathBuf>, container: impl Into<String>) -> Bind {
        Bind {
            host: host.into(),
            container: container.into(),
            read_only: false,
        }
    }

    /// Docker's `HOST:CONTAINER[:ro]` form.
    pub fn spec(&self) -> String {
        format!(
            "{}:{}{}",
            self.host.display(),
            self.container,
            if self.read_only { ":ro" } else { "" }
        )
    }
}

/// What to run once.
#[derive(Debug, Clone, Default)]
pub struct OneShot {
    /// Container name (unique; see [`OneShot::unique_name`]).
    pub name: String,
    pub image: String,
    /// Command; the image's entrypoint is replaced by `cmd[0]`.
    pub cmd: Vec<String>,
    pub binds: Vec<Bind>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Extra labels; the managed-by and one-shot labels are always set.
    pub labels: HashMap<String, String>,
    /// `uid:gid`, so files written to rw binds belong to the caller.
    pub user: Option<String>,
    /// No network at all (the default for checks).
    pub network_none: bool,
    pub device_requests: Vec<DeviceRequest>,
    /// /dev/shm size in bytes.
    pub shm_size: Option<i64>,
    /// What the run is, for the one-shot label and messages.
    pub purpose: String,
}

impl OneShot {
    /// `torchenv-<purpose>-<pid>-<n>`: unique per process and call.
    pub fn unique_name(purpose: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let clean: String = purpose
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!(
            "torchenv-{clean}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The create body.
    pub fn body(&self) -> ContainerCreateBody {
        let mut labels = self.labels.clone();
        labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        labels.insert(LABEL_ONE_SHOT.into(), self.purpose.clone());
        let mut host = HostConfig {
            binds: Some(self.binds.iter().map(Bind::spec).collect()),
            auto_remove: Some(false),
            ..Default::default()
        };
        if self.network_none {
            host.network_mode = Some("none".into());
        }
        if !self.device_requests.is_empty() {
            host.device_requests = Some(self.device_requests.clone());
        }
        if let Some(shm) = self.shm_size {
            host.shm_size = Some(shm);
        }
        ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: self.cmd.first().map(|c| vec![c.clone()]),
            cmd: Some(self.cmd.iter().skip(1).cloned().collect()),
            env: Some(self.env.clone()),
            labels: Some(labels),
            user: self.user.clone(),
            network_disabled: Some(self.network_none),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host),
            ..Default::default()
        }
    }
}

/// What a one-shot run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Why a one-shot run did not produce an exit code.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error("interrupted; container {name} removed")]
    #[diagnostic(code(torchenv::interrupted))]
    Interrupted { name: String },
}

impl Docker {
    /// Runs `job` to completion and removes its container whatever happens
    /// (the removal also runs when ctrl-c arrives while it runs).
    pub async fn run_once(&self, job: &OneShot) -> Result<RunOutput, RunError> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&job.name)
            .build();
        self.api
            .create_container(Some(options), job.body())
            .await
            .map_err(DockerError::api("create container", &job.name))?;
        let result = tokio::select! {
            r = self.start_wait_collect(&job.name) => r.map_err(RunError::from),
            _ = tokio::signal::ctrl_c() => Err(RunError::Interrupted { name: job.name.clone() }),
        };
        let removed = self.remove_container(&job.name).await;
        let out = result?;
        removed?;
        Ok(out)
    }

    async fn start_wait_collect(&self, name: &str) -> Result<RunOutput, DockerError> {
        self.api
            .start_container(name, None)
            .await
            .map_err(DockerError::api("start container", name))?;
        let mut exit_code = None;
        let mut wait = self.api.wait_container(name, None);
        while let Some(item) = wait.next().await {
            match item {
                Ok(r) => exit_code = Some(r.status_code),
                // bollard reports a non-zero exit as an error.
                Err(BollardError::DockerContainerWaitError { code, .. }) => exit_code = Some(code),
                Err(e) => return Err(DockerError::api("wait container", name)(e)),
            }
        }
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut logs = self.api.logs(name, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(DockerError::api("logs", name))? {
                LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                other => stdout.extend_from_slice(&other.into_bytes()),
            }
        }
        Ok(RunOutput {
            exit_code: exit_code.unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_binds_labels_and_no_network() {
        let job = OneShot {
            name: "torchenv-gate-x-1-0".into(),
            image: "torchenv/x:abc".into(),
            cmd: vec!["harness".into(), "cuda".into(), "--json".into()],
            binds: vec![Bind::ro("/data", "/data"), Bind::rw("/tmp/out", "/out")],
            network_none: true,
            purpose: "gate".into(),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        let body = job.body();
        let host = body.host_config.unwrap();
        assert_eq!(
            host.binds.unwrap(),
            vec!["/data:/data:ro".to_string(), "/tmp/out:/out".to_string()]
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        assert_eq!(labels[LABEL_ONE_SHOT], "gate");
        assert_eq!(body.entrypoint.unwrap(), vec!["harness".to_string()]);
        assert_eq!(body.cmd.unwrap(), vec!["cuda".to_string(), "--json".into()]);
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(OneShot::unique_name("gate"), OneShot::unique_name("gate"));
        assert!(OneShot::unique_name("a b").starts_with("torchenv-a-b-"));
    }
}
