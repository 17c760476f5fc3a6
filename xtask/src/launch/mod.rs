//! The launch lifecycle: `cargo xtask up | down | status | shell | exec | logs`,
//! and the one place an environment becomes a container.
//!
//! One file per capability: [`plan`] turns an environment into the container
//! torchenv creates — `up`'s service or the gate's one-shot run, sharing
//! GPUs, shared memory and ulimits — built step by step; [`gpus`] (the only
//! `gpus:` mapping), [`ports`], [`mounts`], [`network`], [`ssh`] and [`jupyter`] resolve
//! their part of it; [`ready`] says when it is usable; [`oneshot`] runs a
//! one-shot plan; [`up`], [`down`], [`status`] and [`session`] are the
//! commands.
//!
//! Containers of `up` are named `torchenv-<env>-<user>` and carry the
//! managed-by, env, owner (name), owner-uid and spec-hash labels; one-shot
//! containers carry the managed-by, env, owner, owner-uid and one-shot
//! labels; volumes and networks the managed-by, env, owner and owner-uid
//! labels. Nothing without the managed-by label is ever touched, and
//! nothing of another user ([`owner`]: decided on the uid, `<user>` being
//! the uid's passwd name) is acted on.
//!
//! May use: `docker`, `spec`, `build` (the environment's image, for `up`),
//! `lock`, `cache`, `disk`, `progress`, `exit`; never `gate`, `commands` or
//! `error`.

mod error;

pub mod down;
pub mod gpus;
pub mod jupyter;
pub mod mounts;
pub mod network;
pub mod oneshot;
pub mod owner;
pub mod plan;
pub mod ports;
pub mod ready;
pub mod session;
pub mod ssh;
pub mod status;
pub mod up;

use std::path::PathBuf;
use std::time::Duration;

/// Where the workspace is mounted (the spec refuses volumes there).
pub use crate::spec::WORKSPACE_TARGET;
pub use error::{LaunchError, Result};

/// Label: who started the container (the host user name; ownership is
/// decided on [`owner::LABEL_OWNER_UID`]).
pub const LABEL_OWNER: &str = "dev.torchenv.owner";
/// Label: hash of everything the container was created from; a different
/// hash at `up` means the spec changed and the container is recreated.
pub const LABEL_SPEC_HASH: &str = "dev.torchenv.spec-hash";
/// The user inside the image.
pub const CONTAINER_USER: &str = "dev";

/// The host user the container's `dev` user stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name used in container names and the owner label: the uid's passwd
    /// name ([`owner::user_name`]).
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    /// The current user: uid/gid of this process, name from the uid's
    /// passwd entry (else `$USER`, else `uid<N>`: [`owner::user_name`]).
    /// `TORCHENV_UID` / `TORCHENV_GID` override uid and gid; another uid
    /// than the process's own only for root (torchenv run as root on a
    /// user's behalf, as the test suite does), else
    /// [`LaunchError::UidOverride`]; another gid only for root or one of the
    /// process's groups, else [`LaunchError::GidOverride`].
    pub fn current() -> Result<Identity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/proc/self").ok();
        let from_env = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
        let own_uid = meta.as_ref().map(|m| m.uid()).unwrap_or(1000);
        let uid = match from_env("TORCHENV_UID") {
            Some(asked) if asked != own_uid && own_uid != 0 => {
                return Err(LaunchError::UidOverride {
                    asked,
                    uid: own_uid,
                })
            }
            Some(asked) => asked,
            None => own_uid,
        };
        let own_gid = meta.as_ref().map(|m| m.gid()).unwrap_or(1000);
        let gid = match from_env("TORCHENV_GID") {
            Some(asked) if asked != own_gid && own_uid != 0 => {
                let groups = own_groups();
                if !groups.contains(&asked) {
                    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
                    return Err(LaunchError::GidOverride {
                        asked,
                        groups: groups.join(" "),
                    });
                }
                asked
            }
            Some(asked) => asked,
            None => own_gid,
        };
        let env_user = std::env::var("USER").ok();
        let user = owner::user_name(uid, env_user.as_deref(), &owner::passwd);
        Ok(Identity { user, uid, gid })
    }

    /// The uid and gid the container's `dev` gets: these, when ordinary
    /// ([`ORDINARY_IDS`]); else `dev`'s own [`DEV_ID`] (root, a system id
    /// such as group 42 `shadow`, `nobody`). The entrypoint applies the
    /// same rule (images/entrypoint.sh).
    pub fn container_ids(&self) -> (u32, u32) {
        let map = |id: u32| {
            if ORDINARY_IDS.contains(&id) {
                id
            } else {
                DEV_ID
            }
        };
        (map(self.uid), map(self.gid))
    }
}

/// This process's group ids (primary and supplementary, `Groups:` of
/// /proc/self/status).
fn own_groups() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("Groups:") || l.starts_with("Gid:"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|g| g.parse().ok())
        .collect()
}

/// Host ids the entrypoint maps `dev` to.
pub const ORDINARY_IDS: std::ops::RangeInclusive<u32> = 1000..=60000;
/// `dev`'s uid and gid in the image.
pub const DEV_ID: u32 = 1000;

/// Keeps the characters Docker allows in names: `[a-zA-Z0-9_.-]`.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .collect()
}

/// `torchenv-<env>-<user>`: per-user names keep users of one engine apart.
pub fn container_name(env: &str, who: &Identity) -> String {
    format!("torchenv-{env}-{}", who.user)
}

/// torchenv's state (torchenv's own SSH key, one folder per environment):
/// `$XDG_STATE_HOME/torchenv`, else `~/.local/state/torchenv`.
pub fn state_root() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
            PathBuf::from(home).join(".local").join("state")
        }
    };
    base.join("torchenv")
}

/// Per-environment state (Jupyter token, SSH key file, known_hosts):
/// `<state root>/<env>` ([`state_root`]).
pub fn state_dir(env: &str) -> PathBuf {
    state_root().join(env)
}

/// Creates the state root and the environment's state dir, mode 0700.
pub fn ensure_state_dir(env: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir(env);
    std::fs::create_dir_all(&dir).map_err(LaunchError::io(format!("create {}", dir.display())))?;
    for d in [state_root(), dir.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(LaunchError::io(format!("chmod {}", d.display())))?;
    }
    Ok(dir)
}

/// Exclusive use of one environment by `up` on this host: two concurrent
/// `up`s of the same environment run one after the other (the second finds
/// the first's container and reports it), instead of racing on the
/// container name, the Jupyter token and `known_hosts`. Released when
/// dropped, also when the process dies.
pub struct EnvLock {
    _file: std::fs::File,
}

impl EnvLock {
    /// Waits for the lock `<state dir>/up.lock`, saying once that it waits.
    pub async fn acquire(env: &str) -> Result<EnvLock> {
        let path = ensure_state_dir(env)?.join("up.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LaunchError::io(format!("open {}", path.display())))?;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(EnvLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !said {
                        note(format!(
                            "another `up` of `{env}` is running; waiting for it ({})",
                            path.display()
                        ));
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(LaunchError::io(format!("lock {}", path.display()))(e))
                }
            }
        }
    }
}

/// Prints what torchenv is doing, on stderr (stdout carries results).
pub(crate) fn note(msg: impl std::fmt::Display) {
    eprintln!("torchenv: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinary_ids_reach_the_container() {
        let id = |uid, gid| Identity {
            user: "u".into(),
            uid,
            gid,
        };
        assert_eq!(id(1234, 1234).container_ids(), (1234, 1234));
        assert_eq!(id(60000, 1000).container_ids(), (60000, 1000));
        // Root, group 42 (shadow), tty 5, nobody: dev keeps 1000.
        assert_eq!(id(0, 0).container_ids(), (DEV_ID, DEV_ID));
        assert_eq!(id(1234, 42).container_ids(), (1234, DEV_ID));
        assert_eq!(id(999, 5).container_ids(), (DEV_ID, DEV_ID));
        assert_eq!(id(65534, 65534).container_ids(), (DEV_ID, DEV_ID));
    }
}
