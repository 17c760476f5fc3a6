//! `cargo xtask eval` end to end: the real engine, the environment's image
//! (with the harness built from this checkout), the Lite0 weights and the
//! fixture photos. The report folder is complete (every PNG decodes, is
//! the size it should be and is not blank; the page loads in headless
//! Chromium with every image, a screenshot is kept), the Kaggle and devkit
//! layouts of the same photos give the ImageFolder result, and bad input
//! is a clear error with exit 2 that leaves no folder behind.
//!
//! Needs what `cargo xtask test` sets: `TORCHENV_TEST_IMAGE` (the default
//! environment's image), `TORCHENV_TEST_WEIGHTS` (Lite0 weights),
//! `TORCHENV_LOCK`; and `chromium` on the PATH (`.ci/run` installs it).
//! Without them the tests fail, never pass vacuously.

mod common;
use common::{artifacts, check_page, decode, fixtures, repo, text, var};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODEL: &str = "efficientnet_lite0";

/// `cargo xtask eval` on the test image with the Lite0 weights, CPU.
fn eval(data: &Path, out: &Path, extra: &[&str]) -> Output {
    eval_with(data, out, &var("TORCHENV_TEST_WEIGHTS"), extra, None)
}

/// [`eval`] with other weights, run in `cwd` (relative paths resolve there).
fn eval_with(data: &Path, out: &Path, weights: &str, extra: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.arg("--spec")
        .arg(repo().join("environments.yaml"))
        .args(["eval", "--image", &var("TORCHENV_TEST_IMAGE")])
        .args(["--model", MODEL, "--weights", weights])
        .args(["--device", "cpu", "--batch-size", "8", "--workers", "2"])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdin(std::process::Stdio::null());
    cmd.output().expect("cannot run xtask")
}

fn read_report(dir: &Path) -> report::EvalReport {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    report::parse_eval(&text).unwrap()
}

/// Every PNG under `dir`: decodes, has the expected size class, and is not
/// one flat color.
fn check_pngs(dir: &Path) -> usize {
    let mut n = 0;
    for entry in walk(dir) {
        if entry.extension().is_none_or(|e| e != "png") {
            continue;
        }
        let (w, h, pixels) = decode(&entry);
        let is_thumb = entry.parent().unwrap().ends_with("thumbs");
        if is_thumb {
            assert!(
                (100..=160).contains(&w) && w == h,
                "{}: {w}x{h}",
                entry.display()
            );
        } else {
            assert!(w >= 600 && h >= 300, "{}: {w}x{h}", entry.display());
        }
        let colors: std::collections::HashSet<u32> = pixels.into_iter().collect();
        assert!(
            colors.len() > 8,
            "{} is blank ({} colors)",
            entry.display(),
            colors.len()
        );
        n += 1;
    }
    n
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn eval_writes_a_complete_report_folder() {
    let dir = tempfile::tempdir().unwrap();
    // Every third photo labelled as the next class: the gallery has mistakes.
    let listing: Vec<PathBuf> = walk(&fixtures());
    let mut tsv = String::new();
    for (i, p) in listing.iter().enumerate() {
        let rel = p.strip_prefix(fixtures()).unwrap().display().to_string();
        let synset = rel.split('/').next().unwrap();
        let label = if i % 3 == 0 { "n01440764" } else { synset };
        tsv += &format!("{rel}\t{label}\n");
    }
    std::fs::write(dir.path().join("labels.tsv"), tsv).unwrap();
    // Relative --labels and --out, as a user types them; the weights come
    // from a URL (a local HTTP server) with their sha256.
    let (url, sha256, _server) = serve_weights(dir.path());
    let out = dir.path().join("reports/run");
    let o = eval_with(
        &fixtures(),
        Path::new("reports/run"),
        &url,
        &["--labels", "labels.tsv", "--sha256", &sha256],
        Some(dir.path()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("top-1"), "{stdout}");
    assert!(
        stdout.contains(&out.join("index.html").display().to_string()),
        "{stdout}"
    );

    let r = read_report(&out);
    assert_eq!(r.model, MODEL);
    assert_eq!(r.weights.source, url);
    assert_eq!(r.dataset.layout, "labels-tsv");
    assert_eq!(
        r.dataset.root,
        std::fs::canonicalize(fixtures())
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(r.metrics.topk.len(), 10);
    assert!(
        r.metrics.topk.windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        r.metrics.topk
    );
    assert!(!r.performance.timeline.is_empty());
    assert!(
        r.versions.cuda_build.is_some(),
        "CUDA build shown on CPU: {:?}",
        r.versions
    );
    assert!(!r.gpu.available && r.gpu.reason.is_some(), "{:?}", r.gpu);
    let thumbs: Vec<_> = r
        .samples
        .iter()
        .filter_map(|s| s.thumbnail.clone())
        .collect();
    assert!(thumbs.len() >= listing.len() / 3 - 1, "{thumbs:?}");
    for t in &thumbs {
        assert!(out.join(t).is_file(), "{t}");
    }
    for f in ["summary.md", "index.html"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let pngs = check_pngs(&out);
    assert!(pngs >= thumbs.len() + 7, "{pngs} PNGs");
    // Nothing but the report folder was made.
    let siblings: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");
    let shot = artifacts("eval").join("index.png");
    check_page(&out.join("index.html"), pngs, &shot);
    eprintln!("screenshot: {}", shot.display());
}

/// Serves the test weights over HTTP from a copy in `dir` (python3's
/// http.server); returns the URL and
/// the file's sha256, and the server (stopped when dropped).
fn serve_weights(dir: &Path) -> (String, String, KillOnDrop) {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let weights = site.join("lite0.pth");
    std::fs::copy(var("TORCHENV_TEST_WEIGHTS"), &weights).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let server = KillOnDrop(server);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sha = Command::new("sha256sum").arg(&weights).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (format!("http://127.0.0.1:{port}/lite0.pth"), sha, server)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (file name, label, top-5 classes) of each sample.
fn predictions(r: &report::EvalReport) -> Vec<(String, usize, Vec<usize>)> {
    let mut p: Vec<_> = r
        .samples
        .iter()
        .map(|s| {
            let name = s.path.rsplit('/').next().unwrap().to_string();
            (name, s.label, s.top5.iter().map(|p| p.index).collect())
        })
        .collect();
    p.sort();
    p
}

#[test]
fn kaggle_and_devkit_layouts_give_the_imagefolder_result() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("imagefolder");
    let o = eval(&fixtures(), &base, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = read_report(&base);

    // The same photos, flat, named as the validation set is.
    let flat = dir.path().join("imagenet/val");
    std::fs::create_dir_all(&flat).unwrap();
    let mut csv = String::from("ImageId,PredictionString\n");
    let classes = report::imagenet::classes();
    // Devkit ids in an order that is not the sorted one.
    let order: Vec<&str> = classes.iter().rev().map(|c| c.synset).collect();
    let mut truth = String::new();
    let mut renamed = Vec::new();
    for (i, s) in reference.samples.iter().enumerate() {
        let name = format!("ILSVRC2012_val_{:08}", i + 1);
        // Absolute links to the photos, outside the dataset folder: the
        // eval mounts where they lead.
        let photo = std::fs::canonicalize(fixtures().join(&s.path)).unwrap();
        std::os::unix::fs::symlink(photo, flat.join(format!("{name}.JPEG"))).unwrap();
        csv += &format!("{name},{} 1 2 3 4\n", s.label_synset);
        let id = order.iter().position(|x| *x == s.label_synset).unwrap() + 1;
        truth += &format!("{id}\n");
        renamed.push((
            format!("{name}.JPEG"),
            s.label,
            s.top5.iter().map(|p| p.index).collect::<Vec<_>>(),
        ));
    }
    renamed.sort();
    std::fs::write(dir.path().join("imagenet/LOC_val_solution.csv"), csv).unwrap();
    let kaggle = dir.path().join("kaggle");
    let o = eval(&flat, &kaggle, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let k = read_report(&kaggle);
    assert_eq!(k.dataset.layout, "kaggle-csv");
    assert_eq!(predictions(&k), renamed);
    assert_eq!(k.metrics, reference.metrics);

    let devkit_dir = dir.path().join("devkit");
    std::fs::create_dir_all(&devkit_dir).unwrap();
    let gt = devkit_dir.join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&gt, truth).unwrap();
    let map: String = order
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s} {} x\n", i + 1))
        .collect();
    std::fs::write(devkit_dir.join("map_clsloc.txt"), map).unwrap();
    let devkit = dir.path().join("devkit-report");
    let o = eval(
        &flat,
        &devkit,
        &["--labels", gt.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let d = read_report(&devkit);
    assert_eq!(d.dataset.layout, "devkit");
    assert_eq!(predictions(&d), renamed);
    assert_eq!(d.metrics, reference.metrics);
    // --json: one object per model on stdout, nothing else there.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(j["model"], MODEL);
    assert_eq!(j["top1"], reference.metrics.top1);
    assert_eq!(j["evaluated"], reference.metrics.evaluated);
    assert_eq!(j["index"], devkit.join("index.html").display().to_string());
}

/// Runs a failing eval: exit 2, the message names `names`, and the report
/// folder's parent holds nothing new.
fn refused(data: &Path, out_parent: &Path, extra: &[&str], names: &str) {
    let before = std::fs::read_dir(out_parent).map_or(0, |d| d.count());
    let o = eval(data, &out_parent.join("run"), extra);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(names),
        "message does not name {names}:\n{t}"
    );
    let after = std::fs::read_dir(out_parent).map_or(0, |d| d.count());
    assert_eq!(
        after,
        before,
        "something was left in {}:\n{t}",
        out_parent.display()
    );
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports");
    std::fs::create_dir(&out).unwrap();

    let missing = dir.path().join("no-such-dataset");
    refused(&missing, &out, &[], "no-such-dataset");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&empty, &out, &[], "contains no images");

    let labels = dir.path().join("labels.tsv");
    std::fs::write(
        &labels,
        "n01443537/goldfish.jpg\tn01443537\nn01443537/gone.jpg\tn01443537\n",
    )
    .unwrap();
    refused(
        &fixtures(),
        &out,
        &["--labels", labels.to_str().unwrap()],
        "n01443537/gone.jpg",
    );

    let garbage = dir.path().join("weights.pth");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--spec")
        .arg(repo().join("environments.yaml"))
        .args([
            "eval",
            "--image",
            &var("TORCHENV_TEST_IMAGE"),
            "--model",
            MODEL,
            "--device",
            "cpu",
        ])
        .arg("--weights")
        .arg(&garbage)
        .arg("--data")
        .arg(fixtures())
        .arg("--out")
        .arg(out.join("run"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(garbage.to_str().unwrap()),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A 192 KiB filesystem: room for report.json, not for the plots.
    let tmpfs = common::Tmpfs::mount(&dir.path().join("small"), "192k");
    let small = tmpfs.path.clone();
    let o = eval(&fixtures(), &small.join("run"), &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains(small.to_str().unwrap()), "{t}");
    assert_eq!(std::fs::read_dir(&small).unwrap().count(), 0, "{t}");
}
