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
    committed: bool,
}

impl Staging {
    /// Creates the staging folder for `target` (whose parent is created
    /// if needed). An existing empty `target` is fine (it is replaced); a
    /// non-empty one is refused, so no earlier report is overwritten.
    pub fn create(target: &Path) -> Result<Staging, FolderError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FolderError::Io { path, source }
        };
        // Absolute: the staging folder is bind-mounted into a container.
        let target = &std::path::absolute(target).map_err(io(target))?;
        if let Ok(mut entries) = std::fs::read_dir(target) {
            if entries.next().is_some() {
                return Err(FolderError::Exists {
                    path: target.to_path_buf(),
                });
            }
        } else if target.exists() {
            return Err(FolderError::Exists {
                path: target.to_path_buf(),
            });
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let name = target
            .file_name()
            .map_or("report".into(), |n| n.to_string_lossy().into_owned());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        Ok(Staging {
            staging,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The folder it will become.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the staging folder to the target; returns the target.
    pub fn commit(mut self) -> Result<PathBuf, FolderError> {
        if self.target.is_dir() {
            // Checked empty at create; a folder made since is not ours to
            // replace unless still empty.
            std::fs::remove_dir(&self.target).map_err(|_| FolderError::Exists {
                path: self.target.clone(),
            })?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|source| FolderError::Io {
            path: self.target.clone(),
            source,
        })?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
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
        assert!(!target.exists());
        let staged = staging.path().to_path_buf();
        assert_eq!(staging.commit().unwrap(), target);
        assert!(target.join("report.json").is_file());
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
