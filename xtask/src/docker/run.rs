//! One-shot containers: create from a given body, start, wait, collect
//! stdout and stderr, and always remove — on success, on error, on ctrl-c,
//! and when the caller drops the run (a timeout). What the container is
//! (mounts, GPUs, limits) is decided elsewhere (`launch::plan`); this file
//! only runs it.
//!
//! May use: `docker`.

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::{Docker, DockerError};

/// Label marking a container as a one-shot run (value: what it runs).
pub const LABEL_ONE_SHOT: &str = "dev.torchenv.one-shot";

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

/// Removes the container when dropped before [`Removal::done`]: a run
/// future dropped half-way (a timeout around it) leaves no container.
struct Removal {
    docker: Docker,
    name: String,
    armed: bool,
}

impl Removal {
    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, name) = (self.docker.clone(), std::mem::take(&mut self.name));
            rt.spawn(async move {
                let _ = docker.remove_container(&name).await;
            });
        }
    }
}

impl Docker {
    /// Creates the container `name` from `body`, runs it to completion and
    /// removes it whatever happens (also when ctrl-c arrives while it runs,
    /// or when this future is dropped). Create and start failures are the
    /// classified [`DockerError`]s (GPU or ulimit refused, …).
    pub async fn run_once(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<RunOutput, RunError> {
        self.run_once_watching(name, body, &mut |_| {}).await
    }

    /// [`Docker::run_once`], handing each line the container writes on
    /// stderr to `on_stderr_line` as it arrives (progress of a long run);
    /// the output still holds all of it.
    pub async fn run_once_watching(
        &self,
        name: &str,
        body: ContainerCreateBody,
        on_stderr_line: &mut dyn FnMut(&str),
    ) -> Result<RunOutput, RunError> {
        self.create_container(name, body).await?;
        let guard = Removal {
            docker: self.clone(),
            name: name.to_string(),
            armed: true,
        };
        let result = tokio::select! {
            r = self.start_follow_wait(name, on_stderr_line) => r.map_err(RunError::from),
            _ = tokio::signal::ctrl_c() => Err(RunError::Interrupted { name: name.to_string() }),
        };
        let removed = self.remove_container(name).await;
        guard.done();
        let out = result?;
        removed?;
        Ok(out)
    }

    /// Starts `name`, follows its output until it exits, then reads its
    /// exit code.
    async fn start_follow_wait(
        &self,
        name: &str,
        on_stderr_line: &mut dyn FnMut(&str),
    ) -> Result<RunOutput, DockerError> {
        self.start_container(name).await?;
        // Following from the start replays what was written before the
        // stream attached, and ends when the container stops.
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(true)
            .build();
        let mut logs = self.api.logs(name, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut line = Vec::new();
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(self.fail("logs", name))? {
                LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message);
                    for &b in message.iter() {
                        if b == b'\n' {
                            on_stderr_line(&String::from_utf8_lossy(&line));
                            line.clear();
                        } else {
                            line.push(b);
                        }
                    }
                }
                other => stdout.extend_from_slice(&other.into_bytes()),
            }
        }
        if !line.is_empty() {
            on_stderr_line(&String::from_utf8_lossy(&line));
        }
        let mut exit_code = None;
        let mut wait = self.api.wait_container(name, None);
        while let Some(item) = wait.next().await {
            match item {
                Ok(r) => exit_code = Some(r.status_code),
                // bollard reports a non-zero exit as an error.
                Err(BollardError::DockerContainerWaitError { code, .. }) => exit_code = Some(code),
                Err(e) => return Err(self.fail("wait container", name)(e)),
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
    fn unique_names_differ() {
        assert_ne!(unique_name("gate"), unique_name("gate"));
        assert!(unique_name("a b").starts_with("torchenv-a-b-"));
    }
}
