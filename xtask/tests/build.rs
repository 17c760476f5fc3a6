//! `cargo xtask build` against the real Docker engine (no mocks).
//!
//! Cheap tests (seconds, an engine is all they need) run by default. The
//! full build of the default environment needs environments.lock (or
//! `TORCHENV_LOCK=path`), network to the host's package indexes on a cold
//! cache, and minutes when cold (`cargo xtask test` builds it first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use xtask::build::BuildError;
use xtask::build::{base_image, image, system_layer, venv_layer};
use xtask::docker::images::time_key;
use xtask::docker::Docker;
use xtask::lock::Lock;
use xtask::progress::Progress;
use xtask::spec::Spec;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The default environment's spec, lock and base image (loaded when missing).
async fn default_base(docker: &Docker) -> (Spec, Lock, String) {
    let root = repo_root();
    let spec = Spec::load(&root.join("environments.yaml")).unwrap();
    let lock_path = std::env::var_os("TORCHENV_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("environments.lock"));
    let lock = Lock::read(&lock_path).unwrap();
    let env = spec.env(None).unwrap();
    let locked = lock.environments[&env.name].clone();
    let base = base_image::ensure_base_image(docker, &lock, &locked, &Progress::plain())
        .await
        .unwrap();
    (spec, lock, base)
}

/// The diff id of `tag`'s top layer.
async fn top_layer(docker: &Docker, tag: &str) -> String {
    let i = docker.image_inspect(tag).await.unwrap().expect("tagged");
    i.root_fs.unwrap().layers.unwrap().pop().unwrap()
}

#[tokio::test]
async fn a_failing_stage_script_leaves_no_tag_and_says_why() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let (_, _, base) = default_base(&docker).await;
    let images = tempfile::tempdir().unwrap();
    std::fs::write(
        images.path().join(system_layer::SCRIPT),
        "echo 'no room for dev' >&2\nexit 3\n",
    )
    .unwrap();
    let tag = format!("torchenv/test-system:{}", unique("t"));
    let stage = system_layer::SystemStage {
        tag: &tag,
        venv_tag: &base,
        base_image: &base,
        images_dir: images.path(),
        epoch: 1_735_689_600,
    };
    let err = system_layer::build(&docker, &stage, &Progress::plain())
        .await
        .expect_err("the script exits 3");
    match &err {
        BuildError::StageScript { script, code, tail } => {
            assert_eq!(*script, system_layer::SCRIPT);
            assert_eq!(*code, 3);
            assert!(
                tail.iter().any(|l| l.contains("no room for dev")),
                "{tail:?}"
            );
        }
        other => panic!("expected a stage script failure, got {other:?}"),
    }
    assert!(
        docker.image_inspect(&tag).await.unwrap().is_none(),
        "no tag on failure"
    );
}

/// images/system.sh run twice on the same parent gives the same layer,
/// byte for byte (its diff id), although the runs happen at different times.
#[tokio::test(flavor = "multi_thread")]
async fn the_system_layer_is_the_same_bytes_every_time() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let (_, _, base) = default_base(&docker).await;
    let images = repo_root().join("images");
    let mut layers = Vec::new();
    for round in 0..2 {
        let tag = format!("torchenv/test-system:{}", unique(&format!("r{round}")));
        let stage = system_layer::SystemStage {
            tag: &tag,
            venv_tag: &base,
            base_image: &base,
            images_dir: &images,
            epoch: 1_735_689_600,
        };
        system_layer::build(&docker, &stage, &Progress::plain())
            .await
            .unwrap();
        layers.push(top_layer(&docker, &tag).await);
        // The layer holds what the script made.
        let (ok, out) = docker_cli(&[
            "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", &tag, "-c",
            "id dev && test -x /usr/local/bin/torchenv-entrypoint && ! find / -xdev -type f -perm /6000 | grep .",
        ]);
        assert!(ok, "{out}");
        docker.image_remove(&tag).await.unwrap();
    }
    assert_eq!(layers[0], layers[1]);
}

/// The venv layer of a small wheel set, installed twice: the same diff id.
#[tokio::test(flavor = "multi_thread")]
async fn the_venv_layer_is_the_same_bytes_every_time() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let (spec, lock, base) = default_base(&docker).await;
    let env = spec.env(None).unwrap();
    let wheels: Vec<_> = lock.environments[&env.name]
        .wheels
        .iter()
        .filter(|w| ["six", "idna", "webencodings"].contains(&w.name.as_str()))
        .cloned()
        .collect();
    assert_eq!(wheels.len(), 3);
    let progress = Progress::plain();
    let (paths, uv) = {
        let (w, p) = (wheels.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            let paths = xtask::build::wheels::fetch(&w, "3.11", &p).unwrap();
            (paths, xtask::build::uv::ensure(&p).unwrap())
        })
        .await
        .unwrap()
    };
    let script = repo_root().join("images").join(venv_layer::SCRIPT);
    let (mut layers, mut tagged) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let tag = format!("torchenv/test-venv:{}", unique(&format!("r{round}")));
        let stage = venv_layer::VenvStage {
            tag: &tag,
            base_image: &base,
            wheels: &wheels,
            cuda_toolkit: &[],
            wheel_paths: &paths,
            uv: &uv,
            script: &script,
            epoch: 1_735_689_600,
        };
        venv_layer::build(&docker, &stage, &progress).await.unwrap();
        layers.push(top_layer(&docker, &tag).await);
        tagged.push(docker.last_tagged(&tag).await.unwrap());
        let (ok, out) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            &tag,
            "/opt/venv/bin/python",
            "-c",
            "import six, idna, webencodings; print(six.__version__)",
        ]);
        assert!(ok && out.contains("1.17.0"), "{out}");
        docker.image_remove(&tag).await.unwrap();
    }
    assert_eq!(layers[0], layers[1]);
    // Loaded images carry the time they were made here (the engine's load
    // alone records none), so the later one is the newer: what `prune`
    // keeps of an environment's images.
    assert!(
        !tagged[0].starts_with("0001-") && time_key(&tagged[1]) > time_key(&tagged[0]),
        "tag times {tagged:?}"
    );
}

/// The default environment, built for real, then checked from the inside.
/// `cargo xtask test` passes the harness it built (`TORCHENV_TEST_HARNESS`),
/// so this is the suite's own image; without it the image is built with an
/// empty harness slot (minutes when cold).
#[tokio::test(flavor = "multi_thread")]
async fn the_default_environment_builds_and_runs() {
    let harness_bin = std::env::var_os("TORCHENV_TEST_HARNESS").map(PathBuf::from);
    let root = repo_root();
    let spec = Spec::load(&root.join("environments.yaml")).unwrap();
    let lock_path = std::env::var_os("TORCHENV_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("environments.lock"));
    let lock = Lock::read(&lock_path).unwrap();
    let env = spec.env(None).unwrap();
    let locked = &lock.environments[&env.name];
    let docker = Docker::connect().await.unwrap();
    let progress = Progress::plain();

    let start = Instant::now();
    let image = image::ensure_image_with(
        &docker,
        &spec,
        &lock,
        env,
        harness_bin.as_deref(),
        &progress,
    )
    .await
    .unwrap();
    println!(
        "first ensure_image: {:?} (built: {})",
        start.elapsed(),
        image.built
    );
    assert_eq!(
        image.tag,
        image::image_tag(&spec, &lock, env, harness_bin.as_deref()).unwrap()
    );

    // A second call builds nothing and is fast.
    let start = Instant::now();
    let again = image::ensure_image_with(
        &docker,
        &spec,
        &lock,
        env,
        harness_bin.as_deref(),
        &progress,
    )
    .await
    .unwrap();
    let warm = start.elapsed();
    println!("no-op ensure_image: {warm:?}");
    assert!(!again.built);
    assert_eq!(again.id, image.id);
    assert!(warm.as_secs_f64() < 2.0, "no-op took {warm:?}");

    // Labels.
    for (k, v) in [
        ("dev.torchenv.managed-by", "torchenv"),
        ("dev.torchenv.env", env.name.as_str()),
        ("dev.torchenv.torch", locked.torch.as_str()),
        ("dev.torchenv.cuda", locked.cuda.as_str()),
        ("dev.torchenv.cudnn", locked.cudnn.as_str()),
    ] {
        assert_eq!(
            image.labels.get(k).map(String::as_str),
            Some(v),
            "label {k}"
        );
    }
    let harness_label = match &harness_bin {
        Some(h) => xtask::cache::sha256_file(h).unwrap(),
        None => "absent".to_string(),
    };
    assert_eq!(image.labels["dev.torchenv.harness"], harness_label);
    for k in [
        "dev.torchenv.inputs",
        "dev.torchenv.spec",
        "dev.torchenv.lock-sha256",
    ] {
        assert!(image.labels.contains_key(k), "label {k}");
    }

    // torch, its CUDA and cuDNN, through the entrypoint as designed.
    let (ok, out) = docker_cli(&[
        "run", "--rm", "--network", "none", &image.tag, "python", "-c",
        "import torch,torchvision;print(torch.__version__,torch.version.cuda,torch.backends.cudnn.version())",
    ]);
    assert!(ok, "{out}");
    // PyPI's CUDA wheels report a local version: `2.6.0+cu124`.
    let expected = format!("{} {}", locked.cuda, locked.cudnn_number().unwrap());
    assert!(
        out.lines().any(|l| {
            let (version, rest) = l.trim().split_once(' ').unwrap_or_default();
            version.split('+').next() == Some(locked.torch.as_str()) && rest == expected
        }),
        "expected `{} {expected}` in:\n{out}",
        locked.torch
    );

    // tini is PID 1; the command runs as `dev`.
    let (ok, out) = docker_cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "TORCHENV_SSH=0",
        &image.tag,
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; id -un",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("/usr/bin/tini -- /usr/local/bin/torchenv-entrypoint"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == "dev"), "{out}");

    // What must not be in the image (checked without the entrypoint, so
    // nothing is generated at start).
    let (ok, out) = docker_cli(&[
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", &image.tag, "-c",
        "for c in gcc cc c++ g++ clang make; do command -v $c && echo FOUND-COMPILER $c; done; \
         ls /etc/ssh/ssh_host_* 2>/dev/null && echo FOUND-HOST-KEYS; \
         test -e /tmp/wheelhouse && echo FOUND-WHEELHOUSE; \
         for d in /root/.cache/pip /home/dev/.cache/pip; do test -e $d && echo FOUND-PIP-CACHE $d; done; \
         find / -xdev -name '*.whl' -not -path '/usr/share/python-wheels/*' | sed 's/^/FOUND-WHEEL /'; \
         test -s /etc/machine-id && echo FOUND-MACHINE-ID; \
         grep -E '^(PasswordAuthentication|PermitRootLogin)' /etc/ssh/sshd_config; \
         echo checked",
    ]);
    assert!(ok, "{out}");
    assert!(!out.contains("FOUND-"), "{out}");
    assert!(
        out.contains("PasswordAuthentication no") && out.contains("PermitRootLogin no"),
        "{out}"
    );

    // The harness in the image links the image's libtorch and runs: on this
    // CPU-only machine `harness cuda` reports no GPU and exits 0.
    if harness_bin.is_some() {
        let (ok, out) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            &image.tag,
            "harness",
            "cuda",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("torch ") && l.contains(locked.torch.as_str())),
            "{out}"
        );
        assert!(out.contains("no GPU"), "{out}");
    }

    // Changing only the harness rebuilds only the last layer.
    let dir = tempfile::tempdir().unwrap();
    let harness = dir.path().join("harness");
    std::fs::copy(
        harness_bin.as_deref().unwrap_or(Path::new("/bin/true")),
        &harness,
    )
    .unwrap();
    std::fs::write(dir.path().join("marker"), unique("h")).unwrap();
    // Make the binary unique to this run so the tag is new.
    let mut bytes = std::fs::read(&harness).unwrap();
    bytes.extend_from_slice(unique("h").as_bytes());
    std::fs::write(&harness, bytes).unwrap();
    let start = Instant::now();
    let with = image::ensure_image_with(&docker, &spec, &lock, env, Some(&harness), &progress)
        .await
        .unwrap();
    println!("harness-only rebuild: {:?}", start.elapsed());
    assert!(with.built);
    assert_ne!(with.tag, image.tag);
    assert_eq!(
        with.labels["dev.torchenv.harness"],
        xtask::cache::sha256_file(&harness).unwrap()
    );
    let layers = |tag: &str| {
        let (ok, out) = docker_cli(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", tag]);
        assert!(ok, "{out}");
        serde_json::from_str::<Vec<String>>(out.trim()).unwrap()
    };
    let (old, new) = (layers(&image.tag), layers(&with.tag));
    // An empty harness slot adds no layer; a harness adds one.
    let below = old.len() - usize::from(harness_bin.is_some());
    assert_eq!(new.len(), below + 1, "one harness layer");
    assert_eq!(
        &new[..below],
        &old[..below],
        "every layer below the harness is shared"
    );
    let (ok, out) = docker_cli(&[
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/harness",
        &with.tag,
        "--version",
    ]);
    assert!(ok, "{out}");
    docker.image_remove(&with.tag).await.unwrap();
}
