//! An environment on another Debian suite than the default's, against the
//! real engine: the shipped `pytorch-2.11-py3.13` is torch 2.11 on trixie,
//! whose python3 is 3.13. Its harness is compiled against the
//! environment's own wheels unpacked for 3.13 (a build of its own,
//! `2.11.0-py3.13`, unless the host's python is 3.13 too) and, in the
//! built image, loads libtorch from
//! `/opt/venv/lib/python3.13/site-packages/torch/lib`.

mod common;
use common::testenv::lock_path;
use common::{repo, text};

const ENV: &str = "pytorch-2.11-py3.13";

/// `docker run --rm --network none IMAGE ARGS…`
fn run_in(image: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", image])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_trixie_environment_gets_a_harness_that_finds_its_libtorch() {
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&lock_path()).unwrap();
    let env = spec.env(Some(ENV)).unwrap();
    assert!(
        matches!(&env.base, xtask::spec::Base::Debian { suite } if suite == "trixie"),
        "{ENV} is a trixie environment"
    );
    let locked = &lock.environments[ENV];
    assert_eq!(locked.python, "3.13");
    let key = xtask::build::harness::build_key(locked);
    assert!(key == "2.11.0" || key == "2.11.0-py3.13", "{key}");

    // What `build` and `up` do: the harness compiled (or found current),
    // then the image.
    let image = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        let progress = xtask::progress::Progress::new();
        xtask::build::ensure_env_image(&docker, &spec, &lock, env, None, &progress)
            .await
            .unwrap()
            .tag
    });
    assert!(
        xtask::build::harness::up_to_date(locked).unwrap().is_some(),
        "the harness build {key} is current"
    );

    // No GPU is asked for: libtorch loads and says where it came from.
    let harness = xtask::build::image::IMAGE_HARNESS;
    let out = run_in(&image, &[harness, "cuda", "--json", "--expect-gpus", "0"]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(
        report["torch"]["lib_dir"], "/opt/venv/lib/python3.13/site-packages/torch/lib",
        "{report:#}"
    );
    let version = report["torch"]["version"].as_str().unwrap();
    assert!(version.starts_with("2.11.0"), "{report:#}");

    let out = run_in(
        &image,
        &["python", "-c", "import sys; print(sys.version_info[:2])"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(3, 13)",
        "{}",
        text(&out)
    );
}
