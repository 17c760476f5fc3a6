//! [`ReportViewError`] and the one way this module writes a file: the whole
//! content to `NAME.tmp` beside it, then a rename, so the final name never
//! holds half a file.
//!
//! May use: nothing else of the crate.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReportViewError {
    /// Writing or renaming a file of the report folder failed.
    #[error("writing {}: {source}", path.display())]
    #[diagnostic(code(torchenv::report_view::write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plot could not be drawn (plotters or the PNG encoder refused).
    #[error("drawing {}: {message}", path.display())]
    #[diagnostic(code(torchenv::report_view::draw))]
    Draw { path: PathBuf, message: String },
}

impl ReportViewError {
    /// `map_err(ReportViewError::draw(path))` for any displayable error.
    pub fn draw<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Self + '_ {
        move |e| ReportViewError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Writes `bytes` to `path` atomically (`path.tmp`, then rename); on failure
/// the temporary file is removed and the error names `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportViewError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ReportViewError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.md");
        write_atomic(&path, b"hello").unwrap();
        write_atomic(&path, b"again").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "again");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.md"]);
    }

    #[test]
    fn a_failed_write_is_typed_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("a.md");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(&err, ReportViewError::Write { path: p, .. } if p == &path));
        assert!(err.to_string().contains("missing-dir/a.md"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_rename_leaves_no_file_under_either_name() {
        // The final name is a non-empty directory: the rename fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, ReportViewError::Write { .. }));
        assert!(path.is_dir());
        assert!(!dir.path().join("taken.tmp").exists());
    }
}
