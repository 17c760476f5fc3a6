//! Readiness as types: `up` waits until every [`WaitFor`] of the
//! environment holds, failing fast when the container exits.
//!
//! May use: `docker`, `launch`, `launch::ssh`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Result;
use super::{ssh, LaunchError};
use crate::docker::Docker;

/// One condition of "ready".
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// The container is running.
    Running,
    /// Jupyter answers `GET /api/status` with the token → 200.
    JupyterApi {
        host: String,
        port: u16,
        token: String,
    },
    /// sshd serves this container's host key, and — when a passphrase-less
    /// identity is at hand — accepts the key (BatchMode login runs `true`).
    Ssh {
        host: String,
        port: u16,
        /// Other names of `host` that known_hosts accepts too: the host the
        /// printed `ssh` command uses (`Env::display_host`).
        aliases: Vec<String>,
        identity: Option<PathBuf>,
        state_dir: PathBuf,
    },
}

impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFor::Running => f.write_str("container running"),
            WaitFor::JupyterApi { host, port, .. } => {
                write!(f, "Jupyter /api/status on {host}:{port}")
            }
            WaitFor::Ssh { host, port, .. } => write!(f, "SSH on {host}:{port}"),
        }
    }
}

/// Status code of `GET path` on `host:port`, with `Authorization: token …`
/// when `token` is given. A minimal HTTP/1.1 client: one request, then close.
pub async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<u16> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut n = 0;
    let read = async {
        while n < 12 {
            let m = stream.read(&mut head[n..]).await?;
            if m == 0 {
                break;
            }
            n += m;
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no HTTP answer"))??;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not HTTP: {line:?}"),
            )
        })
}

impl WaitFor {
    /// One probe: `Ok(())` when the condition holds, else why not.
    pub async fn probe(&self, docker: &Docker, container: &str) -> Result<(), String> {
        match self {
            WaitFor::Running => Ok(()),
            WaitFor::JupyterApi { host, port, token } => {
                match http_status(host, *port, "/api/status", Some(token)).await {
                    Ok(200) => Ok(()),
                    Ok(code) => Err(format!("Jupyter answered {code}")),
                    Err(e) => Err(format!("Jupyter: {e}")),
                }
            }
            WaitFor::Ssh {
                host,
                port,
                aliases,
                identity,
                state_dir,
            } => {
                // The host key the entrypoint generated, read through the
                // engine as `dev` (it is 0644; nothing here runs as root).
                let keys = docker
                    .exec_output(
                        container,
                        super::CONTAINER_USER,
                        &["/bin/cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if keys.exit_code != 0 || keys.stdout.trim().is_empty() {
                    return Err("no SSH host keys yet".into());
                }
                let mut hosts = vec![host.as_str()];
                hosts.extend(aliases.iter().map(String::as_str).filter(|a| a != host));
                let known = ssh::write_known_hosts(state_dir, &hosts, *port, &keys.stdout)
                    .map_err(|e| e.to_string())?;
                let identity = identity
                    .as_deref()
                    .filter(|i| ssh::usable_without_passphrase(i));
                let mut cmd = tokio::process::Command::new("ssh");
                cmd.args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=3",
                    "-o",
                    "LogLevel=ERROR",
                ]);
                match identity {
                    Some(_) => {
                        cmd.args(ssh::ssh_args(host, *port, identity, &known))
                            .arg("true");
                    }
                    // No usable private key: a host-key-verified handshake
                    // that ends at authentication still proves sshd is up.
                    None => {
                        cmd.args(["-o", "PreferredAuthentications=none"])
                            .args(ssh::ssh_args(host, *port, None, &known))
                            .arg("true");
                    }
                }
                let out = cmd
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| format!("cannot run ssh: {e} (install openssh-client)"))?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success()
                    || (identity.is_none() && stderr.contains("Permission denied"))
                {
                    Ok(())
                } else {
                    Err(format!("ssh: {}", stderr.trim()))
                }
            }
        }
    }
}

/// The [`LaunchError::NotReady`] reason when the container disappeared
/// while waiting (a concurrent `up` replaced it, or a `down`).
pub const REMOVED: &str = "the container was removed while waiting";

/// Waits until every condition holds, or `timeout`; on failure returns
/// [`LaunchError::NotReady`] with the last log lines (the container is left
/// for inspection).
pub async fn wait(
    docker: &Docker,
    env: &str,
    container: &str,
    waits: &[WaitFor],
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let mut pending: Vec<&WaitFor> = waits.iter().collect();
    let mut last = String::from("not probed yet");
    loop {
        let Some(c) = docker.inspect_container(container).await? else {
            return Err(not_ready(docker, env, container, start.elapsed(), REMOVED.into()).await);
        };
        let state = c.state;
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
            return Err(not_ready(
                docker,
                env,
                container,
                start.elapsed(),
                format!("the container exited (code {code})"),
            )
            .await);
        }
        let mut still = Vec::new();
        for w in pending {
            if let Err(why) = w.probe(docker, container).await {
                last = format!("{w}: {why}");
                still.push(w);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(not_ready(docker, env, container, start.elapsed(), last).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn not_ready(
    docker: &Docker,
    env: &str,
    container: &str,
    waited: Duration,
    reason: String,
) -> LaunchError {
    let logs = docker
        .container_logs_tail(container, Some(30))
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"));
    LaunchError::NotReady {
        env: env.to_string(),
        container: container.to_string(),
        waited,
        reason,
        logs,
    }
}
