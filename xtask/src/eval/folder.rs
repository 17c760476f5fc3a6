//! The report folder of one eval, made complete or not at all: everything
//! is written into a staging folder beside the final one
//! (`.<name>.partial-<pid>`), renamed into place only when the report,
//! plots and page are all written, and removed when anything fails (or the
//! run is interrupted and the value dropped).
//!
//! May use: `clock`.

use std::path::{Path, PathBuf};

use crate::clock;

/// Why the report folder could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FolderError {
    #[error("report folder {path} already exists and is not empty")]
    #[diagnostic(
        code(torchenv::eval::out_exists),
        help("choose another --out, or remove the folder")
    )]
    Exists { path: PathBuf },
    #[error("report folder {path}: {source}")]
    #[diagnostic(code(torchenv::eval::out_io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A report folder being written.
#[derive(Debug)]
pub struct Staging {
    staging: PathBuf,
    target: PathBuf,
    /// The marker that reserves `target` (an empty folder holding only it)
    /// against another eval choosing the same folder meanwhile.
    marker: PathBuf,
    /// `target` was made by us (removed again unless committed).
    made_target: bool,
    committed: bool,
}

/// The file that reserves a target folder while its report is staged; it
/// holds the reserving process's id.
const MARKER: &str = ".torchenv-eval-in-progress";

/// `<host>-<pid>` of this process: names its staging folder and fills its
/// reservation marker, so that only this machine sweeps what a dead
/// process of its own left (a shared file system may hold another
/// machine's live eval).
fn owner_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Whether the tag names a process of this machine that no longer runs.
fn dead_here(tag: &str) -> bool {
    let Some((host, pid)) = tag.trim().rsplit_once('-') else {
        return false;
    };
    let (this_host, _) = owner_tag()
        .rsplit_once('-')
        .map_or((String::new(), ()), |(h, _)| (h.to_string(), ()));
    host == this_host
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !Path::new("/proc").join(pid).exists()
}

/// Removes what an eval of this machine killed outright (`kill -9`, a
/// reboot) left in `parent`: its `.<name>.partial-<host>-<pid>` staging
/// folders, and the reservation of `target` when it holds only the dead
/// process's marker.
fn sweep_dead(parent: &Path, target: &Path) {
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dead = name
                .strip_prefix('.')
                .and_then(|n| n.rsplit_once(".partial-"))
                .is_some_and(|(_, tag)| dead_here(tag));
            if dead {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let marker = target.join(MARKER);
    let only_marker = std::fs::read_dir(target).is_ok_and(|d| d.count() == 1);
    let owner = std::fs::read_to_string(&marker).unwrap_or_default();
    if only_marker && dead_here(&owner) {
        let _ = std::fs::remove_file(&marker);
    }
}

impl Staging {
    /// Reserves `target` (created if missing, parents too; an existing
    /// empty folder is fine, a non-empty one is refused so no earlier
    /// report is overwritten) and creates the staging folder beside it.
    pub fn create(target: &Path) -> Result<Staging, FolderError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FolderError::Io { path, source }
        };
        // Absolute: the staging folder is bind-mounted into a container.
        let target = std::path::absolute(target).map_err(io(target))?;
        let exists = FolderError::Exists {
            path: target.clone(),
        };
        let made_target = match std::fs::create_dir_all(target.parent().unwrap_or(&target))
            .and_then(|()| std::fs::create_dir(&target))
        {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(&target)(e)),
        };
        if !made_target && !target.is_dir() {
            return Err(exists);
        }
        sweep_dead(target.parent().unwrap_or(Path::new("/")), &target);
        // The marker is created exclusively: of two evals aiming at one
        // folder, exactly one gets it.
        let marker = target.join(MARKER);
        let reserved = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .and_then(|mut f| std::io::Write::write_all(&mut f, owner_tag().as_bytes()));
        if reserved.is_err() || std::fs::read_dir(&target).map_err(io(&target))?.count() > 1 {
            if reserved.is_ok() {
                let _ = std::fs::remove_file(&marker);
            }
            return Err(exists);
        }
        let name = target
            .file_name()
            .map_or("report".into(), |n| n.to_string_lossy().into_owned());
        let parent = target.parent().unwrap_or(Path::new("/"));
        let staging = parent.join(format!(".{name}.partial-{}", owner_tag()));
        let me = Staging {
            staging,
            target,
            marker,
            made_target,
            committed: false,
        };
        if me.staging.exists() {
            std::fs::remove_dir_all(&me.staging).map_err(io(&me.staging))?;
        }
        std::fs::create_dir(&me.staging).map_err(io(&me.staging))?;
        Ok(me)
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Replaces the reserved (empty) target by the staging folder; returns
    /// the target.
    pub fn commit(mut self) -> Result<PathBuf, FolderError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FolderError::Io { path, source }
        };
        std::fs::remove_file(&self.marker).map_err(io(&self.marker))?;
        std::fs::remove_dir(&self.target).map_err(io(&self.target))?;
        std::fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        let _ = std::fs::remove_file(&self.marker);
        if self.made_target {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

/// `reports/<UTC timestamp>-<model>` under `workspace`.
pub fn default_target(workspace: &Path, model: &str, now: std::time::SystemTime) -> PathBuf {
    workspace
        .join("reports")
        .join(format!("{}-{model}", clock::compact(clock::unix(now))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("reports/run");
        let staging = Staging::create(&target).unwrap();
        std::fs::write(staging.path().join("report.json"), "{}").unwrap();
        // Reserved, but nothing of the report shows there yet.
        assert!(!target.join("report.json").exists());
        let staged = staging.path().to_path_buf();
        assert_eq!(staging.commit().unwrap(), target);
        assert!(target.join("report.json").is_file());
        assert!(!target.join(MARKER).exists());
        assert!(!staged.exists());
    }

    #[test]
    fn a_dropped_folder_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("run");
        let staging = Staging::create(&target).unwrap();
        std::fs::write(staging.path().join("half.json"), "{").unwrap();
        drop(staging);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn two_evals_cannot_reserve_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("run");
        let first = Staging::create(&target).unwrap();
        let e = Staging::create(&target).unwrap_err();
        assert!(matches!(e, FolderError::Exists { .. }), "{e}");
        first.commit().unwrap();
        // Dropped before committing, a reservation leaves nothing.
        let other = dir.path().join("other");
        drop(Staging::create(&other).unwrap());
        assert!(!other.exists());
    }

    #[test]
    fn what_a_killed_eval_left_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid no process has.
        let dead = (4_000_000..4_100_000)
            .find(|p| !Path::new("/proc").join(p.to_string()).exists())
            .unwrap()
            .to_string();
        let host = owner_tag().rsplit_once('-').unwrap().0.to_string();
        let dead = format!("{host}-{dead}");
        let target = dir.path().join("run");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join(MARKER), &dead).unwrap();
        let stale = dir.path().join(format!(".run.partial-{dead}"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("report.json"), "{").unwrap();
        // A live eval's staging folder, another machine's, and anything
        // else are left alone.
        let live = dir.path().join(format!(".other.partial-{}", owner_tag()));
        std::fs::create_dir(&live).unwrap();
        let elsewhere = dir
            .path()
            .join(format!(".x.partial-{host}-other-machine-1"));
        std::fs::create_dir(&elsewhere).unwrap();
        let mine = dir.path().join(".notes.partial-draft");
        std::fs::create_dir(&mine).unwrap();

        let staging = Staging::create(&target).unwrap();
        assert!(!stale.exists());
        assert!(live.exists() && elsewhere.exists() && mine.exists());
        assert_eq!(
            std::fs::read_to_string(target.join(MARKER)).unwrap(),
            owner_tag()
        );
        // A live reservation is not taken over.
        let e = Staging::create(&target).unwrap_err();
        assert!(matches!(e, FolderError::Exists { .. }), "{e}");
        staging.commit().unwrap();
    }

    #[test]
    fn an_earlier_report_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.json"), "{}").unwrap();
        let e = Staging::create(dir.path()).unwrap_err();
        assert!(matches!(e, FolderError::Exists { .. }), "{e}");
        // An empty one is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        Staging::create(&empty).unwrap().commit().unwrap();
    }
}
