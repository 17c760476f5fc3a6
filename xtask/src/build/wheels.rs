//! Locked wheels, fetched into the content-addressed cache
//! `wheels/<sha256>/<file>`, every file checked against the lock's sha256.
//! Where from is the host's pip configuration (`build::index`; torchenv
//! never names an index): a find-links folder holding the exact file, else
//! the file's URL on the configured indexes, downloaded over HTTP(S)
//! several at a time (hashed while streaming); a wheel no index lists is
//! left to `pip download`, as before.
//!
//! May use: `build::index`, `build::pip`, `lock` (data model), `cache`,
//! `compat`, `process`, `progress`.

use std::cmp::Reverse;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::index::{self, Index, IndexConfig, IndexFile};
use super::{pip, BuildError};
use crate::lock::LockedWheel;
use crate::process;
use crate::progress::{Progress, Task};
use crate::{cache, compat};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Marker written beside a wheel once its hash was checked: `<file> <size>`.
const VERIFIED: &str = ".verified";

/// Downloads running at once (largest first).
const CONCURRENT_DOWNLOADS: usize = 8;

/// Index pages asked at once.
const CONCURRENT_LOOKUPS: usize = 16;

/// Tries per wheel; connection errors, 5xx and short bodies are retried.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// Write buffer per download (the file is written on the blocking pool).
const WRITE_BUFFER: usize = 1 << 20;

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
    admit_hashed(wheel, path, got)
}

/// [`admit`] for a file whose sha256 is `got` (hashed while it was
/// written). A file outside the cache that does not match is removed; the
/// cache is left as it was.
fn admit_hashed(wheel: &LockedWheel, path: &Path, got: String) -> Result<PathBuf> {
    let dest = cache::wheel_path(&wheel.sha256, &wheel.file);
    if got != wheel.sha256 {
        if path != dest {
            let _ = std::fs::remove_file(path);
        }
        return Err(BuildError::WheelHashMismatch {
            name: wheel.name.clone(),
            file: wheel.file.clone(),
            locked: wheel.sha256.clone(),
            got,
        });
    }
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
/// a cached file without the marker is re-hashed; the rest are fetched
/// (see the module doc). Synchronous: callable from plain threads,
/// `spawn_blocking` threads and async code alike.
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

/// Fetches `missing` through a scratch folder inside the cache's `wheels/`
/// (same file system: admitting a wheel is a rename; removed at the end).
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
    let config = IndexConfig::from_host()?;
    let mut remote = Vec::new();
    for w in missing {
        match config.local(&w.file) {
            Some(found) => copy_local(w, &found, scratch.path())?,
            None => remote.push(*w),
        }
    }
    let sources = config.describe();
    let unlisted = if remote.is_empty() {
        Vec::new()
    } else {
        block_on(fetch_listed(config, &remote, scratch.path(), progress))?
    };
    if !unlisted.is_empty() {
        pip_download(&unlisted, python, progress, scratch.path(), &sources)?;
    }
    Ok(())
}

/// A wheel found in a find-links folder: copied (the folder is not ours)
/// and admitted, no network.
fn copy_local(wheel: &LockedWheel, found: &Path, scratch: &Path) -> Result<()> {
    let copy = scratch.join(&wheel.file);
    std::fs::copy(found, &copy).map_err(BuildError::io(format!(
        "copying {} (pip's find-links)",
        found.display()
    )))?;
    admit(wheel, &copy).map(drop)
}

/// Runs `fut` to completion from synchronous code: on the caller's
/// multi-threaded runtime when there is one (a `spawn_blocking` thread, a
/// worker, `Runtime::block_on`; `block_in_place` lets the worker block),
/// else on a small runtime of its own on a thread of its own (so it never
/// starts inside another runtime's context).
fn block_on<T: Send>(fut: impl Future<Output = Result<T>> + Send) -> Result<T> {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(|| handle.block_on(fut));
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(BuildError::io("starting the wheel download runtime"))?
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|_| Err(BuildError::failed("the wheel download thread panicked")))
    })
}

/// Downloads every wheel of `wheels` the configured indexes list, largest
/// first, [`CONCURRENT_DOWNLOADS`] at a time; returns those none lists.
async fn fetch_listed<'w>(
    config: IndexConfig,
    wheels: &[&'w LockedWheel],
    dir: &Path,
    progress: &Progress,
) -> Result<Vec<&'w LockedWheel>> {
    let index = Index::new(config)?;
    let (mut listed, unlisted) = locate(&index, wheels, progress).await;
    if listed.is_empty() {
        return Ok(unlisted);
    }
    listed.sort_by_key(|(w, f)| (Reverse(f.size.unwrap_or(0)), w.file.clone()));
    let total: Option<u64> = listed.iter().map(|(_, f)| f.size).sum();
    let task = progress.bytes("fetch wheels", total);
    task.log(&format!(
        "{} wheels{}, {} at a time",
        listed.len(),
        total.map_or(String::new(), |t| format!(
            " ({})",
            crate::progress::bytes(t)
        )),
        CONCURRENT_DOWNLOADS
    ));
    // The futures made up front (they start when polled): a stream that
    // maps with a borrowing closure would not be `Send`.
    let downloads: Vec<_> = listed
        .iter()
        .map(|(w, f)| download_one(&index, w, f, dir, &task))
        .collect();
    let downloaded = futures_util::stream::iter(downloads)
        .buffer_unordered(CONCURRENT_DOWNLOADS)
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await;
    match downloaded {
        Ok(bytes) => {
            task.finish(&format!(
                "{} wheels, {}",
                listed.len(),
                crate::progress::bytes(bytes)
            ));
            Ok(unlisted)
        }
        Err(e) => {
            task.fail(&e.to_string());
            Err(e)
        }
    }
}

/// Each wheel's file on the configured indexes: `(listed, unlisted)`. A
/// wheel whose lookup failed (an index pip reaches with credentials of its
/// own, say) counts as unlisted: pip fetches it, as before.
async fn locate<'w>(
    index: &Index,
    wheels: &[&'w LockedWheel],
    progress: &Progress,
) -> (Vec<(&'w LockedWheel, IndexFile)>, Vec<&'w LockedWheel>) {
    let task = progress.counter("look up wheels", wheels.len() as u64);
    task.log(&format!("on {}", index.config().describe()));
    let lookups: Vec<_> = wheels
        .iter()
        .map(|w| async move { (*w, index.find(&w.name, &w.file, Some(&w.sha256)).await) })
        .collect();
    let found: Vec<_> = futures_util::stream::iter(lookups)
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .inspect(|_| task.inc(1))
        .collect()
        .await;
    let (mut listed, mut unlisted) = (Vec::new(), Vec::new());
    for (w, result) in found {
        match result {
            Ok(Some(file)) => listed.push((w, file)),
            Ok(None) => {
                task.log(&format!("{}: not listed; pip download fetches it", w.file));
                unlisted.push(w);
            }
            Err(e) => {
                task.log(&format!("{}: {e}; pip download fetches it", w.file));
                unlisted.push(w);
            }
        }
    }
    task.finish(&format!("{} of {} listed", listed.len(), wheels.len()));
    (listed, unlisted)
}

/// Why one download attempt failed.
enum Failure {
    /// The server or the connection: `reason`, retried when `retry`.
    Remote {
        status: Option<u16>,
        reason: String,
        retry: bool,
    },
    /// Here (the disk): not retried.
    Local(BuildError),
}

impl Failure {
    fn transport(e: reqwest::Error) -> Self {
        Failure::Remote {
            status: None,
            reason: index::error_chain(&e.without_url()),
            retry: true,
        }
    }
}

/// Downloads `file` (the index's entry for `wheel`) into `dir`, retrying,
/// and admits it into the cache; returns its size.
async fn download_one(
    index: &Index,
    wheel: &LockedWheel,
    file: &IndexFile,
    dir: &Path,
    task: &Task,
) -> Result<u64> {
    let dest = dir.join(&wheel.file);
    let mut attempt = 1;
    loop {
        let (status, reason) = match stream_to(index, file, &dest, task).await {
            Ok((size, sha256)) => {
                admit_hashed(wheel, &dest, sha256)?;
                task.line(&wheel.file);
                return Ok(size);
            }
            Err(Failure::Local(e)) => return Err(e),
            Err(Failure::Remote {
                status,
                reason,
                retry,
            }) if !retry || attempt >= DOWNLOAD_ATTEMPTS => (status, reason),
            Err(Failure::Remote { reason, .. }) => {
                task.log(&format!("{}: {reason}; trying again", wheel.file));
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
                continue;
            }
        };
        let _ = std::fs::remove_file(&dest);
        return Err(BuildError::WheelDownload {
            file: wheel.file.clone(),
            url: index::redact(&file.url),
            status,
            reason,
            attempts: attempt,
        });
    }
}

/// One attempt: GETs `file` into `dest`, hashing as it goes, counting the
/// bytes on `task`'s bar (taken back when the attempt fails); the size and
/// sha256 of what arrived.
async fn stream_to(
    index: &Index,
    file: &IndexFile,
    dest: &Path,
    task: &Task,
) -> Result<(u64, String), Failure> {
    let bar = task.bar_handle();
    let mut counted = 0u64;
    let result = async {
        let response = index
            .get(&file.url)
            .send()
            .await
            .map_err(Failure::transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Remote {
                status: Some(status.as_u16()),
                reason: format!("HTTP {status}"),
                retry: status.is_server_error() || status.as_u16() == 429,
            });
        }
        let local = |what: &str| BuildError::io(format!("{what} {}", dest.display()));
        let out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Failure::Local(local("creating")(e)))?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, out);
        let mut hasher = Sha256::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Failure::transport)?;
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| Failure::Local(local("writing")(e)))?;
            counted += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        out.flush()
            .await
            .map_err(|e| Failure::Local(local("writing")(e)))?;
        match file.size {
            Some(size) if size != counted => Err(Failure::Remote {
                status: None,
                reason: format!("the body ended after {counted} of {size} bytes"),
                retry: true,
            }),
            _ => Ok((counted, hex::encode(hasher.finalize()))),
        }
    }
    .await;
    if result.is_err() {
        bar.dec(counted);
    }
    result
}

/// The old way, for the wheels no configured index lists (`sources`, for
/// the message): one `pip download` run into `scratch`.
fn pip_download(
    missing: &[&LockedWheel],
    python: &str,
    progress: &Progress,
    scratch: &Path,
    sources: &str,
) -> Result<()> {
    let requirements = scratch.join("requirements.txt");
    std::fs::write(&requirements, download_requirements(missing)).map_err(BuildError::io(
        format!("writing {}", requirements.display()),
    ))?;
    let dest = scratch.join("pip");

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
    let task = progress.counter("pip download", missing.len() as u64);
    let files: Vec<&str> = missing.iter().map(|w| w.file.as_str()).collect();
    let unlisted = format!("not listed by {sources}: {}", files.join(", "));
    task.log(&format!("{unlisted}; running {}", process::describe(&cmd)));

    let watcher = SavedWatcher::start(&dest, &task);
    let result = process::run_streaming(cmd, "pip download", &task);
    watcher.stop();
    if let Err(e) = result {
        task.fail("pip download");
        let mut tail = vec![format!("{unlisted}; pip download failed too:")];
        tail.extend(e.failed_tail()?);
        return Err(BuildError::WheelFetch { tail });
    }
    let mut total = 0;
    for w in missing {
        let path = dest.join(&w.file);
        if !path.exists() {
            task.fail(&w.file);
            return Err(BuildError::WheelFetch {
                tail: vec![format!(
                    "{} ({}=={}) is not listed by {sources}, and pip download did not save it; is the lock's file name right?",
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

/// Counts the files pip saved so far (and their bytes) on a task's bar,
/// every half second, until stopped.
struct SavedWatcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SavedWatcher {
    fn start(dest: &Path, task: &Task) -> Self {
        let counter = task.bar_handle();
        let dest = dest.to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_watch = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop_watch.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(dir) = std::fs::read_dir(&dest) {
                    let (n, bytes) = dir
                        .flatten()
                        .filter_map(|e| e.metadata().ok())
                        .fold((0u64, 0u64), |(n, b), m| (n + 1, b + m.len()));
                    counter.set_position(n);
                    counter.set_message(format!("{} saved", crate::progress::bytes(bytes)));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        SavedWatcher { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `block_on` from every kind of caller `fetch` has: a plain thread, a
    /// `spawn_blocking` thread, async code on a multi-threaded runtime and
    /// on a current-thread one.
    #[test]
    fn block_on_works_from_any_caller() {
        let work = || {
            block_on(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(7)
            })
            .unwrap()
        };
        assert_eq!(work(), 7);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let from_blocking =
            multi.block_on(async { tokio::task::spawn_blocking(work).await.unwrap() });
        assert_eq!(from_blocking, 7);
        assert_eq!(multi.block_on(async { work() }), 7);
        let on_worker =
            multi.block_on(async { tokio::spawn(async move { work() }).await.unwrap() });
        assert_eq!(on_worker, 7);
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async { work() }), 7);
        let from_blocking =
            current.block_on(async { tokio::task::spawn_blocking(work).await.unwrap() });
        assert_eq!(from_blocking, 7);
    }

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
