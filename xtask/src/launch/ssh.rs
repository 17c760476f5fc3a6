//! SSH: which public key to install (the spec's, the user's, or — for a
//! user who has none — torchenv's own ed25519 key, made once in the state
//! dir), the private key that goes with it (for the readiness probe and the
//! printed command), the key file the container mounts, the known_hosts
//! file in
//! the state dir (filled with the container's own, freshly generated host
//! keys read through the engine — so the first connection is verified), and
//! the `ssh` command and `~/.ssh/config` block printed by `up`.
//!
//! May use: `launch`, `spec`.

use std::path::{Path, PathBuf};

use super::LaunchError;
use crate::spec::Ssh;

pub const KNOWN_HOSTS: &str = "known_hosts";
/// The public key file of an environment, in its state dir (mounted
/// read-only into the container).
pub const AUTHORIZED_KEYS: &str = "authorized_keys";
/// torchenv's own key, in the state root, for users without one.
pub const OWN_KEY: &str = "id_ed25519";

/// The key `up` installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub public_path: PathBuf,
    /// One line: `ssh-ed25519 AAAA… comment`.
    pub public: String,
    /// The private key next to it (`…/id_ed25519` for `…/id_ed25519.pub`).
    pub identity: Option<PathBuf>,
}

/// The spec's `public_key:`, else the first `~/.ssh/*.pub` (ed25519 first);
/// `Ok(None)` when there is none (SSH is then skipped with a notice).
pub fn find_key(ssh: &Ssh) -> Result<Option<SshKey>, LaunchError> {
    let path = match &ssh.public_key {
        Some(p) => p.clone(),
        None => {
            let Some(home) = std::env::var_os("HOME") else {
                return Ok(None);
            };
            let dir = PathBuf::from(home).join(".ssh");
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
                        .collect()
                })
                .unwrap_or_default();
            found.sort_by_key(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                (!name.contains("ed25519"), name)
            });
            match found.into_iter().next() {
                Some(p) => p,
                None => return Ok(None),
            }
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| LaunchError::SshKey {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let public = text
        .lines()
        .find(|l| l.starts_with("ssh-") || l.starts_with("ecdsa-") || l.starts_with("sk-"));
    let Some(public) = public else {
        return Err(LaunchError::SshKey {
            path,
            reason: "not an OpenSSH public key".into(),
        });
    };
    let identity = path
        .to_str()
        .and_then(|s| s.strip_suffix(".pub"))
        .map(PathBuf::from)
        .filter(|p| p.exists());
    Ok(Some(SshKey {
        public_path: path.clone(),
        public: public.trim().to_string(),
        identity,
    }))
}

/// The key `up` installs: [`find_key`]'s, else torchenv's own key in
/// `state_root` (made on first use: ed25519, no passphrase, 0600), so a
/// user without any key still gets SSH. Says so when it makes one.
pub fn key_for_up(ssh: &Ssh, state_root: &Path) -> Result<SshKey, LaunchError> {
    if let Some(key) = find_key(ssh)? {
        return Ok(key);
    }
    let private = state_root.join(OWN_KEY);
    let public_path = state_root.join(format!("{OWN_KEY}.pub"));
    if !private.exists() || !public_path.exists() {
        make_own_key(&private)?;
        super::note(format!(
            "no SSH public key (`ssh.public_key:` or ~/.ssh/*.pub): made torchenv's own key {} (ed25519, no passphrase, readable only by you); the ssh command below uses it",
            private.display()
        ));
    }
    let own = Ssh {
        public_key: Some(public_path),
        ..ssh.clone()
    };
    find_key(&own)?.ok_or_else(|| LaunchError::SshKey {
        path: private,
        reason: "the key torchenv made is unreadable".into(),
    })
}

/// `ssh-keygen` into `private` (and `private.pub`), replacing a half pair.
fn make_own_key(private: &Path) -> Result<(), LaunchError> {
    let err = |reason: String| LaunchError::SshKey {
        path: private.to_path_buf(),
        reason,
    };
    if let Some(dir) = private.parent() {
        // 0700 from the start: the private key is never in a folder others
        // can list, not even for a moment.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(e.to_string()))?;
    }
    for stale in [private.to_path_buf(), private.with_extension("pub")] {
        if let Err(e) = std::fs::remove_file(&stale) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(err(e.to_string()));
            }
        }
    }
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "torchenv", "-f"])
        .arg(private)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            err(format!(
                "cannot run ssh-keygen (install openssh-client): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(err(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Writes `public` as the environment's key file in `state_dir` (0644,
/// replaced atomically); the container mounts it read-only.
pub fn write_authorized_keys(state_dir: &Path, public: &str) -> std::io::Result<PathBuf> {
    let path = state_dir.join(AUTHORIZED_KEYS);
    let tmp = state_dir.join(format!(".{AUTHORIZED_KEYS}.{}", std::process::id()));
    std::fs::write(&tmp, format!("{public}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// `[host]:port` as known_hosts and ssh write it.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Writes `known_hosts` in the state dir with the container's host keys
/// (the `*.pub` lines read from /etc/ssh inside it), for each of `hosts`.
pub fn write_known_hosts(
    state_dir: &Path,
    hosts: &[&str],
    port: u16,
    host_keys: &str,
) -> std::io::Result<PathBuf> {
    let path = state_dir.join(KNOWN_HOSTS);
    let pattern = hosts
        .iter()
        .map(|h| host_pattern(h, port))
        .collect::<Vec<_>>()
        .join(",");
    let text: String = host_keys
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some(format!("{pattern} {} {}\n", parts.next()?, parts.next()?))
        })
        .collect();
    // Replaced atomically: an `ssh` reading it never sees it half written.
    let tmp = state_dir.join(format!(".{KNOWN_HOSTS}.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The options every torchenv `ssh` invocation uses.
pub fn ssh_args(host: &str, port: u16, identity: Option<&Path>, known_hosts: &Path) -> Vec<String> {
    let mut args = vec![
        "-p".to_string(),
        port.to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
    ];
    if let Some(id) = identity {
        args.extend([
            "-i".into(),
            id.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    args.push(format!("{}@{host}", super::CONTAINER_USER));
    args
}

/// The command line `up` prints.
pub fn command_line(host: &str, port: u16, identity: Option<&Path>, known_hosts: &Path) -> String {
    let mut s = String::from("ssh");
    for a in ssh_args(host, port, identity, known_hosts) {
        s.push(' ');
        s.push_str(&a);
    }
    s
}

/// A block for `~/.ssh/config`.
pub fn config_block(
    alias: &str,
    host: &str,
    port: u16,
    identity: Option<&Path>,
    known_hosts: &Path,
) -> String {
    let mut s = format!(
        "Host {alias}\n    HostName {host}\n    Port {port}\n    User {}\n    UserKnownHostsFile {}\n    StrictHostKeyChecking yes\n",
        super::CONTAINER_USER,
        known_hosts.display()
    );
    if let Some(id) = identity {
        s.push_str(&format!(
            "    IdentityFile {}\n    IdentitiesOnly yes\n",
            id.display()
        ));
    }
    s
}

/// True when `identity` can be used without a passphrase (so a BatchMode
/// probe can log in with it).
pub fn usable_without_passphrase(identity: &Path) -> bool {
    std::process::Command::new("ssh-keygen")
        .args(["-y", "-P", "", "-f"])
        .arg(identity)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
