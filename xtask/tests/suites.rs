//! Environments on another Debian suite than the shipped ones, against the
//! real engine: `fixtures/trixie` declares torch 2.11 on trixie, whose
//! python3 is 3.13. Its harness is compiled against the environment's own
//! wheels unpacked for 3.13 (a build of its own, `2.11.0-py3.13`, unless
//! the host's python is 3.13 too) and, in the built image, loads libtorch
//! from `/opt/venv/lib/python3.13/site-packages/torch/lib`.

mod common;
use common::{repo, text};

const ENV: &str = "trixie-py3.13";

/// The fixture spec and lock, with the repository's `images/`, in a
/// folder of their own.
fn trixie_spec() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("xtask/tests/fixtures/trixie");
    for file in ["environments.yaml", "environments.lock"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for entry in std::fs::read_dir(repo().join("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn a_trixie_environment_gets_a_harness_that_finds_its_libtorch() {
    let dir = trixie_spec();
    let spec_path = dir.path().join("environments.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--spec")
        .arg(&spec_path)
        .args(["build", ENV])
        .env_remove("TORCHENV_LOCK")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let spec = xtask::spec::Spec::load(&spec_path).unwrap();
    let lock = xtask::lock::Lock::read(&dir.path().join(xtask::lock::LOCK_FILE)).unwrap();
    let locked = &lock.environments[ENV];
    assert_eq!(locked.python, "3.13");
    let key = xtask::build::harness::build_key(locked);
    assert!(key == "2.11.0" || key == "2.11.0-py3.13", "{key}");
    let harness = xtask::build::harness::up_to_date(locked)
        .unwrap()
        .expect("`build` compiled the harness");
    let env = spec.env(Some(ENV)).unwrap();
    let image = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        xtask::build::ensure_image(&docker, &spec, &lock, env, Some(&harness))
            .await
            .unwrap()
            .tag
    });

    // No GPU is asked for: libtorch loads and says where it came from.
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", &image])
        .args([xtask::build::image::IMAGE_HARNESS, "cuda", "--json"])
        .args(["--expect-gpus", "0"])
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(
        report["torch"]["lib_dir"], "/opt/venv/lib/python3.13/site-packages/torch/lib",
        "{report:#}"
    );
    let version = report["torch"]["version"].as_str().unwrap();
    assert!(version.starts_with("2.11.0"), "{report:#}");
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", &image])
        .args(["python", "-c", "import sys; print(sys.version_info[:2])"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(3, 13)",
        "{}",
        text(&out)
    );
}
