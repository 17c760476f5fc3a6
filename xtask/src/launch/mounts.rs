//! Mounts: the workspace (read-write, created by torchenv — it is its own —
//! mode 0700), `volumes:` (a host path must exist; a named volume is the
//! user's own, [`volume_name`], created with torchenv's and the owner's
//! labels when missing and refused when another user's), and the run-state
//! files.
//!
//! May use: `disk`, `docker`, `launch`, `launch::owner`, `progress`, `spec`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{Mount, MountType};

use super::owner::{self, Kind};
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

/// The Docker volume a spec's named volume `source` is for `who`:
/// `torchenv-<uid>-<source>`. Per uid, so users of one engine never share
/// (or delete) each other's volumes, and no `$USER` makes it another's.
pub fn volume_name(source: &str, who: &Identity) -> String {
    format!("torchenv-{}-{source}", who.uid)
}

/// The mounts of `env` for `who`, in order: workspace, `volumes:` (named
/// ones by [`volume_name`]), token file (when Jupyter is on), SSH public
/// key file (when SSH is on). Pure: checks nothing on disk.
pub fn mounts(
    env: &Env,
    who: &Identity,
    token_file: Option<&Path>,
    keys_file: Option<&Path>,
) -> Vec<Mount> {
    let mut out = vec![bind(&env.workspace, WORKSPACE_TARGET, false)];
    for v in &env.volumes {
        out.push(match &v.source {
            VolumeSource::Bind(path) => bind(path, &v.target, v.read_only),
            VolumeSource::Named(source) => {
                volume(&volume_name(source, who), &v.target, v.read_only)
            }
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

/// Below this much free space in the workspace, `up` says so.
const LOW_SPACE: u64 = 64 << 20;

/// Creates the workspace folder when missing (it is torchenv's own), mode
/// 0700, owned by the user the container maps `dev` to (matters when
/// torchenv runs as root on behalf of `TORCHENV_UID`). An existing one is
/// left as it is (a note says when it is another uid's, or full).
pub fn ensure_workspace(env: &Env, who: &Identity) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let ws = &env.workspace;
    let io = |what: &str| LaunchError::io(format!("{what} workspace {}", ws.display()));
    if let Some(parent) = ws.parent() {
        std::fs::create_dir_all(parent).map_err(io("create the folder of the"))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(ws) {
        Ok(()) => {
            // The umask cannot widen 0700, but one like 0400 would narrow it.
            std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod"))?;
            // It belongs to whom `dev` is in the container: the user, or
            // `dev`'s own ids when the user's are not mapped (root, system
            // ids), so the container can use its 0700 workspace.
            let (uid, gid) = who.container_ids();
            let meta = std::fs::metadata(ws).map_err(io("inspect"))?;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                if let Err(e) = std::os::unix::fs::chown(ws, Some(uid), Some(gid)) {
                    super::note(format!("cannot give {} to uid {uid}: {e}", ws.display()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let owner = std::fs::metadata(ws)
                .map(|m| m.uid())
                .map_err(io("inspect"))?;
            if owner != who.uid {
                super::note(format!(
                    "workspace {} belongs to uid {owner}, not to you (uid {}): the container may not be able to use it",
                    ws.display(),
                    who.uid
                ));
            }
        }
        Err(e) => return Err(io("create")(e)),
    }
    // A full workspace is no reason not to start (nothing torchenv writes
    // goes there), but every write to /workspace will fail: say so.
    if let Some(free) = crate::disk::free_space(ws).filter(|f| *f < LOW_SPACE) {
        super::note(low_space(ws, free));
    }
    Ok(ws.clone())
}

/// The note about a workspace with `free` bytes left.
fn low_space(ws: &Path, free: u64) -> String {
    let state = if free == 0 {
        "is full".to_string()
    } else {
        format!("has only {} free", crate::progress::bytes(free))
    };
    format!(
        "workspace {} {state}: the environment starts, but writes to {WORKSPACE_TARGET} (notebooks, `eval` reports) fail once it is full; free some space there",
        ws.display()
    )
}

/// Creates the missing named volumes of `env` for `who` ([`volume_name`]),
/// labelled as torchenv's and `who`'s; an existing one must be `who`'s
/// ([`owner::check`]: another uid's, or one torchenv did not make, is
/// [`LaunchError::NotYours`]).
pub async fn ensure_volumes(docker: &Docker, env: &Env, who: &Identity) -> Result<()> {
    for v in &env.volumes {
        let VolumeSource::Named(source) = &v.source else {
            continue;
        };
        let name = volume_name(source, who);
        let found = match docker.inspect_volume(&name).await? {
            Some(found) => found,
            None => {
                let mut labels = HashMap::from([
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    (LABEL_ENV.to_string(), env.name.clone()),
                ]);
                labels.extend(owner::labels(who));
                // Creating an existing volume returns it as it is: a
                // concurrent creator's labels are checked below.
                let made = docker.create_volume(&name, labels).await?;
                super::note(format!("created volume {name} (`{source}`)"));
                made
            }
        };
        owner::check(Kind::Volume, &name, &found.labels, who)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::spec::Spec;

    fn who() -> Identity {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self").unwrap();
        Identity {
            user: "alice".into(),
            uid: me.uid(),
            gid: me.gid(),
        }
    }

    fn env_in(dir: &Path, volumes: &str) -> Env {
        let spec = format!(
            "version: 1\ndefault: e\nenvironments:\n  e:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    workspace: ./deep/ws\n{volumes}"
        );
        let path = dir.join("environments.yaml");
        std::fs::write(&path, spec).unwrap();
        Spec::load(&path).unwrap().env(None).unwrap().clone()
    }

    #[test]
    fn a_new_workspace_is_0700_and_an_existing_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), "");
        let ws = ensure_workspace(&env, &who()).unwrap();
        let meta = std::fs::metadata(&ws).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // Owned by whom `dev` is in the container (for root: dev's 1000).
        assert_eq!((meta.uid(), meta.gid()), who().container_ids());
        // Its parent is an ordinary folder, not 0700.
        let parent = std::fs::metadata(ws.parent().unwrap()).unwrap();
        assert_ne!(parent.permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_workspace(&env, &who()).unwrap();
        let again = std::fs::metadata(&ws).unwrap().permissions().mode() & 0o777;
        assert_eq!(again, 0o755);
    }

    #[test]
    fn named_volumes_are_per_uid() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(
            dir.path(),
            "    volumes:\n      - { source: cache, target: /cache }\n",
        );
        let alice = who();
        let bob = Identity {
            uid: alice.uid + 1,
            ..alice.clone()
        };
        let source = |w: &Identity| {
            mounts(&env, w, None, None)
                .into_iter()
                .find(|m| m.target.as_deref() == Some("/cache"))
                .and_then(|m| m.source)
                .unwrap()
        };
        assert_eq!(source(&alice), format!("torchenv-{}-cache", alice.uid));
        assert_eq!(source(&bob), format!("torchenv-{}-cache", bob.uid));
        assert_eq!(volume_name("cache", &alice), source(&alice));
    }

    #[test]
    fn a_full_workspace_is_named_with_what_fails() {
        let ws = Path::new("/home/u/ws");
        let full = low_space(ws, 0);
        assert!(full.starts_with("workspace /home/u/ws is full:"), "{full}");
        assert!(full.contains("/workspace"), "{full}");
        let low = low_space(ws, 5 << 20);
        assert!(low.contains("has only 5.00 MiB free"), "{low}");
    }
}
