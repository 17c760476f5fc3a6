//! Disk space: the free space of a file system (what `doctor`, `up` for
//! the workspace and the test suite report before they fill it) and the
//! size of a tree (what `prune` and the suite say they freed).
//!
//! May use: nothing else of the crate.

use std::path::Path;

/// Bytes an unprivileged user may still write in the file system that
/// holds `path` (`statvfs`: blocks available to non-root, times their
/// size); `None` when it cannot be told (the path does not exist).
pub fn free_space(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes of the files under `path` (their lengths; symbolic links are not
/// followed), or of `path` itself when it is a file; 0 when it is missing.
pub fn usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|r| r.flatten().map(|e| usage(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_an_existing_folder_is_told_and_of_a_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).expect("a folder that exists");
        // What `df` says of the same file system, in 1 KiB blocks.
        let df = std::process::Command::new("df")
            .arg("-Pk")
            .arg(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&df.stdout);
        let kb: u64 = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        // Others write meanwhile: within 1 GiB of each other.
        assert!(free.abs_diff(kb * 1024) < 1 << 30, "{free} vs df {kb} KiB");
        assert_eq!(free_space(&dir.path().join("missing")), None);
    }

    #[test]
    fn usage_sums_the_files_of_a_tree_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), [0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("a/link")).unwrap();
        assert_eq!(usage(dir.path()), 1024 + "/usr".len() as u64);
        assert_eq!(usage(&dir.path().join("a/one")), 1000);
        assert_eq!(usage(&dir.path().join("missing")), 0);
    }
}
