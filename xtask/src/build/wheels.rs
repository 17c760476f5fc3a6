//! Locked wheels: fetched with the host's pip (its own index configuration
//! decides where from; torchenv never names an index) into the
//! content-addressed cache `wheels/<sha256>/<file>`, every file checked
//! against the lock's sha256.
//!
//! May use: `build::pip`, `lock` (data model), `cache`, `compat`, `process`,
//! `progress`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{pip, BuildError};
use crate::lock::LockedWheel;
use crate::process;
use crate::progress::Progress;
use crate::{cache, compat};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Marker written beside a wheel once its hash was checked: `<file> <size>`.
const VERIFIED: &str = ".verified";

/// pip's target-platform flags for CPython `python` (`3.11`): the same
/// flags the lock resolves with, for the newest glibc torchenv knows (the
/// hashes pin the exact files, so a wider platform set cannot change them).
pub fn pip_platform_args(python: &str) -> Vec<String> {
    let glibc = compat::DEBIAN_GLIBC
        .iter()
        .map(|(_, g)| *g)
        .max()
        .unwrap_or((2, 36));
    pip::Target { python, glibc }.args()
}

/// `name==version --hash=sha256:…`, one line per wheel, for `pip download`.
pub fn download_requirements(wheels: &[&LockedWheel]) -> String {
    let mut lines: Vec<String> = wheels
        .iter()
        .map(|w| format!("{}=={} --hash=sha256:{}", w.name, w.version, w.sha256))
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// True when the cached copy of `wheel` is there and was verified before
/// (same size as when its hash was checked).
pub fn is_cached(wheel: &LockedWheel) -> bool {
    let path = cache::wheel_path(&wheel.sha256, &wheel.file);
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    let marker = path.with_file_name(VERIFIED);
    std::fs::read_to_string(marker)
        .is_ok_and(|m| m.trim() == format!("{} {}", wheel.file, meta.len()))
}

/// Checks `path` against the locked hash and, when it matches, moves it
/// into the cache (if it is not there already) and marks it verified.
fn admit(wheel: &LockedWheel, path: &Path) -> Result<PathBuf> {
    let got =
        cache::sha256_file(path).map_err(BuildError::io(format!("hashing {}", path.display())))?;
    if got != wheel.sha256 {
        return Err(BuildError::WheelHashMismatch {
            name: wheel.name.clone(),
            file: wheel.file.clone(),
            locked: wheel.sha256.clone(),
            got,
        });
    }
    let dest = cache::wheel_path(&wheel.sha256, &wheel.file);
    let dir = dest.parent().expect("wheel path has a folder");
    std::fs::create_dir_all(dir).map_err(BuildError::io(format!("creating {}", dir.display())))?;
    if path != dest {
        std::fs::rename(path, &dest)
            .map_err(BuildError::io(format!("writing {}", dest.display())))?;
    }
    let size = std::fs::metadata(&dest)
        .map_err(BuildError::io(format!("reading {}", dest.display())))?
        .len();
    let marker = dir.join(VERIFIED);
    std::fs::write(&marker, format!("{} {size}\n", wheel.file))
        .map_err(BuildError::io(format!("writing {}", marker.display())))?;
    Ok(dest)
}

/// Makes every wheel available in the cache and returns their paths (in
/// the order given). Wheels cached and verified before are not touched;
/// a cached file without the marker is re-hashed; the rest are downloaded
/// in one `pip download` run.
pub fn fetch(wheels: &[LockedWheel], python: &str, progress: &Progress) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    for w in wheels {
        if is_cached(w) {
            continue;
        }
        let path = cache::wheel_path(&w.sha256, &w.file);
        if path.exists() && admit(w, &path).is_ok() {
            continue;
        }
        missing.push(w);
    }
    if !missing.is_empty() {
        download(&missing, python, progress)?;
    }
    Ok(wheels
        .iter()
        .map(|w| cache::wheel_path(&w.sha256, &w.file))
        .collect())
}

fn download(missing: &[&LockedWheel], python: &str, progress: &Progress) -> Result<()> {
    let root = cache::root().join("wheels");
    std::fs::create_dir_all(&root)
        .map_err(BuildError::io(format!("creating {}", root.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&root)
        .map_err(BuildError::io(format!(
            "creating a temporary folder in {}",
            root.display()
        )))?;
    let requirements = scratch.path().join("requirements.txt");
    std::fs::write(&requirements, download_requirements(missing)).map_err(BuildError::io(
        format!("writing {}", requirements.display()),
    ))?;
    let dest = scratch.path().join("wheels");

    let mut cmd = pip::command();
    cmd.args(["download", "--no-deps", "--require-hashes"])
        .args(["--progress-bar", "off", "--no-input"])
        .args(pip_platform_args(python))
        .arg("-r")
        .arg(&requirements)
        .arg("-d")
        .arg(&dest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let task = progress.counter("fetch wheels", missing.len() as u64);
    task.log(&format!(
        "{} wheels: running {}",
        missing.len(),
        process::describe(&cmd)
    ));

    // pip prints `Saved <path>` per wheel: count those, with their bytes.
    let counter = task.bar_handle();
    let dest_watch = dest.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_watch = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !stop_watch.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(dir) = std::fs::read_dir(&dest_watch) {
                let (n, bytes) = dir
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .fold((0u64, 0u64), |(n, b), m| (n + 1, b + m.len()));
                counter.set_position(n);
                counter.set_message(format!("{} saved", crate::progress::bytes(bytes)));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    });
    let result = process::run_streaming(cmd, "pip download", &task);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    if let Err(e) = result {
        task.fail("pip download");
        return Err(BuildError::WheelFetch {
            tail: e.failed_tail()?,
        });
    }
    let mut total = 0;
    for w in missing {
        let path = dest.join(&w.file);
        if !path.exists() {
            task.fail(&w.file);
            return Err(BuildError::WheelFetch {
                tail: vec![format!(
                    "pip did not save {} ({}=={}); is the lock's file name right?",
                    w.file, w.name, w.version
                )],
            });
        }
        total += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = admit(w, &path) {
            task.fail(&w.file);
            return Err(e);
        }
    }
    task.set_length(missing.len() as u64);
    task.finish(&format!(
        "{} wheels, {}",
        missing.len(),
        crate::progress::bytes(total)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_flags_follow_python() {
        let args = pip_platform_args("3.13");
        assert!(args.windows(2).any(|w| w == ["--abi", "cp313"]));
        assert!(args.windows(2).any(|w| w == ["--python-version", "3.13"]));
        assert!(args
            .windows(2)
            .any(|w| w == ["--platform", "manylinux_2_28_x86_64"]));
    }
}
