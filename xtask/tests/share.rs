//! Air-gapped bundles against the real engine and the real environment
//! image: `bundle` → `docker image rm` → `load` → `check` passes with no
//! network (both run in a network namespace of their own) and an empty
//! cache; bundles whose labels, archive or image differ from what they
//! claim are refused, with nothing left tagged.
//!
//! `bundle_rm_load_check_without_network` removes the environment's image
//! tag that other tests use, so `cargo xtask test` runs this file alone.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::bundle::fake_bundle;
use common::tiny_image::TinyImage;
use common::{image_id, repo, said, text, Tmpfs};
use xtask::share::bundle::Manifest;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(XTASK);
    cmd.args(args)
        .current_dir(repo())
        .env_remove("TORCHENV_IMAGE")
        .env_remove("TORCHENV_HOST_HARNESS");
    cmd
}

/// `cmd` in a network namespace of its own: no network at all (the
/// engine's unix socket still answers).
fn offline(cmd: &Command) -> Command {
    let mut c = Command::new("unshare");
    c.arg("-n").arg(cmd.get_program()).args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

fn default_env() -> (xtask::spec::Spec, xtask::lock::Lock, xtask::spec::Env) {
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&repo().join(xtask::lock::LOCK_FILE)).unwrap();
    let env = spec.env(None).unwrap().clone();
    (spec, lock, env)
}

/// Loads the bundle with the plain docker CLI when the tag is missing at
/// the end, so a failed test leaves the engine as it found it.
struct Restore<'a> {
    tag: String,
    bundle: &'a Path,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if image_id(&self.tag).is_none() && self.bundle.exists() {
            let _ = Command::new("docker")
                .arg("load")
                .arg("-i")
                .arg(self.bundle)
                .output();
        }
    }
}

#[test]
fn bundle_rm_load_check_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.bundle");
    let made = xtask(&["bundle", "--out"]).arg(&file).output().unwrap();
    assert!(made.status.success(), "bundle: {}", text(&made));
    assert!(!dir.path().join("env.bundle.partial").exists());
    let manifest = xtask::share::bundle::read_manifest(&file).unwrap();
    let id = image_id(&manifest.tag).expect("the bundled image is on the engine");
    assert_eq!(id, manifest.image_id);
    let _restore = Restore {
        tag: manifest.tag.clone(),
        bundle: &file,
    };

    let rm = Command::new("docker")
        .args(["image", "rm", &manifest.tag])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    assert_eq!(image_id(&manifest.tag), None);

    // A machine with no cache and no network.
    let cache = tempfile::tempdir().unwrap();
    let mut load = xtask(&["load"]);
    load.arg(&file).env("TORCHENV_CACHE", cache.path());
    let loaded = offline(&load).output().unwrap();
    assert!(loaded.status.success(), "load: {}", text(&loaded));
    assert_eq!(image_id(&manifest.tag).as_deref(), Some(id.as_str()));

    let mut check = xtask(&["check", "--device", "cpu"]);
    check.env("TORCHENV_CACHE", cache.path());
    let checked = offline(&check).output().unwrap();
    assert!(checked.status.success(), "check: {}", text(&checked));
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(out.contains("eval efficientnet_lite0: pass"), "{out}");
    // Nothing was built or fetched: the cache holds the bundle's weights.
    let mut left: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "engines")
        .collect();
    left.sort();
    assert_eq!(left, ["models"], "{}", text(&checked));
}

fn load(file: &Path) -> Output {
    xtask(&["load"]).arg(file).output().unwrap()
}

#[test]
fn bundles_that_are_not_what_they_claim_are_refused_and_leave_no_tag() {
    let (spec, lock, env) = default_env();
    let labels = xtask::build::image::shared_labels(&spec, &lock, &env).unwrap();
    let unique = std::process::id();
    let tag = format!("torchenv/{}:tampered{unique}", env.name);
    // Other content under the environment's name, with all its labels:
    // only its layers differ.
    let changes: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("LABEL {k}={}", serde_json::to_string(v).unwrap()))
        .collect();
    let tiny = TinyImage::new(tag.clone(), &[], &changes);
    let tiny_id = image_id(&tiny.tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let honest = Manifest {
        format: 1,
        env: env.name.clone(),
        tag: tag.clone(),
        image_id: tiny_id.clone(),
        labels: labels.clone(),
        lock: serde_json::Value::Null,
        weights: Default::default(),
    };

    // 1. Made from another lock: refused before the engine sees it.
    let mut other = honest.clone();
    other
        .labels
        .insert("dev.torchenv.torch".into(), "2.7.0".into());
    let f1 = dir.path().join("other.bundle");
    fake_bundle(&f1, &other, &tiny.tag);
    // 2. The archive tags something else than the bundle says.
    let mut renamed = honest.clone();
    renamed.tag = format!("torchenv/{}:claimed{unique}", env.name);
    let f2 = dir.path().join("renamed.bundle");
    fake_bundle(&f2, &renamed, &tiny.tag);
    // 3. Labels and tag as claimed, but other content: loaded, refused,
    //    untagged again.
    let f3 = dir.path().join("content.bundle");
    fake_bundle(&f3, &honest, &tiny.tag);
    drop(tiny);
    assert_eq!(image_id(&tag), None);

    let o = load(&f1);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = said(&o);
    assert!(err.contains("label dev.torchenv.torch is `2.7.0`"), "{err}");
    assert_eq!(image_id(&tag), None);

    let o = load(&f2);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(said(&o).contains("the archive tags"), "{}", said(&o));
    assert_eq!(image_id(&tag), None);
    assert_eq!(image_id(&renamed.tag), None);

    let o = load(&f3);
    assert!(!o.status.success(), "{}", text(&o));
    let err = said(&o);
    assert!(err.contains("RootFS.Layers"), "{err}");
    assert_eq!(image_id(&tag), None, "the refused image is untagged");

    // Not a bundle at all.
    let f4 = dir.path().join("junk.bundle");
    std::fs::write(&f4, b"not a tar").unwrap();
    let o = load(&f4);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        said(&o).contains("is not a torchenv bundle"),
        "{}",
        said(&o)
    );
}

#[test]
fn a_full_disk_while_writing_a_bundle_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB: room for the manifest and weights, not for the image.
    let tmpfs = Tmpfs::mount(&dir.path().join("small"), "64m");
    let small = tmpfs.path.clone();
    let out = small.join("env.bundle");
    let o = xtask(&["bundle", "--out"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = said(&o);
    assert!(s.contains("No space left on device"), "{s}");
    assert!(s.contains(small.to_str().unwrap()), "{s}");
    assert_eq!(
        std::fs::read_dir(&small).unwrap().count(),
        0,
        "no bundle and no partial file: {s}"
    );
}
