//! The harness sources as cargo compiles them: a copy of the checkout's
//! `harness/` (with `report/` and `gpumon/` inside it) and `fixtures/` in
//! the cache, refreshed by content, and the flags that keep build paths
//! out of the binary.
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

/// The harness's path dependencies: copied inside the crate's copy, so
/// they sit below its workspace root (cargo hashes a path package outside
/// the workspace root by its absolute path, which ends up in every symbol).
pub const PATH_DEPS: [&str; 2] = ["report", "gpumon"];

/// Version of the copy's layout and of the flags below; part of the
/// harness's build stamp, so a change rebuilds it.
pub const RECIPE: &str = "2: path dependencies inside the crate copy";

/// The cache's name inside the binary.
const CACHE_NAME: &str = "/torchenv-cache";
/// Cargo's home (its registry sources) inside the binary.
const CARGO_HOME_NAME: &str = "/cargo-home";

/// Where the crate's copy for `torch` lives: `harness/<torch>/src`, with
/// [`PATH_DEPS`] inside it and `fixtures/` beside it (the tests read
/// `../fixtures`).
pub fn copy_root(torch: &str) -> PathBuf {
    cache::harness_dir(torch).join("src")
}

/// Makes `crate_copy` hold the checkout `repo`'s `harness/` (without
/// `target/` and `Cargo.lock`, which the build owns), with [`PATH_DEPS`]
/// inside it and the manifest's paths to them rewritten, and `fixtures/`
/// beside it. Files whose bytes differ are replaced (written beside, then
/// renamed), missing ones added, extra ones removed; the others are not
/// touched.
pub fn sync(repo: &Path, crate_copy: &Path) -> Result<()> {
    let mut owned = vec!["target", "Cargo.lock", "Cargo.toml"];
    owned.extend(PATH_DEPS);
    sync_dir(&repo.join("harness"), crate_copy, &owned)?;
    for dep in PATH_DEPS {
        sync_dir(&repo.join(dep), &crate_copy.join(dep), &[])?;
    }
    let beside = crate_copy.parent().unwrap_or(crate_copy).join("fixtures");
    sync_dir(&repo.join("fixtures"), &beside, &[])?;
    let source = repo.join("harness").join("Cargo.toml");
    let text = std::fs::read_to_string(&source)
        .map_err(BuildError::io(format!("reading {}", source.display())))?;
    let manifest = manifest_for_copy(&text).map_err(|dep| {
        BuildError::failed(format!(
            "{} no longer names {dep} as `path = \"../{dep}\"`: update PATH_DEPS in xtask/src/build/harness_src.rs",
            source.display()
        ))
    })?;
    put(&crate_copy.join("Cargo.toml"), manifest.as_bytes(), &source)
}

/// The harness manifest with `path = "../<dep>"` as `path = "<dep>"` for
/// each of [`PATH_DEPS`]; `Err(dep)` when one is not there.
fn manifest_for_copy(text: &str) -> std::result::Result<String, &'static str> {
    let mut out = text.to_string();
    for dep in PATH_DEPS {
        let from = format!("path = \"../{dep}\"");
        if !out.contains(&from) {
            return Err(dep);
        }
        out = out.replace(&from, &format!("path = \"{dep}\""));
    }
    Ok(out)
}

/// Syncs `src` into `dest`; names in `reserved` are neither copied from
/// `src` nor removed from `dest`.
fn sync_dir(src: &Path, dest: &Path, reserved: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dest)
        .map_err(BuildError::io(format!("creating {}", dest.display())))?;
    let is_reserved = |name: &std::ffi::OsStr| reserved.iter().any(|r| name == *r);
    let mut wanted = std::collections::BTreeSet::new();
    let read =
        std::fs::read_dir(src).map_err(BuildError::io(format!("reading {}", src.display())))?;
    for entry in read {
        let entry = entry.map_err(BuildError::io(format!("reading {}", src.display())))?;
        let name = entry.file_name();
        if is_reserved(&name) {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(&name));
        wanted.insert(name);
        if from.is_dir() {
            sync_dir(&from, &to, &[])?;
        } else {
            let bytes = std::fs::read(&from)
                .map_err(BuildError::io(format!("reading {}", from.display())))?;
            put(&to, &bytes, &from)?;
        }
    }
    let read =
        std::fs::read_dir(dest).map_err(BuildError::io(format!("reading {}", dest.display())))?;
    for entry in read {
        let entry = entry.map_err(BuildError::io(format!("reading {}", dest.display())))?;
        let name = entry.file_name();
        if wanted.contains(&name) || is_reserved(&name) {
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

/// Writes `bytes` to `to` with the permissions of `like`, unless `to`
/// already holds exactly that (so its modification time stays).
pub fn put(to: &Path, bytes: &[u8], like: &Path) -> Result<()> {
    let mode = std::fs::metadata(like)
        .map_err(BuildError::io(format!("reading {}", like.display())))?
        .permissions();
    let same_mode = std::fs::metadata(to).is_ok_and(|m| m.permissions() == mode);
    if same_mode && std::fs::read(to).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".sync-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(BuildError::io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, mode)
        .map_err(BuildError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, to).map_err(BuildError::io(format!("writing {}", to.display())))
}

/// Cargo's home: `CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
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

    fn checkout() -> tempfile::TempDir {
        let repo = tempfile::tempdir().unwrap();
        for tree in ["harness", "report", "gpumon", "fixtures"] {
            std::fs::create_dir_all(repo.path().join(tree).join("src")).unwrap();
            std::fs::write(repo.path().join(tree).join("src/a.rs"), tree).unwrap();
        }
        std::fs::write(
            repo.path().join("harness/Cargo.toml"),
            "[dependencies]\nreport = { path = \"../report\" }\ngpumon = { path = \"../gpumon\" }\n",
        )
        .unwrap();
        std::fs::create_dir_all(repo.path().join("harness/target/release")).unwrap();
        std::fs::write(repo.path().join("harness/target/release/x"), "big").unwrap();
        std::fs::write(repo.path().join("harness/Cargo.lock"), "checkout's").unwrap();
        repo
    }

    #[test]
    fn a_sync_lays_out_the_copy_and_rewrites_the_dependency_paths() {
        let repo = checkout();
        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("src");
        sync(repo.path(), &copy).unwrap();
        let read = |p: &str| std::fs::read_to_string(dest.path().join(p)).unwrap();
        assert_eq!(read("src/src/a.rs"), "harness");
        assert_eq!(read("src/report/src/a.rs"), "report");
        assert_eq!(read("src/gpumon/src/a.rs"), "gpumon");
        assert_eq!(read("fixtures/src/a.rs"), "fixtures");
        assert_eq!(
            read("src/Cargo.toml"),
            "[dependencies]\nreport = { path = \"report\" }\ngpumon = { path = \"gpumon\" }\n"
        );
        assert!(!copy.join("target").exists());
        assert!(!copy.join("Cargo.lock").exists());
    }

    #[test]
    fn a_resync_touches_only_what_changed() {
        let repo = checkout();
        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("src");
        sync(repo.path(), &copy).unwrap();
        // Unchanged bytes are not rewritten (cargo sees the old mtime).
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let (a, manifest) = (copy.join("report/src/a.rs"), copy.join("Cargo.toml"));
        for f in [&a, &manifest] {
            let file = std::fs::File::options().write(true).open(f).unwrap();
            file.set_modified(old).unwrap();
        }
        std::fs::write(copy.join("Cargo.lock"), "build's").unwrap();
        std::fs::write(copy.join("gpumon/src/stale.rs"), "").unwrap();
        std::fs::write(repo.path().join("harness/src/a.rs"), "changed").unwrap();
        sync(repo.path(), &copy).unwrap();
        for f in [&a, &manifest] {
            assert_eq!(std::fs::metadata(f).unwrap().modified().unwrap(), old);
        }
        let read = |p: &str| std::fs::read_to_string(copy.join(p)).unwrap();
        assert_eq!(read("src/a.rs"), "changed");
        assert_eq!(read("Cargo.lock"), "build's");
        assert!(!copy.join("gpumon/src/stale.rs").exists());
    }

    #[test]
    fn a_manifest_without_the_expected_paths_is_an_error_naming_the_crate() {
        let repo = checkout();
        std::fs::write(
            repo.path().join("harness/Cargo.toml"),
            "report = { path = \"../report\" }\n",
        )
        .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = sync(repo.path(), &dest.path().join("src"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpumon") && err.contains("PATH_DEPS"), "{err}");
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
