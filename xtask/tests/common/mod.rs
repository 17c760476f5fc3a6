//! Helpers shared by the integration tests: PNG decoding and headless
//! Chromium (report folders), temporary environments (`testenv`), a tiny
//! image (`tiny_image`), hand-made bundles (`bundle`).
#![allow(dead_code)]

pub mod bundle;
pub mod testenv;
pub mod tiny_image;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An environment variable `cargo xtask test` sets (a test without it
/// fails, never passes vacuously).
pub fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: run these tests with `cargo xtask test`"),
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fixture photos (an ImageFolder).
pub fn fixtures() -> PathBuf {
    repo().join("fixtures/images")
}

/// A finished command's status and output, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Decodes a PNG: (width, height, RGB(A) pixels as u32s).
pub fn decode(path: &Path) -> (u32, u32, Vec<u32>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| p.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        .collect();
    (info.width, info.height, pixels)
}

/// Every plot decodes, has the plot size and is more than a flat fill.
/// `chromium` (Debian's package) or another Chromium on PATH.
pub fn chromium() -> PathBuf {
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!(
        "headless Chromium is needed to check index.html and is not installed: \
         `apt-get install -y --no-install-recommends chromium` (Debian)"
    );
}

/// Runs Chromium headless on `url` with `args`, killing it after two
/// minutes (a hang is a failure, not a slow pass); returns stdout.
pub fn run_chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish within 2 minutes on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let start = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[start..].split('"').next()
}

/// Loads `index` (an eval report page) in headless Chromium: the page's
/// script must report `images` images, none broken; a 1280×4000
/// screenshot is kept at `screenshot`.
pub fn check_page(index: &Path, images: usize, screenshot: &Path) {
    let url = format!("file://{}", index.canonicalize().unwrap().display());
    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(profile.path(), &["--dump-dom".into()], &url);
    assert_eq!(
        attribute(&dom, "data-images"),
        Some(images.to_string().as_str()),
        "images on the page (plots + thumbnails); the script did not run if absent"
    );
    assert_eq!(attribute(&dom, "data-broken-images"), Some("0"));
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    run_chromium(
        profile.path(),
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,4000".into(),
        ],
        &url,
    );
    let (w, h, _) = decode(screenshot);
    assert_eq!((w, h), (1280, 4000));
}

/// Where tests keep what a person may want to look at afterwards:
/// `<target>/test-artifacts/<name>`.
pub fn artifacts(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts")
        .join(name)
}

/// The id of the image `tag` on the Docker engine (the docker CLI), if it
/// has one.
pub fn image_id(tag: &str) -> Option<String> {
    let o = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", tag])
        .output()
        .expect("the docker CLI");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A tmpfs of `size` (mount's `size=`) mounted on the new folder `path`,
/// for full-disk tests; unmounted on drop. Needs root (CI runs as root).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "mount tmpfs needs root (CI runs as root)"
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).status();
        if !ok.is_ok_and(|s| s.success()) {
            // Still busy (a process of the test has a file open): detach it.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Standard error as one line: miette wraps long messages anywhere and
/// frames them with `│`.
pub fn said(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
