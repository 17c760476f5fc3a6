//! Team sharing through a real registry: Debian's `docker-registry`
//! (distribution 2.8), started by each test on 127.0.0.1 with its own
//! storage. `push` → `docker image rm` → `up` pulls instead of building →
//! `check` passes on the pulled image; other content under the
//! environment's registry name is refused and nothing stays tagged; an
//! unreachable registry and wrong credentials are clear errors.
//!
//! `push_rm_up_pulls_and_check_passes` removes the default environment's
//! image tag, which other tests use, so `cargo xtask test` runs it alone.
//! Its registry keeps its storage in the cache (`<cache>/test-registry`,
//! emptied when the environment's image changes; `prune --all` removes
//! it), so a warm run pushes no layer again.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tiny_image::TinyImage;
use common::{image_id, repo, said, text, var};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// A registry on 127.0.0.1, stopped on drop.
struct Registry {
    child: Child,
    address: String,
    _config: tempfile::TempDir,
}

impl Registry {
    /// Serves `storage`; with `htpasswd`, only that user (bcrypt) gets in.
    fn start(storage: &Path, htpasswd: Option<(&str, &str)>) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = tempfile::tempdir().unwrap();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = htpasswd {
            let file = config.path().join("htpasswd");
            let hash = bcrypt::hash(password, 5).unwrap();
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: torchenv-test\n    path: {}\n",
                file.display()
            ));
        }
        let path = config.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package; `cargo xtask test` installs it)");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            address,
            _config: config,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(XTASK);
    cmd.args(args)
        .current_dir(repo())
        .env_remove("TORCHENV_IMAGE")
        .env_remove("TORCHENV_REGISTRY")
        .env_remove("TORCHENV_HOST_HARNESS")
        .stdin(Stdio::null());
    cmd
}

fn default_env() -> (xtask::spec::Spec, xtask::lock::Lock, xtask::spec::Env) {
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&repo().join(xtask::lock::LOCK_FILE)).unwrap();
    let env = spec.env(None).unwrap().clone();
    (spec, lock, env)
}

/// The suite's registry storage, emptied when it holds another image id.
fn cached_storage(image_id: &str) -> PathBuf {
    let dir = xtask::cache::root().join("test-registry");
    let marker = dir.join("image-id");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(image_id) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        std::fs::write(&marker, image_id).unwrap();
    }
    dir.join("storage")
}

/// Pulls the environment's image back when a failed test left it missing.
struct Restore {
    tag: String,
    registry: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if image_id(&self.tag).is_none() {
            let _ = xtask(&["pull", "--registry", &self.registry]).output();
        }
    }
}

#[test]
fn push_rm_up_pulls_and_check_passes() {
    let tag = var("TORCHENV_TEST_IMAGE");
    let id = image_id(&tag).expect("the suite built the default image");
    let registry = Registry::start(&cached_storage(&id), None);
    let started = Instant::now();
    let pushed = xtask(&["push", "--registry", &registry.address])
        .output()
        .unwrap();
    assert!(pushed.status.success(), "push: {}", text(&pushed));
    eprintln!("push: {:.1} s", started.elapsed().as_secs_f64());
    let _restore = Restore {
        tag: tag.clone(),
        registry: registry.address.clone(),
    };
    let rm = Command::new("docker")
        .args(["image", "rm", &tag])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    assert_eq!(image_id(&tag), None);

    // `up` with the registry configured pulls instead of building.
    let state = tempfile::tempdir().unwrap();
    let up = xtask(&["up"])
        .env("TORCHENV_REGISTRY", &registry.address)
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    let down = xtask(&["down"])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert!(up.status.success(), "up: {}", text(&up));
    assert!(down.status.success(), "down: {}", text(&down));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(log.contains("pulling "), "{log}");
    assert!(!log.contains("building"), "no build step: {log}");
    assert_eq!(image_id(&tag).as_deref(), Some(id.as_str()), "{log}");

    let check = xtask(&["check", "--device", "cpu"])
        .env("TORCHENV_REGISTRY", &registry.address)
        .output()
        .unwrap();
    assert!(check.status.success(), "check: {}", text(&check));
}

#[test]
fn other_content_under_the_registry_name_is_refused_and_nothing_stays_tagged() {
    let (spec, lock, env) = default_env();
    let storage = tempfile::tempdir().unwrap();
    let registry = Registry::start(storage.path(), None);
    let remote =
        xtask::build::image::registry_reference(&spec, &lock, &env, &registry.address).unwrap();
    // Same name and every label the image must have; other layers.
    let labels = xtask::build::image::shared_labels(&spec, &lock, &env).unwrap();
    let changes: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("LABEL {k}={}", serde_json::to_string(v).unwrap()))
        .collect();
    let tiny = TinyImage::new(remote.clone(), &[], &changes);
    let push = Command::new("docker")
        .args(["push", &tiny.tag])
        .output()
        .unwrap();
    assert!(push.status.success(), "{}", text(&push));
    drop(tiny);
    // Ids in a fixed order: the engine lists images of one creation time
    // (every torchenv image has the lock's) in any order.
    let ids = || {
        let out = Command::new("docker")
            .args(["images", "-q", &format!("torchenv/{}", env.name)])
            .output()
            .unwrap()
            .stdout;
        let mut ids: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let before = ids();

    let o = xtask(&["pull", "--registry", &registry.address])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(said(&o).contains("RootFS.Layers"), "{}", said(&o));
    assert_eq!(image_id(&remote), None, "the pulled image is untagged");
    assert_eq!(before, ids(), "no torchenv tag was added or moved");

    // Nothing under that name at all: a miss, said as such.
    let empty = tempfile::tempdir().unwrap();
    let other = Registry::start(empty.path(), None);
    let o = xtask(&["pull", "--registry", &other.address])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(said(&o).contains("has no image of"), "{}", said(&o));
}

#[test]
fn an_unreachable_registry_and_wrong_credentials_are_clear_errors() {
    // Nothing listens on a port just closed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{closed}");
    let o = xtask(&["pull", "--registry", &address]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = said(&o);
    assert!(
        s.contains(&format!("registry {address}: pull failed")),
        "{s}"
    );
    assert!(s.contains("up and reachable"), "{s}");

    let storage = tempfile::tempdir().unwrap();
    let registry = Registry::start(storage.path(), Some(("alice", "right")));
    let config = tempfile::tempdir().unwrap();
    let auth = base64_encode("alice:wrong");
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let o = xtask(&["pull", "--registry", &registry.address])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = said(&o);
    assert!(s.contains("docker login"), "{s}");
}

/// The spec's `registry:` is the registry when neither `--registry` nor
/// `TORCHENV_REGISTRY` names one; `TORCHENV_REGISTRY=` turns it off, and a
/// malformed `TORCHENV_REGISTRY` is refused naming it.
#[test]
fn the_spec_names_the_registry_unless_the_environment_overrides_it() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{closed}");
    // A checkout whose spec names a registry nothing listens at.
    let checkout = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("environments.yaml")).unwrap();
    let spec = spec.replacen("\ndefault:", &format!("\nregistry: {address}\ndefault:"), 1);
    std::fs::write(checkout.path().join("environments.yaml"), spec).unwrap();
    std::fs::copy(
        repo().join("environments.lock"),
        checkout.path().join("environments.lock"),
    )
    .unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(repo().join("images"))
        .arg(checkout.path())
        .status()
        .unwrap();
    assert!(st.success());
    let pull = || {
        let mut c = xtask(&["pull", "--spec"]);
        c.arg(checkout.path().join("environments.yaml"))
            .env_remove("TORCHENV_LOCK");
        c
    };

    let o = pull().output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = said(&o);
    assert!(
        s.contains(&format!("registry {address}: pull failed")),
        "{s}"
    );

    let o = pull().env("TORCHENV_REGISTRY", "").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(said(&o).contains("no registry"), "{}", said(&o));

    let o = pull()
        .env("TORCHENV_REGISTRY", "https://127.0.0.1:5000")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let s = said(&o);
    assert!(
        s.contains("TORCHENV_REGISTRY `https://127.0.0.1:5000` has a scheme"),
        "{s}"
    );
}

fn base64_encode(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &x| acc << 8 | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
