//! `cargo xtask build` against the real Docker engine (no mocks).
//!
//! Cheap tests (seconds, an engine is all they need) run by default. The
//! full build of the default environment needs environments.lock (or
//! `TORCHENV_LOCK=path`), network to the host's package indexes on a cold
//! cache, and minutes when cold (`cargo xtask test` builds it first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use xtask::build::image::{self, ContextBuild, ContextFile};
use xtask::build::BuildError;
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

fn labels(tag: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            xtask::docker::LABEL_MANAGED_BY.to_string(),
            xtask::docker::MANAGED_BY.to_string(),
        ),
        ("dev.torchenv.test".to_string(), tag.to_string()),
        // Quotes, `$` and backslashes survive the LABEL instruction.
        (
            "dev.torchenv.test-json".to_string(),
            r#"{"a":"$HOME \"q\"","b":"c\\d"}"#.to_string(),
        ),
    ])
}

#[tokio::test]
async fn a_failing_step_leaves_no_tag_and_names_the_step() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let tag = format!("torchenv/test-broken:{}", unique("t"));
    // The engine keeps the steps before the failing one as untagged cache
    // images; this label finds them for removal at the end.
    let marker = format!("dev.torchenv.test={}", unique("broken"));
    let build = ContextBuild {
        tag: tag.clone(),
        dockerfile: "Dockerfile".into(),
        files: BTreeMap::from([
            (
                "Dockerfile".to_string(),
                ContextFile::Data(
                    format!(
                        "FROM scratch\nLABEL {marker}\nCOPY hello /hello\nRUN /no/such/program --fail\n"
                    )
                    .into_bytes(),
                    0o644,
                ),
            ),
            (
                "hello".to_string(),
                ContextFile::Data(b"hi\n".to_vec(), 0o644),
            ),
        ]),
        build_args: BTreeMap::new(),
        labels: labels(&tag),
    };
    let err = image::build_context(&docker, build, &Progress::plain())
        .await
        .expect_err("the RUN step cannot succeed");
    match &err {
        BuildError::Step(f) => {
            assert!(f.step.contains("RUN /no/such/program --fail"), "{f:?}");
            assert_eq!(f.image, tag);
            assert!(!f.message.is_empty());
        }
        other => panic!("expected a build failure, got {other:?}"),
    }
    assert!(
        docker.image_inspect(&tag).await.unwrap().is_none(),
        "no tag on failure"
    );
    remove_images_labelled(&marker);
}

/// Removes every image carrying `label` (`key=value`), newest first.
fn remove_images_labelled(label: &str) {
    let out = std::process::Command::new("docker")
        .args(["images", "-a", "-q", "--filter", &format!("label={label}")])
        .output()
        .expect("the docker CLI");
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", id])
            .output();
    }
}

#[tokio::test]
async fn a_good_build_is_tagged_with_its_labels() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let tag = format!("torchenv/test-ok:{}", unique("t"));
    let build = ContextBuild {
        tag: tag.clone(),
        dockerfile: "Dockerfile".into(),
        files: BTreeMap::from([
            (
                "Dockerfile".to_string(),
                ContextFile::Data(
                    b"FROM scratch\nCOPY slot/ /slot/\nCOPY hello /hello\n".to_vec(),
                    0o644,
                ),
            ),
            (
                "hello".to_string(),
                ContextFile::Data(b"hi\n".to_vec(), 0o644),
            ),
            // An empty folder copies fine: the harness slot without a harness.
            ("slot".to_string(), ContextFile::Dir),
        ]),
        build_args: BTreeMap::new(),
        labels: labels(&tag),
    };
    let id = image::build_context(&docker, build, &Progress::plain())
        .await
        .expect("builds");
    let inspected = docker.image_inspect(&tag).await.unwrap().expect("tagged");
    assert_eq!(inspected.id.as_deref(), Some(id.as_str()));
    let got = inspected.config.unwrap().labels.unwrap();
    assert_eq!(got["dev.torchenv.test"], tag);
    assert_eq!(
        got["dev.torchenv.test-json"],
        r#"{"a":"$HOME \"q\"","b":"c\\d"}"#
    );
    docker.image_remove(&tag).await.unwrap();
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
