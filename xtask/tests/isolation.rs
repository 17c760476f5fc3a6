//! Per-user isolation on one Docker engine, with real Unix users (no mocks,
//! no `TORCHENV_UID`): the test creates two users (`useradd`, in the
//! `docker` group; removed with their homes by a Drop guard) and runs a copy
//! of the built `xtask` binary as each (`runuser -u NAME -- env -i …`) on one
//! world-readable temporary spec, each with its own `HOME`, state and cache.
//! It proves that
//! - A's `up` makes `torchenv-<env>-<A>`, its network and the volume
//!   `torchenv-<uid A>-cache`, each labelled with A's name and uid, and A's
//!   workspace is 0700;
//! - B — also with `USER` set to A's name — never reaches A's container:
//!   `down`, `down --all --volumes`, `exec`, `shell`, `logs` act on B's own
//!   name only; `TORCHENV_UID` set to A's uid is refused;
//! - B's `up` of the same environment makes B's own container beside A's,
//!   on another port (`--auto-ports`); `status --json` shows each only
//!   their own; B's `down --volumes` leaves A's volume;
//! - when A's container sits under B's name (renamed with the docker CLI),
//!   every command of B is refused naming A and A's uid, and a volume of
//!   B's name carrying A's uid is refused by B's `up`.
//!
//! Everything of the environment (containers, networks, volumes) is removed
//! by a Drop guard too.
//!
//! A second test checks `build::provenance` on the engine: labels and the
//! base layer chain of images made here (and, with `TORCHENV_TEST_IMAGE`,
//! that the real environment image passes against the lock).
//!
//! The image: `TORCHENV_TEST_IMAGE` when set (never built here); otherwise
//! a tiny image imported from this host's `/bin/sh`, `/bin/sleep` and libc
//! (the spec turns Jupyter and SSH off, so a running container is ready).
//! Needs root (to create users) and the docker CLI. Never skipped.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use xtask::build::provenance::{verify, BaseLayers};
use xtask::build::BuildError;
use xtask::docker::Docker;

mod common;
use common::tiny_image::TinyImage;

const OWNER: &str = "dev.torchenv.owner";
const OWNER_UID: &str = "dev.torchenv.owner-uid";
const ENV_LABEL: &str = "dev.torchenv.env";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn docker() -> Docker {
    rt().block_on(Docker::connect()).expect("a Docker engine")
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "is{}{tag}{}",
        std::process::id() % 1_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The docker CLI as root; panics when it fails unless `may_fail`.
fn docker_cli(args: &[&str], may_fail: bool) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI");
    assert!(
        may_fail || out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny image with a `dev` user (what `exec` runs as); `extra` adds
/// `docker import -c` changes.
fn tiny_image(repo: &str, extra: &[String]) -> TinyImage {
    TinyImage::new(
        format!("{repo}:{}", unique("img")),
        &[
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000::/workspace:/bin/sh\n",
                0o644,
            ),
            ("etc/group", b"root:x:0:\ndev:x:1000:\n", 0o644),
        ],
        extra,
    )
}

/// A Unix user in the `docker` group, with a home; `userdel -r` on drop.
struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl TestUser {
    fn new(tag: &str) -> TestUser {
        let name = unique(tag);
        let st = Command::new("useradd")
            .args(["--create-home", "--groups", "docker", "--shell", "/bin/sh"])
            .arg(&name)
            .status()
            .expect("useradd (this test creates users and needs root)");
        assert!(st.success(), "useradd {name} (needs root)");
        let uid = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
        assert_ne!(uid, 1234, "the launch tests' TORCHENV_UID");
        TestUser {
            home: PathBuf::from(format!("/home/{name}")),
            name,
            uid,
        }
    }

    fn describe(&self) -> String {
        format!("{} (uid {})", self.name, self.uid)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", "--force", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes every container, network and volume labelled with the
/// environment, as root (after the users' own `down`s).
struct EngineCleanup {
    env: String,
}

impl Drop for EngineCleanup {
    fn drop(&mut self) {
        let filter = format!("label={ENV_LABEL}={}", self.env);
        for (list, remove) in [
            (
                vec!["ps", "-aq", "--filter", &filter],
                vec!["rm", "-f", "-v"],
            ),
            (
                vec!["network", "ls", "-q", "--filter", &filter],
                vec!["network", "rm"],
            ),
            (
                vec!["volume", "ls", "-q", "--filter", &filter],
                vec!["volume", "rm", "-f"],
            ),
        ] {
            for id in docker_cli(&list, true).split_whitespace() {
                let mut args = remove.clone();
                args.push(id);
                docker_cli(&args, true);
            }
        }
    }
}

/// The world-readable folder holding the xtask binary's copy and the spec.
struct Shared {
    dir: tempfile::TempDir,
    env: String,
    port: u16,
}

impl Shared {
    fn new() -> Shared {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("xtask");
        std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = unique("env");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!(
            "version: 1\ndefault: {env}\nenvironments:\n  {env}:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    workspace: ~/ws-{env}\n    shm_size: 1g\n    gpus: none\n    jupyter: {{ enabled: false }}\n    ssh: {{ enabled: false }}\n    ports: [\"{port}:9000\"]\n    volumes:\n      - {{ source: cache, target: /cache }}\n"
        );
        let path = dir.path().join("environments.yaml");
        std::fs::write(&path, spec).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Shared { dir, env, port }
    }

    fn container(&self, user: &TestUser) -> String {
        format!("torchenv-{}-{}", self.env, user.name)
    }

    /// `xtask --spec SPEC ARGS…` as `user` with a clean environment: its
    /// own HOME, state and cache; `USER` is `fake_user` when given.
    fn run(&self, user: &TestUser, fake_user: Option<&str>, args: &[&str]) -> Output {
        let home = user.home.display().to_string();
        let mut vars = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("HOME={home}"),
            format!("USER={}", fake_user.unwrap_or(&user.name)),
            format!("LOGNAME={}", user.name),
            format!("XDG_STATE_HOME={home}/.local/state"),
            format!("TORCHENV_CACHE={home}/.cache/torchenv"),
        ];
        for pass in ["TORCHENV_LOCK", "DOCKER_HOST"] {
            if let Ok(v) = std::env::var(pass) {
                vars.push(format!("{pass}={v}"));
            }
        }
        let out = Command::new("runuser")
            .args(["-u", &user.name, "--", "env", "-i"])
            .args(&vars)
            .arg(self.dir.path().join("xtask"))
            .arg("--spec")
            .arg(self.dir.path().join("environments.yaml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runuser");
        eprintln!(
            "$ [{}{}] xtask {}\n-> {:?}\n{}{}",
            user.name,
            fake_user
                .map(|u| format!(" as USER={u}"))
                .unwrap_or_default(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The running containers `user`'s `status --json` lists.
    fn status(&self, user: &TestUser) -> Vec<serde_json::Value> {
        let out = self.run(user, None, &["status", "--json"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn labels_of(name: &str) -> Option<HashMap<String, String>> {
    rt().block_on(async {
        let d = Docker::connect().await.unwrap();
        let c = d.inspect_container(name).await.unwrap()?;
        Some(c.config.and_then(|c| c.labels).unwrap_or_default())
    })
}

fn running(name: &str) -> bool {
    rt().block_on(async {
        let d = Docker::connect().await.unwrap();
        let c = d.inspect_container(name).await.unwrap();
        c.and_then(|c| c.state?.running).unwrap_or(false)
    })
}

fn volume_labels(name: &str) -> Option<HashMap<String, String>> {
    rt().block_on(async {
        let d = Docker::connect().await.unwrap();
        Some(d.inspect_volume(name).await.unwrap()?.labels)
    })
}

/// Stderr without whitespace or miette's frame (messages wrap anywhere).
fn stderr(o: &Output) -> String {
    squash(&String::from_utf8_lossy(&o.stderr))
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

fn assert_owned_by(labels: &HashMap<String, String>, user: &TestUser, what: &str) {
    assert_eq!(labels.get(OWNER), Some(&user.name), "{what}: {labels:?}");
    assert_eq!(
        labels.get(OWNER_UID),
        Some(&user.uid.to_string()),
        "{what}: {labels:?}"
    );
}

/// A's `up`: container, network and volume carry A's name and uid; the
/// workspace is A's, 0700; A's own `exec` works.
fn a_up(s: &Shared, a: &TestUser, image: &str) {
    let up = s.run(a, None, &["up", "--image", image, "--timeout", "120"]);
    assert!(up.status.success(), "A's up: {}", stderr(&up));
    let name = s.container(a);
    assert!(running(&name), "{name}");
    assert_owned_by(&labels_of(&name).unwrap(), a, "A's container");
    let network = rt().block_on(async {
        let d = Docker::connect().await.unwrap();
        d.network_labels(&name).await.unwrap()
    });
    assert_owned_by(&network.expect("A's network"), a, "A's network");
    let volume = format!("torchenv-{}-cache", a.uid);
    assert_owned_by(
        &volume_labels(&volume).expect("A's volume"),
        a,
        "A's volume",
    );
    let ws = std::fs::metadata(a.home.join(format!("ws-{}", s.env))).unwrap();
    assert_eq!(ws.permissions().mode() & 0o777, 0o700, "A's workspace mode");
    assert_eq!(ws.uid(), a.uid, "A's workspace owner");
    let exec = s.run(a, None, &["exec", &s.env, "--", "sh", "-c", "echo mine"]);
    assert!(exec.status.success(), "A's exec: {}", stderr(&exec));
    assert!(String::from_utf8_lossy(&exec.stdout).contains("mine"));
}

/// B, even with `USER` set to A's name, only ever addresses B's own name.
fn b_cannot_reach_a(s: &Shared, a: &TestUser, b: &TestUser) {
    let a_name = s.container(a);
    let b_name = s.container(b);
    for args in [
        vec!["down", s.env.as_str()],
        vec!["exec", s.env.as_str(), "--", "sh", "-c", "true"],
        vec!["shell", s.env.as_str()],
        vec!["logs", s.env.as_str()],
    ] {
        let out = s.run(b, Some(&a.name), &args);
        let err = stderr(&out);
        assert!(!args[0].eq("down") || out.status.success(), "{err}");
        if args[0] != "down" {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains(&squash(&format!("no container {b_name}"))),
                "{err}"
            );
        }
        assert!(
            !err.contains(&a_name),
            "B's {} named A's container: {err}",
            args[0]
        );
        assert!(running(&a_name), "A's container after B's {}", args[0]);
    }
    let all = s.run(b, Some(&a.name), &["down", "--all", "--volumes"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(running(&a_name), "A's container after B's down --all");
    assert!(volume_labels(&format!("torchenv-{}-cache", a.uid)).is_some());
    // Acting as A's uid is root's privilege only.
    let uid = a.uid.to_string();
    let out = Command::new("runuser")
        .args(["-u", &b.name, "--", "env", &format!("TORCHENV_UID={uid}")])
        .arg(format!("HOME={}", b.home.display()))
        .arg(s.dir.path().join("xtask"))
        .arg("--spec")
        .arg(s.dir.path().join("environments.yaml"))
        .args(["down", &s.env])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&squash(&format!(
            "TORCHENV_UID={uid} asks to act as another user"
        ))),
        "{}",
        stderr(&out)
    );
    assert!(running(&a_name));
}

/// B's own `up` runs beside A's on another port; each `status` shows only
/// its own; B's `down --volumes` takes B's volume only.
fn side_by_side(s: &Shared, a: &TestUser, b: &TestUser, image: &str) {
    let up = s.run(
        b,
        None,
        &["up", "--image", image, "--timeout", "120", "--auto-ports"],
    );
    assert!(up.status.success(), "B's up: {}", stderr(&up));
    let (a_name, b_name) = (s.container(a), s.container(b));
    assert!(running(&a_name) && running(&b_name));
    assert_owned_by(&labels_of(&b_name).unwrap(), b, "B's container");
    let only = |user: &TestUser| {
        let list = s.status(user);
        assert_eq!(list.len(), 1, "{}'s status: {list:?}", user.name);
        let ports: Vec<String> = list[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        (list[0]["container"].as_str().unwrap().to_string(), ports)
    };
    let (a_seen, a_ports) = only(a);
    let (b_seen, b_ports) = only(b);
    assert_eq!((a_seen, b_seen), (a_name.clone(), b_name.clone()));
    assert_eq!(a_ports, vec![format!("127.0.0.1:{}->9000/tcp", s.port)]);
    assert_eq!(b_ports.len(), 1);
    assert_ne!(a_ports, b_ports, "both publish the same host port");
    let b_volume = format!("torchenv-{}-cache", b.uid);
    assert_owned_by(&volume_labels(&b_volume).unwrap(), b, "B's volume");
    let down = s.run(b, None, &["down", &s.env, "--volumes"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(labels_of(&b_name).is_none() && volume_labels(&b_volume).is_none());
    assert!(running(&a_name), "A's container after B's down --volumes");
    assert!(volume_labels(&format!("torchenv-{}-cache", a.uid)).is_some());
}

/// A's container under B's name: every command of B refuses it, naming A.
fn squatted(s: &Shared, a: &TestUser, b: &TestUser, image: &str) {
    let (a_name, b_name) = (s.container(a), s.container(b));
    docker_cli(&["rename", &a_name, &b_name], false);
    let refusal = squash(&format!(
        "container {b_name} is not yours: it belongs to {}; you are {}",
        a.describe(),
        b.describe()
    ));
    for args in [
        vec!["down", s.env.as_str()],
        vec!["down", s.env.as_str(), "--volumes"],
        vec!["exec", s.env.as_str(), "--", "sh", "-c", "true"],
        vec!["shell", s.env.as_str()],
        vec!["logs", s.env.as_str()],
        vec!["up", "--image", image, "--timeout", "30"],
    ] {
        let out = s.run(b, None, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&refusal),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(running(&b_name), "A's container after B's {args:?}");
    }
    assert!(s.status(b).is_empty(), "B's status lists A's container");
    let all = s.run(b, None, &["down", "--all"]);
    assert!(all.status.success() && running(&b_name));
    assert_eq!(
        labels_of(&b_name).unwrap().get(OWNER_UID),
        Some(&a.uid.to_string())
    );
    docker_cli(&["rename", &b_name, &a_name], false);
    // A volume under B's name that is A's.
    let volume = format!("torchenv-{}-cache", b.uid);
    let label = |k: &str, v: &str| format!("--label={k}={v}");
    docker_cli(
        &[
            "volume",
            "create",
            &label("dev.torchenv.managed-by", "torchenv"),
            &label(ENV_LABEL, &s.env),
            &label(OWNER, &a.name),
            &label(OWNER_UID, &a.uid.to_string()),
            &volume,
        ],
        false,
    );
    let up = s.run(
        b,
        None,
        &["up", "--image", image, "--timeout", "30", "--auto-ports"],
    );
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    let refusal = squash(&format!(
        "volume {volume} is not yours: it belongs to {}",
        a.describe()
    ));
    assert!(stderr(&up).contains(&refusal), "{}", stderr(&up));
    assert!(labels_of(&b_name).is_none(), "B's up created a container");
    let down = s.run(b, None, &["down", &s.env, "--volumes"]);
    assert!(down.status.success() && volume_labels(&volume).is_some());
}

#[test]
fn two_users_on_one_engine_never_touch_each_others_objects() {
    let tiny;
    let image = match std::env::var("TORCHENV_TEST_IMAGE") {
        Ok(tag) => tag,
        Err(_) => {
            tiny = tiny_image("torchenv-test/isolation", &[]);
            tiny.tag.clone()
        }
    };
    let shared = Shared::new();
    let a = TestUser::new("a");
    let b = TestUser::new("b");
    let _engine = EngineCleanup {
        env: shared.env.clone(),
    };
    a_up(&shared, &a, &image);
    b_cannot_reach_a(&shared, &a, &b);
    side_by_side(&shared, &a, &b, &image);
    squatted(&shared, &a, &b, &image);
    let down = shared.run(&a, None, &["down", &shared.env, "--volumes"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(labels_of(&shared.container(&a)).is_none());
    assert!(volume_labels(&format!("torchenv-{}-cache", a.uid)).is_none());
}

fn inspect(d: &Docker, tag: &str) -> bollard::models::ImageInspect {
    rt().block_on(d.image_inspect(tag)).unwrap().unwrap()
}

fn first_layer(image: &bollard::models::ImageInspect) -> String {
    image.root_fs.as_ref().unwrap().layers.as_ref().unwrap()[0].clone()
}

fn check(
    d: &Docker,
    tag: &str,
    expected: &BTreeMap<String, String>,
    base: &BaseLayers,
) -> Result<(), BuildError> {
    let image = inspect(d, tag);
    rt().block_on(verify(d, tag, &image, expected, base))
}

/// The field an [`BuildError::ImageMismatch`] names.
fn mismatch(r: Result<(), BuildError>) -> String {
    match r {
        Err(BuildError::ImageMismatch { field, .. }) => field,
        other => panic!("expected ImageMismatch, got {other:?}"),
    }
}

#[test]
fn an_image_is_used_only_with_the_locks_labels_over_the_locked_base() {
    let d = docker();
    let expected = BTreeMap::from([
        (
            "dev.torchenv.managed-by".to_string(),
            "torchenv".to_string(),
        ),
        ("dev.torchenv.torch".to_string(), "2.6.0".to_string()),
    ]);
    let labels = |torch: &str| {
        vec![
            "LABEL dev.torchenv.managed-by=torchenv".to_string(),
            format!("LABEL dev.torchenv.torch={torch}"),
        ]
    };
    let other = tiny_image("torchenv-test/provenance", &labels("2.5.1"));
    let base = tiny_image("torchenv-test/provenance", &labels("2.6.0"));
    let base_layers = BaseLayers::Known(vec![first_layer(&inspect(&d, &base.tag))]);
    // Another label value, whatever the layers.
    let field = mismatch(check(&d, &other.tag, &expected, &base_layers));
    assert_eq!(field, "label dev.torchenv.torch");
    // The right labels over the right base; copied labels over another one.
    check(&d, &base.tag, &expected, &base_layers).unwrap();
    let locked = BaseLayers::Known(vec![format!("sha256:{}", "ab".repeat(32))]);
    let field = mismatch(check(&d, &base.tag, &expected, &locked));
    assert!(field.starts_with("RootFS.Layers"), "{field}");
    // An image built on top of `base`: its base's chain is a prefix; a
    // pinned base that is absent cannot be checked.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}\nCOPY f /f\n", base.tag),
    )
    .unwrap();
    std::fs::write(ctx.path().join("f"), "layer").unwrap();
    let top = format!("torchenv-test/provenance:{}", unique("top"));
    docker_cli(
        &["build", "-q", "-t", &top, &ctx.path().display().to_string()],
        false,
    );
    let _top = TinyImage { tag: top.clone() };
    check(&d, &top, &expected, &BaseLayers::Image(base.tag.clone())).unwrap();
    let field = mismatch(check(
        &d,
        &base.tag,
        &expected,
        &BaseLayers::Image(top.clone()),
    ));
    assert!(field.starts_with("RootFS.Layers"), "{field}");
    let missing = format!("torchenv-test/none@sha256:{}", "0".repeat(64));
    assert!(matches!(
        check(&d, &top, &expected, &BaseLayers::Image(missing)),
        Err(BuildError::BaseImageMissing { .. })
    ));
    real_image_matches_the_lock(&d);
}

/// With `TORCHENV_TEST_IMAGE` (a `torchenv/<env>` image built from this
/// repository's spec + lock): it passes, its first layer being the lock's
/// root file system. The inputs and harness labels depend on the harness
/// binary it was built with, so those two are left out.
fn real_image_matches_the_lock(d: &Docker) {
    let Ok(tag) = std::env::var("TORCHENV_TEST_IMAGE") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = xtask::spec::Spec::load(&root.join(xtask::spec::SPEC_FILE)).unwrap();
    let lock_path = std::env::var_os("TORCHENV_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(xtask::lock::LOCK_FILE));
    let lock = xtask::lock::Lock::read(&lock_path).unwrap();
    let image = inspect(d, &tag);
    let labels = image
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap();
    let env = spec.env(labels.get(ENV_LABEL).map(String::as_str)).unwrap();
    let plan = xtask::build::image::plan(&spec, &lock, env, None).unwrap();
    let mut expected = plan.labels.clone();
    expected.remove(xtask::build::image::LABEL_INPUTS);
    expected.remove(xtask::build::image::LABEL_HARNESS);
    rt().block_on(verify(d, &tag, &image, &expected, &plan.base_layers))
        .unwrap_or_else(|e| panic!("{tag} against {}: {e}", lock_path.display()));
}
