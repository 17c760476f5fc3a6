//! A harness for another Debian suite and python than the default's,
//! against the real engine: `fixtures/trixie` declares torch 2.11 on
//! trixie, whose python3 is 3.13. Its harness is compiled against the
//! environment's own wheels unpacked for 3.13 and is run on the locked
//! trixie base with those wheels where the image has them
//! (`/opt/venv/lib/python3.13/site-packages`): libtorch loads from there.
//! The image itself is not built (its 5.5 GB venv stage would stay on the
//! suite's disk); everything the test makes lives in a cache folder of its
//! own, removed at the end, and it runs alone (`cargo xtask test`). The
//! wheels this machine's cache already has (the CUDA wheels of the shipped
//! torch 2.11 environments are the same files) are hard-linked into it, so
//! only the python 3.13 ones are downloaded; each linked wheel is hashed
//! before use like any wheel found in a cache without its verified mark.

mod common;
use common::{repo, text};

const ENV: &str = "trixie-py3.13";
/// Where an image of python 3.13 has its site-packages.
const SITE_PACKAGES: &str = "/opt/venv/lib/python3.13/site-packages";

#[test]
fn a_trixie_harness_finds_the_python_3_13_libtorch() {
    let shared = xtask::cache::root();
    let cache = tempfile::tempdir().unwrap();
    // Before anything of xtask reads it.
    std::env::set_var("TORCHENV_CACHE", cache.path());
    link_wheels(&shared.join("wheels"), &cache.path().join("wheels"));
    let dir = repo().join("xtask/tests/fixtures/trixie");
    let spec = xtask::spec::Spec::load(&dir.join("environments.yaml")).unwrap();
    let lock = xtask::lock::Lock::read(&dir.join("environments.lock")).unwrap();
    let env = spec.env(Some(ENV)).unwrap();
    let locked = xtask::lock::check_fresh(&spec, &lock, env).unwrap();
    assert_eq!(locked.python, "3.13");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = rt.block_on(xtask::docker::Docker::connect()).unwrap();
    let progress = xtask::progress::Progress::new();
    let build = rt
        .block_on(xtask::build::harness_builder::build(
            &docker, locked, &progress,
        ))
        .unwrap();
    let base_tag = format!("torchenv/base:{}", locked.base);
    let had_base = common::image_id(&base_tag).is_some();
    let base = rt
        .block_on(xtask::build::base_image::ensure_base_image(
            &docker, &lock, locked, &progress,
        ))
        .unwrap();

    let unpacked = xtask::cache::torch_target(&locked.torch, &locked.python);
    let run = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!(
                "{}:{}:ro",
                build.binary.display(),
                xtask::build::image::IMAGE_HARNESS
            ))
            .arg("-v")
            .arg(format!("{}:{SITE_PACKAGES}:ro", unpacked.display()))
            .arg(&base)
            .args(args)
            .output()
            .unwrap()
    };
    // No GPU is asked for: libtorch loads and says where it came from.
    let harness = xtask::build::image::IMAGE_HARNESS;
    let out = run(&[harness, "cuda", "--json", "--expect-gpus", "0"]);
    let glibc = run(&["ldd", "--version"]);
    if !had_base {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", &base])
            .output();
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(
        report["torch"]["lib_dir"],
        format!("{SITE_PACKAGES}/torch/lib"),
        "{report:#}"
    );
    assert!(
        report["torch"]["version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{report:#}"
    );
    assert_eq!(report["exit_code"], 0, "{report:#}");
    // The base is trixie's own: glibc 2.41.
    assert!(text(&glibc).contains("2.41"), "{}", text(&glibc));
}

/// Hard-links every wheel file of the wheel store `from`
/// (`<sha256>/<file>`) into the store `to`, without the verified marks;
/// a file that cannot be linked (another file system) is left out.
fn link_wheels(from: &std::path::Path, to: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for dir in entries.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            if !name.to_string_lossy().ends_with(".whl") {
                continue;
            }
            let dest = to.join(dir.file_name());
            let _ = std::fs::create_dir_all(&dest)
                .and_then(|()| std::fs::hard_link(file.path(), dest.join(&name)));
        }
    }
}
