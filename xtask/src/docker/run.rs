//! One-shot containers: create from a given body, start, wait, collect
//! stdout and stderr, and always remove — on success, on error, when the
//! process is asked to stop (ctrl-c, SIGTERM from `kill`, `timeout` or a
//! cancelled CI job, SIGHUP from a closed terminal), and when the caller
//! drops the run (a timeout). After such a stop no further one-shot run
//! starts, so a gate of several runs ends instead of going on. What the
//! container is (mounts, GPUs, limits) is decided elsewhere
//! (`launch::plan`); this file only runs it.
//!
//! May use: `docker`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::Notify;

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

impl RunOutput {
    /// The last `n` lines it wrote (stderr, then stdout).
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines: Vec<&str> = self.stderr.lines().chain(self.stdout.lines()).collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }
}

/// Why a one-shot run did not produce an exit code.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error("interrupted by {signal}; container {name} removed")]
    #[diagnostic(code(torchenv::interrupted))]
    Interrupted { name: String, signal: &'static str },
    /// Asked to stop earlier in this process: `name` was not started.
    #[error("interrupted by {signal}; container {name} not started")]
    #[diagnostic(code(torchenv::interrupted))]
    NotStarted { name: String, signal: &'static str },
}

/// Whether, and by which signal, the process was asked to stop; see
/// [`watch_stop`].
struct Stop {
    by: OnceLock<&'static str>,
    /// Wakes the runs in progress when `by` is set.
    notify: Notify,
    /// One-shot runs in progress (each removes its container, and its
    /// caller ends the process).
    active: AtomicUsize,
}

static STOP: Stop = Stop {
    by: OnceLock::new(),
    notify: Notify::const_new(),
    active: AtomicUsize::new(0),
};

/// From the first one-shot run on, listens for the signals that ask the
/// process to stop — SIGINT (ctrl-c), SIGTERM (`kill`, `timeout`, a
/// cancelled CI job), SIGHUP (its terminal closed) — on a thread of its
/// own (it outlives any one runtime). Once listened for, they no longer end
/// the process by themselves: a run in progress removes its container and
/// fails (its caller returns, no run starts after it); with none in
/// progress, the process exits as the signal would have ended it.
fn watch_stop() {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        let (ready, listening) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("torchenv-stop".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    let _ = ready.send(());
                    return;
                };
                rt.block_on(async move {
                    let (name, code) = stop_signal(ready).await;
                    let _ = STOP.by.set(name);
                    STOP.notify.notify_waiters();
                    if STOP.active.load(Ordering::SeqCst) == 0 {
                        std::process::exit(code);
                    }
                });
            });
        if spawned.is_ok() {
            // Listening before the first container exists.
            let _ = listening.recv();
        }
    });
}

/// The first of SIGINT, SIGTERM, SIGHUP to arrive: its name and the exit
/// status of a process it ends (128 + its number). `ready` is told once
/// they are listened for.
async fn stop_signal(ready: std::sync::mpsc::Sender<()>) -> (&'static str, i32) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = Vec::new();
    for (kind, name, code) in [
        (SignalKind::interrupt(), "SIGINT", 130),
        (SignalKind::terminate(), "SIGTERM", 143),
        (SignalKind::hangup(), "SIGHUP", 129),
    ] {
        if let Ok(s) = signal(kind) {
            streams.push((s, name, code));
        }
    }
    let _ = ready.send(());
    if streams.is_empty() {
        return std::future::pending().await;
    }
    let arrivals = streams.iter_mut().map(|(s, name, code)| {
        Box::pin(async move {
            s.recv().await;
            (*name, *code)
        })
    });
    let (first, _, _) = futures_util::future::select_all(arrivals).await;
    first
}

/// Counts a run as in progress while it lives.
struct Active;

impl Active {
    fn enter() -> Active {
        STOP.active.fetch_add(1, Ordering::SeqCst);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        STOP.active.fetch_sub(1, Ordering::SeqCst);
    }
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
    /// removes it whatever happens (also when the process is asked to stop
    /// while it runs, or when this future is dropped); after such a stop,
    /// [`RunError::NotStarted`] without creating anything. Create and start failures are the
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
        self.run_once_then(name, body, on_stderr_line, |_, out| async move { Ok(out) })
            .await
    }

    /// [`Docker::run_once_watching`], calling `then` with the finished run
    /// while its container still exists (to commit it, say); `then` is
    /// interrupted like the run, and the container is removed after it.
    pub async fn run_once_then<T, F, Fut>(
        &self,
        name: &str,
        body: ContainerCreateBody,
        on_stderr_line: &mut dyn FnMut(&str),
        then: F,
    ) -> Result<T, RunError>
    where
        F: FnOnce(Docker, RunOutput) -> Fut,
        Fut: std::future::Future<Output = Result<T, DockerError>>,
    {
        watch_stop();
        let _active = Active::enter();
        // Interested in a stop from here on, before looking whether one came.
        let stopped = STOP.notify.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if let Some(&signal) = STOP.by.get() {
            return Err(RunError::NotStarted {
                name: name.to_string(),
                signal,
            });
        }
        self.create_container(name, body).await?;
        let guard = Removal {
            docker: self.clone(),
            name: name.to_string(),
            armed: true,
        };
        let result = tokio::select! {
            r = async {
                let out = self.start_follow_wait(name, on_stderr_line).await?;
                then(self.clone(), out).await
            } => r.map_err(RunError::from),
            _ = &mut stopped => Err(RunError::Interrupted {
                name: name.to_string(),
                signal: STOP.by.get().copied().unwrap_or("a signal"),
            }),
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
