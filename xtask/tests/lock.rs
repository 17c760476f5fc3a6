//! `cargo xtask lock` and spec errors through the real CLI.

mod common;

use std::path::Path;

use common::repo;
use std::process::{Command, Output};

/// A copy of the shipped spec and lock in a temp dir, optionally edited.
fn workdir(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("environments.yaml")).unwrap();
    std::fs::write(dir.path().join("environments.yaml"), edit(spec)).unwrap();
    std::fs::copy(
        repo().join("environments.lock"),
        dir.path().join("environments.lock"),
    )
    .unwrap();
    dir
}

/// stderr with miette's line wrapping and frame characters taken out.
fn flat(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn xtask(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--spec")
        .arg(dir.join("environments.yaml"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn relocking_an_unchanged_spec_is_byte_identical() {
    let dir = workdir(|s| s);
    let before = std::fs::read(dir.path().join("environments.lock")).unwrap();
    let out = xtask(dir.path(), &["lock", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read(dir.path().join("environments.lock")).unwrap();
    assert!(before == after, "re-locking changed environments.lock");
}

#[test]
fn shipped_lock_matches_the_shipped_spec() {
    let dir = workdir(|s| s);
    // `lock` on a fresh entry resolves nothing and says so.
    let out = xtask(dir.path(), &["lock", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pytorch-2.6-cuda12.4: up to date"),
        "{stderr}"
    );
    assert!(stderr.contains("pytorch-2.11: up to date"), "{stderr}");
}

#[test]
fn cuda_disagreeing_with_the_wheels_names_both_versions() {
    let dir = workdir(|s| s.replacen("cuda: \"12.4\"", "cuda: \"12.1\"", 1));
    let out = xtask(dir.path(), &["lock"]);
    let stderr = flat(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expects CUDA 12.1"), "{stderr}");
    assert!(stderr.contains("resolves to CUDA 12.4"), "{stderr}");
    let line = std::fs::read_to_string(dir.path().join("environments.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("cuda: \"12.1\""))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("environments.yaml:{line}:")),
        "{stderr}"
    );
}

#[test]
fn malformed_spec_exits_2_with_location_for_every_command() {
    let dir = workdir(|s| {
        s.replacen(
            "    torch: 2.6.0\n",
            "    torch: 2.6.0\n    torhcvision: 0.21.0\n",
            1,
        )
    });
    for cmd in [&["list"][..], &["show"], &["lock"], &["build"], &["up"]] {
        let out = xtask(dir.path(), cmd);
        let stderr = flat(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {stderr}");
        assert!(stderr.contains("environments.yaml:"), "{cmd:?}: {stderr}");
        assert!(
            stderr.contains("unknown field `torhcvision`"),
            "{cmd:?}: {stderr}"
        );
    }
}

/// The shared-server checks are spec errors like the rest: exit 2, the
/// file:line:col of the offending value, the field and the value named.
#[test]
fn hardening_errors_exit_2_with_location() {
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "  host_ip: 127.0.0.1\n",
            "  host_ip: 0.0.0.0\n",
            "host_ip: 0.0.0.0",
            "`expose: true` is not set",
        ),
        (
            "  volumes: []\n",
            "  volumes: [{ source: cache, target: /opt/venv }]\n",
            "volumes: [{ source: cache, target: /opt/venv }]",
            "volume target `/opt/venv` would shadow /opt/venv",
        ),
        (
            "    pip: [jupyterlab, onnx, onnxruntime]\n",
            "    pip: [jupyterlab, onnx, onnxruntime, \"--no-deps\"]\n",
            "pip: [jupyterlab, onnx, onnxruntime, \"--no-deps\"]",
            "`pip:` entry \"--no-deps\" is an option; options are not allowed",
        ),
        (
            "    cap_add: []\n",
            "    cap_add: [SYS_ADMIN]\n",
            "cap_add: [SYS_ADMIN]",
            "`security.cap_add` entry `SYS_ADMIN` is refused",
        ),
    ];
    for (from, to, line_text, message) in cases {
        let dir = workdir(|s| {
            assert!(s.contains(from), "environments.yaml has no {from:?}");
            s.replacen(from, to, 1)
        });
        let out = xtask(dir.path(), &["show"]);
        let stderr = flat(&out);
        assert_eq!(out.status.code(), Some(2), "{to:?}: {stderr}");
        let line = std::fs::read_to_string(dir.path().join("environments.yaml"))
            .unwrap()
            .lines()
            .position(|l| l.trim() == line_text)
            .unwrap()
            + 1;
        assert!(
            stderr.contains(&format!("environments.yaml:{line}:")),
            "{to:?}: {stderr}"
        );
        assert!(stderr.contains(message), "{to:?}: {stderr}");
    }
}

/// The version matrix: every torch torchenv knows a harness for resolves
/// on PyPI for its Python (bookworm's 3.11, and 2.6.0 for bullseye's 3.9
/// within glibc 2.31), with CUDA and cuDNN read from the wheels it
/// resolved to; nothing is written (`lock --dry-run`).
/// torch 2.8.0 is refused by the spec, saying why no harness links it.
#[test]
fn lock_dry_run_resolves_the_version_matrix() {
    let matrix = [
        ("t27", "2.7.0", "0.22.0", "bookworm"),
        ("t29", "2.9.0", "0.24.0", "bookworm"),
        ("t210", "2.10.0", "0.25.0", "bookworm"),
        ("t211", "2.11.0", "0.26.0", "bookworm"),
        ("t26py39", "2.6.0", "0.21.0", "bullseye"),
    ];
    let mut spec = String::from("version: 1\ndefault: t27\nenvironments:\n");
    for (name, torch, vision, suite) in matrix {
        spec.push_str(&format!(
            "  {name}:\n    torch: {torch}\n    torchvision: {vision}\n    base: {{ debian: {suite} }}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("environments.yaml"), &spec).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let out = xtask(dir.path(), &["lock", "--all", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", flat(&out));
    for (name, torch, vision, suite) in matrix {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"));
        let python = if suite == "bullseye" { "3.9" } else { "3.11" };
        assert!(
            line.contains(&format!(
                "torch {torch} + torchvision {vision} for python {python}"
            )),
            "{line}"
        );
        let cuda = line
            .split("CUDA ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let cudnn = line.split("cuDNN ").nth(1).unwrap().trim();
        assert!(
            cuda.split('.').count() == 2 && cuda.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{line}"
        );
        assert!(cudnn.starts_with("9."), "{line}");
    }
    // What the brief checked: 2.11.0 is a CUDA 13.0 build with cuDNN 9.19,
    // 2.6.0 a CUDA 12.4 build with cuDNN 9.1.
    assert!(
        stdout.contains("t211: torch 2.11.0") && stdout.contains("CUDA 13.0, cuDNN 9.19"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(manylinux_2_31): ") && stdout.contains("CUDA 12.4, cuDNN 9.1"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        before.len(),
        "nothing written"
    );

    let spec28 = "version: 1\nenvironments:\n  t28:\n    torch: 2.8.0\n    torchvision: 0.23.0\n";
    std::fs::write(dir.path().join("environments.yaml"), spec28).unwrap();
    let out = xtask(dir.path(), &["lock", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", flat(&out));
    assert!(
        flat(&out).contains("tch 0.21.0, its release for PyTorch 2.8, was never published"),
        "{}",
        flat(&out)
    );
}

/// pip evaluates environment markers for its own python even when resolving
/// for another: jupyter_client 8.6 needs `importlib_metadata` below python
/// 3.10, which a python 3.11 host's pip leaves out for a 3.9 image. The
/// resolve adds what the target's markers ask for.
#[test]
fn resolving_for_an_older_python_keeps_its_marker_dependencies() {
    let names = |python: &str| {
        let scratch = tempfile::tempdir().unwrap();
        let target = xtask::build::pip::Target {
            python,
            glibc: (2, 31),
        };
        let resolver =
            xtask::build::resolver::Resolver::ensure(&xtask::progress::Progress::plain()).unwrap();
        let report = resolver
            .resolve(
                target,
                &["jupyter_client==8.6.3".to_string()],
                scratch.path(),
            )
            .unwrap();
        report["install"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| xtask::build::lock::normalize_name(i["metadata"]["name"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    let py39 = names("3.9");
    assert!(py39.contains(&"importlib-metadata".to_string()), "{py39:?}");
    assert!(py39.contains(&"zipp".to_string()), "{py39:?}");
    let py311 = names("3.11");
    assert!(
        !py311.contains(&"importlib-metadata".to_string()),
        "{py311:?}"
    );
}

/// A resolve reads the metadata of the wheels it considers with HTTP
/// range requests rather than downloading them: torch 2.6.0 and its CUDA
/// wheels (~3 GB) resolve with pip's temporary folder on a 256 MB tmpfs.
/// (Without range requests `lock --all` held every environment's wheels
/// at once in /tmp, ~15 GB for five.)
#[test]
fn resolving_torch_needs_no_room_for_its_wheels() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = common::Tmpfs::mount(&dir.path().join("tmp"), "256m");
    let scratch = tempfile::tempdir().unwrap();
    // pip's temporary files (what it downloads) go to TMPDIR.
    std::env::set_var("TMPDIR", &tmp.path);
    let target = xtask::build::pip::Target {
        python: "3.11",
        glibc: (2, 36),
    };
    let resolver =
        xtask::build::resolver::Resolver::ensure(&xtask::progress::Progress::plain()).unwrap();
    let report = resolver
        .resolve(target, &["torch==2.6.0".to_string()], scratch.path())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<&str> = report["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"torch"), "{names:?}");
    assert!(names.contains(&"nvidia-cudnn-cu12"), "{names:?}");
}
