//! `cargo xtask shell ENV`, `exec ENV -- CMD…` and `logs ENV [-f]`: talk to
//! a running environment through the engine's exec and log APIs (no
//! `docker` CLI needed). Commands run as the container user in /workspace;
//! `exec` propagates the command's exit code. Only the user's own
//! container is reached: another user's under that name is refused
//! ([`super::owner`]).
//!
//! May use: `docker`, `launch`, `launch::up`, `spec`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Result;
use super::{container_name, Identity, LaunchError, CONTAINER_USER, WORKSPACE_TARGET};
use crate::docker::Docker;
use crate::spec::Spec;

/// The running container of `env` (by name; an env no longer in the spec
/// still works when named).
async fn running_container(docker: &Docker, spec_path: &Path, env: Option<&str>) -> Result<String> {
    let env = match env {
        Some(e) => e.to_string(),
        None => Spec::load(spec_path)?.default,
    };
    let who = Identity::current()?;
    let name = container_name(&env, &who);
    let c = docker.inspect_container(&name).await?;
    let not_running = || LaunchError::NotRunning {
        env: env.clone(),
        container: name.clone(),
    };
    let c = c.ok_or_else(not_running)?;
    super::up::ensure_owned(&name, &c, &who)?;
    if !c.state.and_then(|s| s.running).unwrap_or(false) {
        return Err(not_running());
    }
    Ok(name)
}

fn write_chunk(chunk: LogOutput) {
    match chunk {
        LogOutput::StdErr { message } => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&message);
            let _ = e.flush();
        }
        other => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&other.into_bytes());
            let _ = o.flush();
        }
    }
}

/// `exec ENV -- CMD…`: runs CMD, streams its output, returns its exit code.
pub async fn exec(
    docker: &Docker,
    spec_path: &Path,
    env: Option<&str>,
    cmd: &[String],
) -> Result<i64> {
    let name = running_container(docker, spec_path, env).await?;
    run(docker, &name, cmd.to_vec(), false).await
}

/// `shell ENV`: an interactive login shell (a TTY when stdin is one).
pub async fn shell(docker: &Docker, spec_path: &Path, env: Option<&str>) -> Result<i64> {
    let name = running_container(docker, spec_path, env).await?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    run(docker, &name, vec!["bash".into(), "-l".into()], tty).await
}

/// Puts the terminal in raw mode for the life of the value (via `stty`, so
/// no terminal library is needed), restoring it on drop.
struct RawTerminal {
    saved: Option<String>,
}

impl RawTerminal {
    fn enable() -> RawTerminal {
        let stty = |args: &[&str]| {
            std::process::Command::new("stty")
                .args(args)
                .stdin(std::process::Stdio::inherit())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let saved = stty(&["-g"]);
        if saved.is_some() {
            stty(&["raw", "-echo"]);
        }
        RawTerminal { saved }
    }

    fn size() -> Option<(u16, u16)> {
        let out = std::process::Command::new("stty")
            .arg("size")
            .stdin(std::process::Stdio::inherit())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
        let (rows, cols) = (it.next()??, it.next()??);
        Some((cols, rows))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = std::process::Command::new("stty")
                .arg(saved)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    }
}

async fn run(docker: &Docker, name: &str, cmd: Vec<String>, tty: bool) -> Result<i64> {
    let interactive = tty || cmd.first().is_some_and(|c| c == "bash");
    let id = docker
        .exec_create(
            name,
            CreateExecOptions {
                attach_stdin: Some(interactive),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                user: Some(CONTAINER_USER.to_string()),
                working_dir: Some(WORKSPACE_TARGET.to_string()),
                env: Some(vec![
                    format!("HOME=/home/{CONTAINER_USER}"),
                    format!("USER={CONTAINER_USER}"),
                ]),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker.exec_start(name, &id, tty).await?
    else {
        return Err(LaunchError::failed(format!(
            "exec in {name} did not attach"
        )));
    };
    let _raw = tty.then(RawTerminal::enable);
    if tty {
        if let Some((w, h)) = RawTerminal::size() {
            let _ = docker.exec_resize(name, &id, w, h).await;
        }
    }
    if interactive {
        // Stdin is read on a plain thread (blocking), forwarded to the exec.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if input.write_all(&bytes).await.is_err() {
                    return;
                }
                let _ = input.flush().await;
            }
            let _ = input.shutdown().await;
        });
    }
    while let Some(chunk) = output.next().await {
        write_chunk(chunk.map_err(docker.fail("exec", name))?);
    }
    drop(_raw);
    Ok(docker.exec_exit_code(name, &id).await?)
}

/// `logs ENV [-f]`.
pub async fn logs(
    docker: &Docker,
    spec_path: &Path,
    env: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    let env_name = match env {
        Some(e) => e.to_string(),
        None => Spec::load(spec_path)?.default,
    };
    let who = Identity::current()?;
    let name = container_name(&env_name, &who);
    let c = docker
        .inspect_container(&name)
        .await?
        .ok_or_else(|| LaunchError::NotRunning {
            env: env_name.clone(),
            container: name.clone(),
        })?;
    super::up::ensure_owned(&name, &c, &who)?;
    let tail = tail.map_or("all".to_string(), |n| n.to_string());
    let mut stream = Box::pin(docker.container_logs(&name, follow, &tail));
    while let Some(chunk) = stream.next().await {
        write_chunk(chunk.map_err(docker.fail("logs", &name))?);
    }
    Ok(())
}
