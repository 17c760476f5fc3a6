//! A harness for another Debian suite and python than the default's,
//! against the real engine: `fixtures/trixie` declares torch 2.11 on
//! trixie, whose python3 is 3.13. Its harness is compiled against the
//! environment's own wheels unpacked for 3.13 and is run on the locked
//! trixie base with those wheels where the image has them
//! (`/opt/venv/lib/python3.13/site-packages`): libtorch loads from there.
//! The image itself is not built (its 5.5 GB venv stage would stay on the
//! suite's disk); everything the test makes lives in a cache folder of its
//! own, removed at the end, and it runs alone (`cargo xtask test`).

mod common;
use common::{repo, text};

const ENV: &str = "trixie-py3.13";
/// Where an image of python 3.13 has its site-packages.
const SITE_PACKAGES: &str = "/opt/venv/lib/python3.13/site-packages";

#[test]
fn a_trixie_harness_finds_the_python_3_13_libtorch() {
    let cache = tempfile::tempdir().unwrap();
    // Before anything of xtask reads it.
    std::env::set_var("TORCHENV_CACHE", cache.path());
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
