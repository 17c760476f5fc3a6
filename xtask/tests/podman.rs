//! torchenv on rootless Podman, for real: Debian's `podman`, its
//! Docker-compatible service started by this test as a non-root user
//! (`podman system service`, the socket at
//! `$XDG_RUNTIME_DIR/podman/podman.sock`), and a copy of the built `xtask`
//! binary run as that user with no `DOCKER_HOST`, so it finds the socket
//! itself. It proves that
//! - `doctor` names the engine (Podman, rootless) and that its GPUs are
//!   off (Podman 4.3's API drops device requests), and `check --gpus all`
//!   is refused saying why instead of running without GPUs;
//! - `load` brings the environment's image (a `bundle` of the Docker
//!   engine's) into Podman, checked like on Docker;
//! - `up` starts the real environment with Jupyter and SSH ready, `status`
//!   lists it, a file `dev` writes in `/workspace` belongs to the user on
//!   the host (the `keep-id` user namespace), `check` passes against the
//!   baselines, and `down` removes the container and keeps the workspace;
//! - for comparison, the same user's `up` of the same image on the Docker
//!   engine (both times are printed; no timing is asserted).
//!
//! The user `torchenv-podman` and its Podman store are kept between runs,
//! holding only the environment's current image: a different one is
//! removed before the new one is loaded (`userdel -r torchenv-podman`
//! removes it all). Needs root (users, `/dev/net/tun`), the Docker engine
//! with `TORCHENV_TEST_IMAGE`, and podman, uidmap and slirp4netns (`cargo
//! xtask test` installs them).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{repo, text};

const USER: &str = "torchenv-podman";

/// Whitespace and miette's frame removed (messages wrap anywhere).
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A user with a Podman API service of its own; the service is stopped on
/// drop (the user and its store stay).
struct RootlessPodman {
    user: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    runtime: PathBuf,
    service: Child,
}

/// Podman's storage for a user: the kernel's own overlayfs for rootless
/// users (Podman 4.3 falls back to the copying `vfs` driver without
/// fuse-overlayfs) in the default place.
const OVERLAY: &str = "[storage]\ndriver = \"overlay\"\n";

impl RootlessPodman {
    /// `user` (created when missing) with `storage` as its storage.conf,
    /// and its API service.
    fn start(user: &str, storage: &str) -> RootlessPodman {
        if id_of(user, "-u").is_none() {
            let st = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", user])
                .status()
                .expect("useradd (this test needs root)");
            assert!(st.success(), "useradd {user}");
        }
        let (uid, gid) = (id_of(user, "-u").unwrap(), id_of(user, "-g").unwrap());
        // Subordinate ids for the user namespace (useradd adds them where
        // login.defs says so; older setups need them added).
        for (file, flag) in [
            ("/etc/subuid", "--add-subuids"),
            ("/etc/subgid", "--add-subgids"),
        ] {
            let has = std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{user}:")));
            if !has {
                let first = 400_000 + 65_536 * (uid % 64);
                let range = format!("{first}-{}", first + 65_535);
                let st = Command::new("usermod")
                    .args([flag, &range, user])
                    .status()
                    .unwrap();
                assert!(st.success(), "usermod {flag}");
            }
        }
        // slirp4netns, rootless Podman's network, opens /dev/net/tun as the
        // user: world-usable on a stock Debian (udev), root-only on some VMs.
        let tun = Path::new("/dev/net/tun");
        if tun.exists() && std::fs::metadata(tun).unwrap().mode() & 0o006 != 0o006 {
            std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let home = PathBuf::from(format!("/home/{user}"));
        let conf = home.join(".config/containers");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("storage.conf"), storage).unwrap();
        chown_tree(&home.join(".config"), uid, gid);
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        std::fs::create_dir_all(runtime.join("podman")).unwrap();
        chown_tree(&runtime, uid, gid);
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        let sock = runtime.join("podman/podman.sock");
        let _ = std::fs::remove_file(&sock);
        let service = as_user(user, uid, gid, &home, &runtime, "podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman system service");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "no Podman socket at {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        RootlessPodman {
            user: user.to_string(),
            uid,
            gid,
            home,
            runtime,
            service,
        }
    }

    /// `program` as the user, with a login-like environment and no
    /// `DOCKER_HOST`.
    fn cmd(&self, program: &str) -> Command {
        as_user(
            &self.user,
            self.uid,
            self.gid,
            &self.home,
            &self.runtime,
            program,
        )
    }

    /// `podman ARGS` as the user (its CLI, for what the test inspects).
    fn podman(&self, args: &[&str]) -> Output {
        self.cmd("podman").args(args).output().unwrap()
    }

    /// The id of the image `reference` in the user's Podman store.
    fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.podman(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.status
            .success()
            .then(|| format!("sha256:{}", String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `program` run as uid/gid (setpriv: no PAM session, the child is the
/// program itself) with a clean environment.
fn as_user(user: &str, uid: u32, gid: u32, home: &Path, runtime: &Path, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("env")
        .arg("-i")
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .arg(format!("HOME={}", home.display()))
        .arg(format!("USER={user}"))
        .arg(format!("LOGNAME={user}"))
        .arg(format!("XDG_RUNTIME_DIR={}", runtime.display()))
        .arg(program)
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// The user's checkout: copies of the spec, lock, `images/` and
/// `fixtures/` in a folder of theirs (workspaces are created beside the
/// spec) and of the xtask binary.
struct Project {
    dir: PathBuf,
}

impl Project {
    fn new(pod: &RootlessPodman) -> Project {
        let dir = pod.home.join(format!("project-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for file in [xtask::spec::SPEC_FILE, xtask::lock::LOCK_FILE] {
            std::fs::copy(repo().join(file), dir.join(file)).unwrap();
        }
        for folder in ["images", "fixtures"] {
            let st = Command::new("cp")
                .arg("-r")
                .arg(repo().join(folder))
                .arg(&dir)
                .status()
                .unwrap();
            assert!(st.success(), "cp -r {folder}");
        }
        std::fs::copy(env!("CARGO_BIN_EXE_xtask"), dir.join("xtask")).unwrap();
        chown_tree(&dir, pod.uid, pod.gid);
        Project { dir }
    }

    /// `xtask ARGS` as the user in the project, with a cache and state of
    /// its own; `docker_host` set when given (else torchenv finds Podman).
    fn xtask(&self, pod: &RootlessPodman, docker_host: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = pod.cmd("env");
        cmd.arg(format!(
            "TORCHENV_CACHE={}",
            self.dir.join("cache").display()
        ))
        .arg(format!(
            "XDG_STATE_HOME={}",
            self.dir.join("state").display()
        ));
        if let Some(host) = docker_host {
            cmd.arg(format!("DOCKER_HOST={host}"));
        }
        let started = Instant::now();
        let out = cmd
            .arg(self.dir.join("xtask"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        eprintln!(
            "$ [{}{}] xtask {} ({:.1} s)\n-> {:?}\n{}",
            pod.user,
            docker_host
                .map(|h| format!(" DOCKER_HOST={h}"))
                .unwrap_or_default(),
            args.join(" "),
            started.elapsed().as_secs_f64(),
            out.status.code(),
            text(&out)
        );
        out
    }

    fn workspace(&self, env: &str) -> PathBuf {
        self.dir.join("workspace").join(env)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the user's containers (and their networks) of the test on
/// drop, on Podman and on Docker, whatever happened.
struct Containers<'a>(&'a RootlessPodman);

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        let mine = format!("label=dev.torchenv.owner={}", self.0.user);
        for (list, remove) in [
            (vec!["ps", "-aq", "--filter", &mine], vec!["rm", "-f", "-v"]),
            (
                vec!["network", "ls", "-q", "--filter", &mine],
                vec!["network", "rm"],
            ),
        ] {
            let podman = self.0.podman(&list);
            for id in String::from_utf8_lossy(&podman.stdout).split_whitespace() {
                let _ = self.0.podman(&[&remove[..], &[id]].concat());
            }
            let docker = Command::new("docker").args(&list).output().unwrap();
            for id in String::from_utf8_lossy(&docker.stdout).split_whitespace() {
                let _ = Command::new("docker").args(&remove).arg(id).output();
            }
        }
    }
}

/// Membership of the docker group, for the Docker comparison; left on
/// drop.
struct DockerGroup(&'static str);

impl DockerGroup {
    fn join(user: &'static str) -> DockerGroup {
        let st = Command::new("usermod")
            .args(["-aG", "docker", user])
            .status()
            .unwrap();
        assert!(st.success(), "usermod -aG docker {user}");
        DockerGroup(user)
    }

    fn leave(user: &str) {
        let _ = Command::new("gpasswd")
            .args(["-d", user, "docker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for DockerGroup {
    fn drop(&mut self) {
        DockerGroup::leave(self.0);
    }
}

/// The environment's image in the user's Podman store: kept from an
/// earlier run when it is the same image, else loaded with `xtask load`
/// from a bundle of the Docker engine's (after removing other torchenv
/// images of the store, so it holds one).
fn image_into_podman(pod: &RootlessPodman, project: &Project, tag: &str) {
    let id = common::image_id(tag).expect("the environment's image on the Docker engine");
    if pod.image_id(tag).as_deref() == Some(id.as_str()) {
        eprintln!("{tag} ({id}) is in the Podman store from an earlier run");
        return;
    }
    let stale = pod.podman(&[
        "images",
        "-q",
        "--filter",
        "label=dev.torchenv.managed-by=torchenv",
    ]);
    for old in String::from_utf8_lossy(&stale.stdout).split_whitespace() {
        let _ = pod.podman(&["rmi", "-f", old]);
    }
    // The bundle, written as root from the Docker engine, readable by the
    // user.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("env.bundle");
    let made = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bundle", "--out"])
        .arg(&file)
        .current_dir(repo())
        .env_remove("TORCHENV_IMAGE")
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert!(made.status.success(), "bundle: {}", text(&made));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = project.xtask(pod, None, &["load", file.to_str().unwrap()]);
    assert!(
        loaded.status.success(),
        "load into Podman: {}",
        text(&loaded)
    );
    assert_eq!(pod.image_id(tag).as_deref(), Some(id.as_str()));
}

#[test]
fn rootless_podman_load_up_check_down() {
    let tag = std::env::var("TORCHENV_TEST_IMAGE")
        .expect("TORCHENV_TEST_IMAGE: the default environment's image (cargo xtask test sets it)");
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let env = spec.env(None).unwrap().name.clone();
    let pod = RootlessPodman::start(USER, OVERLAY);
    // Out of the docker group (a failed run may have left it there): the
    // Docker socket would come first.
    DockerGroup::leave(USER);
    let project = Project::new(&pod);
    let _containers = Containers(&pod);

    // Which engine: found without DOCKER_HOST, named by doctor.
    let doctor = project.xtask(&pod, None, &["doctor"]);
    let said = squash(&String::from_utf8_lossy(&doctor.stdout));
    assert!(said.contains("okPodman4.3"), "{}", text(&doctor));
    assert!(said.contains("(rootless,API"), "{}", text(&doctor));
    assert!(said.contains("keep-idusernamespace"), "{}", text(&doctor));
    assert!(
        said.contains("dropsGPU(device)requests"),
        "{}",
        text(&doctor)
    );

    image_into_podman(&pod, &project, &tag);

    // GPUs asked of an engine that would drop them: refused, saying why.
    let gpus = project.xtask(&pod, None, &["check", "--no-build", "--gpus", "all"]);
    assert_eq!(
        gpus.status.code(),
        Some(i32::from(xtask::exit::GPU_UNAVAILABLE)),
        "{}",
        text(&gpus)
    );
    assert!(
        squash(&text(&gpus)).contains("hastheDocker-compatibleAPIofPodman4.3.1,whichdropsGPU"),
        "{}",
        text(&gpus)
    );

    let started = Instant::now();
    let up = project.xtask(&pod, None, &["up", "--auto-ports", "--timeout", "300"]);
    let podman_up = started.elapsed();
    assert!(up.status.success(), "up on Podman: {}", text(&up));
    let out = text(&up);
    assert!(out.contains("Jupyter"), "{out}");
    assert!(out.contains("ssh "), "{out}");
    let container = format!("torchenv-{env}-{USER}");
    let ps = pod.podman(&["ps", "--format", "{{.Names}}"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|n| n == container),
        "{}",
        text(&ps)
    );

    let status = project.xtask(&pod, None, &["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        listed.iter().any(|c| c.to_string().contains(&container)),
        "{listed:?}"
    );

    // `dev` writes in /workspace; on the host the file is the user's.
    let exec = project.xtask(
        &pod,
        None,
        &[
            "exec",
            &env,
            "--",
            "sh",
            "-c",
            "id -u; echo hello > /workspace/from-podman.txt",
        ],
    );
    assert!(exec.status.success(), "{}", text(&exec));
    let written = project.workspace(&env).join("from-podman.txt");
    let meta = std::fs::metadata(&written).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (pod.uid, pod.gid),
        "{} belongs to the user on the host",
        written.display()
    );

    let check = project.xtask(&pod, None, &["check", "--device", "cpu"]);
    assert!(check.status.success(), "check on Podman: {}", text(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("eval efficientnet_lite0: pass"));

    let down = project.xtask(&pod, None, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    let ps = pod.podman(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&container),
        "{}",
        text(&ps)
    );
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "hello\n");

    // The same user, image and spec on the Docker engine, for the times.
    let docker_host = "unix:///var/run/docker.sock";
    let _docker = DockerGroup::join(USER);
    let started = Instant::now();
    let up = project.xtask(
        &pod,
        Some(docker_host),
        &["up", "--auto-ports", "--timeout", "300"],
    );
    let docker_up = started.elapsed();
    let down = project.xtask(&pod, Some(docker_host), &["down"]);
    assert!(up.status.success(), "up on Docker: {}", text(&up));
    assert!(down.status.success(), "{}", text(&down));
    eprintln!(
        "up of {env} with Jupyter and SSH ready: Podman {:.1} s, Docker {:.1} s",
        podman_up.as_secs_f64(),
        docker_up.as_secs_f64()
    );
}

/// A user removed with its home (and what is mounted there) on drop.
struct Throwaway(&'static str);

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-u", self.0]).status();
        std::thread::sleep(Duration::from_millis(500));
        let store = format!("/home/{}/store", self.0);
        let _ = Command::new("umount").arg(&store).status();
        let _ = Command::new("userdel")
            .args(["--remove", "--force", self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// `load` into a Podman whose storage fills up half-way: a clear error
/// naming the full disk, and nothing of the image left in the store
/// (nothing tagged, no dangling image) nor weights in the cache. The
/// bundle is honest in all but content (a tiny image with the
/// environment's labels and tag), so every check before the engine passes.
#[test]
fn a_full_disk_while_loading_into_podman_is_a_clear_error_and_leaves_nothing() {
    const FULL: &str = "torchenv-podfull";
    let _user = Throwaway(FULL);
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&repo().join(xtask::lock::LOCK_FILE)).unwrap();
    let env = spec.env(None).unwrap().clone();
    let labels = xtask::build::image::shared_labels(&spec, &lock, &env).unwrap();

    // The user's Podman store on a 64 MiB file system of its own.
    let st = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/sh", FULL])
        .status()
        .unwrap();
    assert!(st.success(), "useradd {FULL}");
    let (uid, gid) = (id_of(FULL, "-u").unwrap(), id_of(FULL, "-g").unwrap());
    let store = PathBuf::from(format!("/home/{FULL}/store"));
    std::fs::create_dir_all(&store).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size=64m,mode=0700,uid={uid},gid={gid}"))
        .arg("tmpfs")
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs (needs root)");
    let storage = format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\n",
        store.display()
    );
    let pod = RootlessPodman::start(FULL, &storage);
    let project = Project::new(&pod);
    // Podman has made its database; now leave it less than a MiB.
    let info = pod.podman(&["info", "--format", "{{.Store.GraphRoot}}"]);
    assert!(info.status.success(), "{}", text(&info));
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        store.to_str().unwrap()
    );
    let ballast = store.join("ballast");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if=/dev/zero of={} bs=64k 2>/dev/null; truncate -s -768k {0}",
            ballast.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());

    // A bundle of a tiny image carrying the environment's tag and labels.
    let tag = format!("torchenv/{}:full{}", env.name, std::process::id());
    let changes: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("LABEL {k}={}", serde_json::to_string(v).unwrap()))
        .collect();
    let tiny = common::tiny_image::TinyImage::new(tag.clone(), &[], &changes);
    let id = common::image_id(&tiny.tag).unwrap();
    let manifest = xtask::share::bundle::Manifest {
        format: 1,
        env: env.name.clone(),
        tag: tag.clone(),
        image_id: id,
        labels,
        lock: serde_json::Value::Null,
        weights: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("env.bundle");
    common::bundle::fake_bundle(&file, &manifest, &tiny.tag);
    drop(tiny);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let loaded = project.xtask(&pod, None, &["load", file.to_str().unwrap()]);
    assert_eq!(loaded.status.code(), Some(1), "{}", text(&loaded));
    let said = squash(&String::from_utf8_lossy(&loaded.stderr)).to_lowercase();
    assert!(
        said.contains("theengineranoutofdiskspace"),
        "{}",
        text(&loaded)
    );
    assert!(said.contains("nospaceleftondevice"), "{}", text(&loaded));
    let images = pod.podman(&[
        "images",
        "-a",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]);
    assert!(images.status.success(), "{}", text(&images));
    assert_eq!(
        String::from_utf8_lossy(&images.stdout).trim(),
        "",
        "nothing loaded, tagged or dangling"
    );
    assert!(!project.dir.join("cache/models").exists());
}
