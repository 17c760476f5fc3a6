//! `build::wheels::fetch` against the host's real package index (as its pip
//! is configured; PyPI by default): small locked wheels into a temporary
//! cache, a wrong hash, a file no index lists (left to pip), a find-links
//! folder. `full_environment_fetch` (ignored) times the default
//! environment's whole wheel set.
//!
//! The cache root is `TORCHENV_CACHE`, process-wide: the tests take turns.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use xtask::build::wheels;
use xtask::build::BuildError;
use xtask::cache;
use xtask::lock::{Lock, LockedWheel};
use xtask::progress::Progress;

const ENV: &str = "pytorch-2.6-cuda12.4";

static CACHE: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn locked() -> Vec<LockedWheel> {
    let lock = Lock::read(&repo().join("environments.lock")).unwrap();
    lock.environments[ENV].wheels.clone()
}

fn wheel(name: &str) -> LockedWheel {
    locked()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the lock"))
}

/// Runs `test` with `TORCHENV_CACHE` pointing at a fresh temporary cache
/// (removed afterwards), one test at a time.
fn with_cache(test: impl FnOnce(&Path)) {
    let _turn = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("TORCHENV_CACHE", dir.path());
    test(dir.path());
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn small_locked_wheels_land_in_the_cache_hashes_checked() {
    with_cache(|root| {
        let wanted: Vec<LockedWheel> = ["six", "idna", "packaging"].map(wheel).to_vec();
        let paths = wheels::fetch(&wanted, "3.11", &Progress::plain()).unwrap();
        for (w, path) in wanted.iter().zip(&paths) {
            assert_eq!(path, &cache::wheel_path(&w.sha256, &w.file));
            assert_eq!(cache::sha256_file(path).unwrap(), w.sha256, "{}", w.file);
            assert!(wheels::is_cached(w), "{} has no verified marker", w.file);
        }
        let mut expected: Vec<String> = wanted
            .iter()
            .flat_map(|w| {
                [
                    format!("wheels/{}/{}", w.sha256, w.file),
                    format!("wheels/{}/.verified", w.sha256),
                ]
            })
            .collect();
        expected.sort();
        // Nothing else: no scratch folder, no partial file.
        assert_eq!(files(root), expected);
        // A second fetch touches nothing.
        let again = wheels::fetch(&wanted, "3.11", &Progress::plain()).unwrap();
        assert_eq!(again, paths);
    });
}

#[test]
fn a_wrong_sha256_is_refused_and_leaves_nothing_in_the_cache() {
    with_cache(|root| {
        let mut w = wheel("six");
        let real = w.sha256.clone();
        w.sha256 = "0".repeat(64);
        let err = wheels::fetch(std::slice::from_ref(&w), "3.11", &Progress::plain())
            .expect_err("a wrong hash must fail");
        match &err {
            BuildError::WheelHashMismatch {
                file, locked, got, ..
            } => {
                assert_eq!(file, &w.file);
                assert_eq!(locked, &w.sha256);
                assert_eq!(got, &real);
            }
            other => panic!("expected WheelHashMismatch, got {other:?}"),
        }
        assert!(!wheels::is_cached(&w));
        assert_eq!(files(root), Vec::<String>::new());
    });
}

#[test]
fn a_file_the_index_does_not_list_goes_to_pip_and_fails_naming_it() {
    with_cache(|root| {
        // six 1.17.0 exists, but only as `py2.py3`: pip downloads that one
        // (same hash), which is not the file the lock names.
        let mut w = wheel("six");
        w.file = "six-1.17.0-py3-none-any.whl".into();
        let err = wheels::fetch(std::slice::from_ref(&w), "3.11", &Progress::plain())
            .expect_err("an unlisted file must fail");
        match &err {
            BuildError::WheelFetch { tail } => {
                let text = tail.join("\n");
                assert!(text.contains(&w.file), "{text}");
                assert!(text.contains("not listed by"), "{text}");
            }
            other => panic!("expected WheelFetch, got {other:?}"),
        }
        assert!(!wheels::is_cached(&w));
        assert_eq!(files(root), Vec::<String>::new());
    });
}

#[test]
fn a_find_links_folder_serves_its_files_without_network() {
    with_cache(|root| {
        let links = tempfile::tempdir().unwrap();
        let file = "torchenv_demo-1.0-py3-none-any.whl";
        std::fs::write(links.path().join(file), b"not a real wheel").unwrap();
        let w = LockedWheel {
            name: "torchenv-demo".into(),
            version: "1.0".into(),
            file: file.into(),
            sha256: cache::sha256_bytes(b"not a real wheel"),
        };
        let before = std::env::var_os("PIP_FIND_LINKS");
        std::env::set_var("PIP_FIND_LINKS", links.path());
        let got = wheels::fetch(std::slice::from_ref(&w), "3.11", &Progress::plain());
        match before {
            Some(v) => std::env::set_var("PIP_FIND_LINKS", v),
            None => std::env::remove_var("PIP_FIND_LINKS"),
        }
        assert_eq!(got.unwrap(), [cache::wheel_path(&w.sha256, file)]);
        assert!(wheels::is_cached(&w));
        // The folder keeps its file (copied, not moved).
        assert!(links.path().join(file).exists());
        assert_eq!(
            files(root),
            [
                format!("wheels/{}/.verified", w.sha256),
                format!("wheels/{}/{file}", w.sha256)
            ]
        );
    });
}

/// Times the default environment's full wheel set into an empty cache
/// (about 3 GiB; deleted afterwards):
/// `cargo test -p xtask --test wheels -- --ignored --nocapture`.
#[test]
#[ignore = "downloads about 3 GiB"]
fn full_environment_fetch() {
    with_cache(|root| {
        let all = locked();
        let start = Instant::now();
        let paths = wheels::fetch(&all, "3.11", &Progress::plain()).unwrap();
        let took = start.elapsed().as_secs_f64();
        let bytes: u64 = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        println!(
            "full fetch of {ENV}: {} wheels, {:.2} GiB in {took:.1} s = {:.0} MiB/s",
            paths.len(),
            bytes as f64 / f64::from(1u32 << 30),
            bytes as f64 / f64::from(1u32 << 20) / took
        );
        assert!(all.iter().all(wheels::is_cached));
        drop(std::fs::remove_dir_all(root.join("wheels")));
    });
}
