//! `cargo xtask prune` against the real engine and the real spec + lock:
//! stage images of an old lock and the host venv and harness build of a
//! torch version no lock names go, the current environment's base, stage
//! images, image, venvs and harness builds stay, and afterwards nothing
//! unreferenced is left
//! (a dry run finds nothing to remove). Its own test file: it removes
//! images other tests of the same binary might be using.

mod common;

use std::process::Command;

use common::testenv::{lock_path, stderr, test_image};
use common::tiny_image::TinyImage;

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--spec")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(xtask::spec::SPEC_FILE),
        )
        .arg("--lock")
        .arg(lock_path())
        .args(args)
        .output()
        .expect("runs xtask")
}

fn exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn prune_removes_old_stages_keeps_the_current_ones_and_leaves_nothing_unreferenced() {
    let image = test_image();
    let spec = xtask::spec::Spec::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(xtask::spec::SPEC_FILE),
    )
    .unwrap();
    let lock = xtask::lock::Lock::read(&lock_path()).unwrap();
    let plan = xtask::build::image::plan(&spec, &lock, spec.env(None).unwrap(), None).unwrap();
    // Stage images of an older lock: torchenv's label, tags no lock names.
    let label = "LABEL dev.torchenv.managed-by=torchenv".to_string();
    let old_venv = TinyImage::new(
        "torchenv/venv:0000000000000000".into(),
        &[],
        std::slice::from_ref(&label),
    );
    let old_system = TinyImage::new("torchenv/system:0000000000000000".into(), &[], &[label]);

    // A host venv and a harness build of a torch version no lock names.
    let cache = xtask::cache::root();
    let old_torch = [
        cache.join("pytorch/0.0.0-old/venv"),
        cache.join("harness/0.0.0-old/target"),
    ];
    for dir in &old_torch {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("file"), "x").unwrap();
    }
    let current: Vec<_> = lock
        .environments
        .values()
        .flat_map(|e| {
            [
                xtask::cache::torch_venv(&e.torch),
                xtask::cache::harness_dir(&e.torch),
            ]
        })
        .filter(|d| d.exists())
        .collect();

    let out = xtask(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for dir in &old_torch {
        assert!(
            !dir.parent().unwrap().exists(),
            "prune left {}",
            dir.display()
        );
    }
    for dir in &current {
        assert!(dir.exists(), "prune removed {}", dir.display());
    }
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!exists(&old_venv.tag), "{said}");
    assert!(!exists(&old_system.tag), "{said}");
    for kept in [image, &plan.base_image, &plan.venv_tag, &plan.system_tag] {
        assert!(exists(kept), "prune removed {kept}: {said}");
    }
    let out = xtask(&["prune", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("would remove"), "left unreferenced: {said}");
}
