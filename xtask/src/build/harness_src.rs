//! The harness sources as cargo compiles them: a copy of the checkout's
//! `harness/`, `report/`, `gpumon/` and `fixtures/` in the cache, refreshed
//! by content, and the flags that keep build paths out of the binary.
//!
//! Why a copy: a binary records the paths it was compiled from (panic
//! locations of the path dependencies, `__FILE__` in libtorch's headers,
//! the host venv in its rpath), and cargo rebuilds a path dependency when
//! its path changes. Compiled from one place per torch version, with that
//! place and cargo's registry remapped to fixed names and the host venv
//! found relative to the binary, the harness is the same bytes from any
//! checkout and any cache folder — so the image is too — and a fresh clone
//! with unchanged sources recompiles nothing (files whose bytes did not
//! change keep their modification time).
//!
//! May use: `build` (its error type), `cache`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::BuildError;
use crate::cache;

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// The repository folders the harness build and its tests read: the crate,
/// its path dependencies and the test fixtures.
pub const TREES: [&str; 4] = ["harness", "report", "gpumon", "fixtures"];

/// The cache's name inside the binary.
const CACHE_NAME: &str = "/torchenv-cache";
/// Cargo's home (its registry sources) inside the binary.
const CARGO_HOME_NAME: &str = "/cargo-home";

/// Where the copy for `torch` lives: `harness/<torch>/src`.
pub fn copy_root(torch: &str) -> PathBuf {
    cache::harness_dir(torch).join("src")
}

/// Makes `dest` hold exactly [`TREES`] of `repo` (without `harness/target`
/// and `harness/Cargo.lock`, which the build owns): files whose bytes
/// differ are replaced (written beside, then renamed), missing ones added,
/// extra ones removed; the others are not touched.
pub fn sync(repo: &Path, dest: &Path) -> Result<()> {
    for tree in TREES {
        sync_dir(&repo.join(tree), &dest.join(tree), tree == "harness")?;
    }
    Ok(())
}

fn sync_dir(src: &Path, dest: &Path, crate_root: bool) -> Result<()> {
    std::fs::create_dir_all(dest)
        .map_err(BuildError::io(format!("creating {}", dest.display())))?;
    let mut wanted = std::collections::BTreeSet::new();
    let read =
        std::fs::read_dir(src).map_err(BuildError::io(format!("reading {}", src.display())))?;
    for entry in read {
        let entry = entry.map_err(BuildError::io(format!("reading {}", src.display())))?;
        let name = entry.file_name();
        if crate_root && (name == "target" || name == "Cargo.lock") {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(&name));
        wanted.insert(name);
        if from.is_dir() {
            sync_dir(&from, &to, false)?;
        } else {
            sync_file(&from, &to)?;
        }
    }
    let read =
        std::fs::read_dir(dest).map_err(BuildError::io(format!("reading {}", dest.display())))?;
    for entry in read {
        let entry = entry.map_err(BuildError::io(format!("reading {}", dest.display())))?;
        let name = entry.file_name();
        if wanted.contains(&name) || (crate_root && name == "Cargo.lock") {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(BuildError::io(format!("removing {}", path.display())))?;
    }
    Ok(())
}

fn sync_file(from: &Path, to: &Path) -> Result<()> {
    let bytes =
        std::fs::read(from).map_err(BuildError::io(format!("reading {}", from.display())))?;
    let mode = std::fs::metadata(from)
        .map_err(BuildError::io(format!("reading {}", from.display())))?
        .permissions();
    let same_mode = std::fs::metadata(to).is_ok_and(|m| m.permissions() == mode);
    if same_mode && std::fs::read(to).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".sync-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).map_err(BuildError::io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, mode)
        .map_err(BuildError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, to).map_err(BuildError::io(format!("writing {}", to.display())))
}

/// Cargo's home: `CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// `(from, to)` prefixes remapped in the binary: the cache (the copy, the
/// target dir, the host venv's headers) and cargo's home.
fn prefix_maps() -> Vec<(PathBuf, &'static str)> {
    let mut maps = vec![(cache::root(), CACHE_NAME)];
    maps.extend(cargo_home().map(|h| (h, CARGO_HOME_NAME)));
    maps
}

/// `CARGO_ENCODED_RUSTFLAGS` for the harness build (replacing any
/// `RUSTFLAGS`: the image's binary must not depend on the caller's shell).
pub fn encoded_rustflags() -> OsString {
    let mut flags = OsString::new();
    for (i, (from, to)) in prefix_maps().into_iter().enumerate() {
        if i > 0 {
            flags.push("\u{1f}");
        }
        flags.push("--remap-path-prefix=");
        flags.push(from.as_os_str());
        flags.push("=");
        flags.push(to);
    }
    flags
}

/// `-ffile-prefix-map` flags for C and C++ compiled by build scripts
/// (torch-sys's shim, libjpeg-turbo), appended to `current`. The compiler
/// flags are split at whitespace, so a prefix containing any is left out.
pub fn c_flags(current: Option<OsString>) -> OsString {
    let mut flags = current.unwrap_or_default();
    for (from, to) in prefix_maps() {
        let from = from.to_string_lossy();
        if from.chars().any(char::is_whitespace) {
            continue;
        }
        if !flags.is_empty() {
            flags.push(" ");
        }
        flags.push(format!("-ffile-prefix-map={from}={to}"));
    }
    flags
}

/// The rpath entries that find `torch_lib` (a folder under the cache) from
/// the harness binaries under `harness_dir` (also under the cache): the
/// copy in `bin/`, cargo's `target/release/` and its test binaries in
/// `target/release/deps/`. Relative to the binary (`$ORIGIN`), so no
/// absolute host path is in it.
pub fn host_rpath(harness_dir: &Path, torch_lib: &Path) -> Vec<String> {
    let root = cache::root();
    let (Ok(from), Ok(to)) = (
        harness_dir.strip_prefix(&root),
        torch_lib.strip_prefix(&root),
    ) else {
        return vec![torch_lib.display().to_string()];
    };
    let up = from.components().count();
    [1, 2, 3]
        .iter()
        .map(|depth| format!("$ORIGIN/{}{}", "../".repeat(up + depth), to.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_adds_replaces_and_removes_and_leaves_the_rest_alone() {
        let repo = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        for tree in TREES {
            std::fs::create_dir_all(repo.path().join(tree).join("src")).unwrap();
            std::fs::write(repo.path().join(tree).join("src/a.rs"), tree).unwrap();
        }
        std::fs::create_dir_all(repo.path().join("harness/target/release")).unwrap();
        std::fs::write(repo.path().join("harness/target/release/x"), "big").unwrap();
        std::fs::write(repo.path().join("harness/Cargo.lock"), "checkout's").unwrap();
        sync(repo.path(), dest.path()).unwrap();
        let a = dest.path().join("report/src/a.rs");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "report");
        assert!(!dest.path().join("harness/target").exists());
        assert!(!dest.path().join("harness/Cargo.lock").exists());

        // Unchanged bytes: not rewritten (cargo sees the old mtime).
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(dest.path().join("harness/Cargo.lock"), "build's").unwrap();
        std::fs::write(dest.path().join("gpumon/src/stale.rs"), "").unwrap();
        std::fs::write(repo.path().join("harness/src/a.rs"), "changed").unwrap();
        sync(repo.path(), dest.path()).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().modified().unwrap(), old);
        let h = dest.path().join("harness/src/a.rs");
        assert_eq!(std::fs::read_to_string(h).unwrap(), "changed");
        assert!(!dest.path().join("gpumon/src/stale.rs").exists());
        let lock = dest.path().join("harness/Cargo.lock");
        assert_eq!(std::fs::read_to_string(lock).unwrap(), "build's");
    }

    #[test]
    fn the_host_rpath_is_relative_to_each_binary_folder() {
        let root = cache::root();
        let rpath = host_rpath(
            &root.join("harness/2.6.0"),
            &root.join("pytorch/2.6.0/venv/lib/python3.11/site-packages/torch/lib"),
        );
        let lib = "pytorch/2.6.0/venv/lib/python3.11/site-packages/torch/lib";
        assert_eq!(
            rpath,
            [
                format!("$ORIGIN/../../../{lib}"),
                format!("$ORIGIN/../../../../{lib}"),
                format!("$ORIGIN/../../../../../{lib}"),
            ]
        );
    }
}
