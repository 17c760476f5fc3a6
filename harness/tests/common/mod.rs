//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HOW: &str = "run the harness tests through `cargo xtask test`, which provisions the \
                   pinned torch venv and the Lite0 weights and sets this variable";

/// The `harness` binary under test.
pub fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// Runs a command, returning its output (panics only if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Python with torch + torchvision: `TORCHENV_TEST_PYTHON` (required).
pub fn python() -> PathBuf {
    match std::env::var_os("TORCHENV_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("TORCHENV_TEST_PYTHON is not set: {HOW}"),
    }
}

/// The packaged EfficientNet-Lite0 weights: `TORCHENV_LITE0_WEIGHTS` (required).
pub fn lite0_weights() -> PathBuf {
    match std::env::var_os("TORCHENV_LITE0_WEIGHTS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("TORCHENV_LITE0_WEIGHTS is not set: {HOW}"),
    }
}

/// The harness crate's folder, as cargo names it when it runs the tests:
/// the test binaries live in a target dir shared by checkouts, so the path
/// compiled into them may be another checkout's.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixtures() -> PathBuf {
    crate_dir().join("../fixtures")
}

/// `../fixtures/images` (ImageFolder of real photos), required.
pub fn fixture_images_dir() -> PathBuf {
    let d = fixtures().join("images");
    assert!(d.is_dir(), "fixture images missing at {}", d.display());
    d
}

/// All fixture images (sorted, relative to the images dir) with their synset.
pub fn fixture_images() -> Vec<(String, String)> {
    let root = fixture_images_dir();
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        let syn = d.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, syn.clone()));
        }
    }
    out
}

/// Runs a reference script from `harness/python/`.
pub fn run_python(script: &str, args: &[&std::ffi::OsStr]) {
    let path = crate_dir().join("python").join(script);
    let out = run(Command::new(python())
        .arg(&path)
        .args(args)
        .current_dir(fixture_images_dir()));
    assert!(out.status.success(), "{script} failed:\n{}", text(&out));
}

pub fn read_npy(p: &Path) -> (Vec<usize>, Vec<f32>) {
    harness::npy::read_f32(p).unwrap_or_else(|e| panic!("{e}"))
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
