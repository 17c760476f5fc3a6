//! Faults against the real Docker engine (no mocks): torchenv fails cleanly
//! and a rerun succeeds. Each case checks the exit code and that the
//! message names the cause, that nothing half-made is left (no container
//! but the environment's one, no half-tagged image, no report folder), and
//! that data in the workspace and named volumes survives.
//!
//! The faults are real: `DOCKER_HOST` naming no socket, a socket nobody
//! listens on and one that never answers (a hung daemon); a unix-socket
//! [`Proxy`] in front of the engine that cuts every connection when it sees
//! a given request (or answer) — in `status`, at three points of `up`, in
//! the middle of an image build; `docker kill` of the harness's container
//! during `check`, and SIGTERM to `check` itself; two `up`s at once; a full
//! tmpfs workspace; truncated weights for `eval` and `check`.
//!
//! Conventions of `launch.rs`: the built `xtask` binary runs as a
//! subprocess on temporary specs with unique environment names and free
//! ports, as `USER=tlaunch`, `TORCHENV_UID/GID=1234`, with state in a temp
//! `XDG_STATE_HOME`; every subprocess has a time limit (a hang fails the
//! test); Drop guards remove containers, volumes, images, mounts and temp
//! folders, also when a test fails.
//!
//! Needs what `cargo xtask test` sets: `TORCHENV_TEST_IMAGE` (the default
//! environment's image, with its harness; else it is built, as for
//! `launch.rs`) and `TORCHENV_LOCK`;
//! `TORCHENV_TEST_WEIGHTS` (Lite0 weights) is optional (else the locked
//! weights from the cache). The build case rebuilds only the last layer of
//! that image (the harness), so it needs the default environment's base and
//! stage images in the engine (`cargo xtask build`). Runs as root (tmpfs).

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::testenv::{lock_path, rt, test_image, who, Opts, TestEnv};

const MODEL: &str = "efficientnet_lite0";
/// How long an `up` may take (the readiness wait is 120 s at most).
const UP_LIMIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Lite0 weights: `TORCHENV_TEST_WEIGHTS`, else the locked ones.
fn weights() -> &'static Path {
    static WEIGHTS: OnceLock<PathBuf> = OnceLock::new();
    WEIGHTS.get_or_init(|| match std::env::var_os("TORCHENV_TEST_WEIGHTS") {
        Some(w) if !w.is_empty() => PathBuf::from(w),
        _ => {
            let lock = xtask::lock::Lock::read(&lock_path()).unwrap();
            xtask::build::weights::weights_path(&lock, MODEL).unwrap()
        }
    })
}

fn fixtures() -> PathBuf {
    std::fs::canonicalize(repo().join("fixtures/images")).unwrap()
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ft{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The `xtask` binary, told where the lock is.
fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env("TORCHENV_LOCK", lock_path())
        .env_remove("TORCHENV_IMAGE")
        .env_remove("TORCHENV_HOST_HARNESS");
    c
}

/// `text` without whitespace and miette's frame characters: a message
/// miette wrapped (at 80 columns when not on a terminal, also inside a
/// long path) still contains what it names.
fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !"│├╰─▶×".contains(*c))
        .collect()
}

/// A finished subprocess.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "exit {:?} after {:.1} s\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// Whether stderr names `what` (wrapped or not).
    fn names(&self, what: &str) -> bool {
        squash(&self.stderr).contains(&squash(what))
    }
}

/// A started subprocess whose output is collected as it comes; killed
/// when dropped unfinished (a failing test leaves nothing running).
struct Running {
    what: String,
    child: Child,
    started: Instant,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

fn collect(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut pipe = pipe;
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn start(mut cmd: Command) -> Running {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    Running {
        out: Some(collect(child.stdout.take().unwrap())),
        err: Some(collect(child.stderr.take().unwrap())),
        what,
        child,
        started: Instant::now(),
    }
}

impl Running {
    fn finished(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits at most `limit`; a process still running then is killed and
    /// the test fails (a hang is a failure, not a slow pass).
    fn wait(mut self, limit: Duration) -> Ran {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let ran = Ran {
            code: status.and_then(|s| s.code()),
            took: self.started.elapsed(),
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
        };
        eprintln!("$ {}\n{}", self.what, ran.text());
        assert!(
            status.is_some(),
            "did not finish within {limit:?} (hang): {}\n{}",
            self.what,
            ran.text()
        );
        ran
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run(cmd: Command, limit: Duration) -> Ran {
    start(cmd).wait(limit)
}

/// The docker CLI (an observer independent of torchenv's client); its
/// stdout, trimmed. Fails the test when docker fails.
fn docker(args: &[&str]) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let ran = run(cmd, Duration::from_secs(120));
    assert_eq!(ran.code, Some(0), "docker {args:?}: {}", ran.stderr);
    ran.stdout.trim().to_string()
}

/// [`docker`], `None` when it fails.
fn try_docker(args: &[&str]) -> Option<String> {
    let o = Command::new("docker").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn lines(s: String) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// Every container (running or not) matching `filters` (`label=…`,
/// `status=…`): ids.
fn containers(filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "-a", "-q"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    lines(docker(&args))
}

/// The engine's socket the proxy forwards to.
fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// What the fault tests add to the shared [`TestEnv`].
impl TestEnv {
    fn up_cmd(&self) -> Command {
        self.cmd(&["up", "--image", test_image(), "--timeout", "120"])
    }

    fn up_within_limit(&self) -> Ran {
        run(self.up_cmd(), UP_LIMIT)
    }

    /// Every container of the environment, one-shot ones included.
    fn containers(&self) -> Vec<String> {
        containers(&[&format!("label=dev.torchenv.env={}", self.name)])
    }

    /// The environment's one container, by name: exactly one exists.
    fn assert_one_container(&self) {
        let all = self.containers();
        assert_eq!(all.len(), 1, "containers of {}: {all:?}", self.name);
        let name = docker(&["inspect", "-f", "{{.Name}}", &all[0]]);
        assert_eq!(name.trim_start_matches('/'), self.container());
    }

    /// `exec ENV -- sh -c SCRIPT`, as the container user; its stdout.
    fn exec(&self, script: &str) -> String {
        let ran = run(
            self.cmd(&["exec", &self.name, "--", "sh", "-c", script]),
            Duration::from_secs(60),
        );
        assert_eq!(ran.code, Some(0), "{}", ran.text());
        ran.stdout
    }
}

/// Data the environment had before the fault: a workspace file, and a file
/// in its named volume (the volume made as `up` makes it, with its labels,
/// and written by a throwaway container of the test image).
fn seed_data(t: &TestEnv) {
    std::fs::create_dir_all(&t.workspace).unwrap();
    std::fs::write(t.workspace.join("keep.txt"), "workspace data\n").unwrap();
    let mut labels = vec![
        format!(
            "{}={}",
            xtask::docker::LABEL_MANAGED_BY,
            xtask::docker::MANAGED_BY
        ),
        format!("{}={}", xtask::docker::LABEL_ENV, t.name),
    ];
    labels.extend(
        xtask::launch::owner::labels(&who())
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let mut args = vec!["volume", "create"];
    for l in &labels {
        args.extend(["--label", l.as_str()]);
    }
    let volume = t.volume();
    args.push(&volume);
    docker(&args);
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "-v",
        &format!("{}:/data", t.volume()),
        test_image(),
        "-c",
        "echo volume data > /data/keep.txt",
    ]);
}

/// Both files of [`seed_data`] are intact, seen from inside the container.
fn assert_data_survived(t: &TestEnv) {
    assert_eq!(
        std::fs::read_to_string(t.workspace.join("keep.txt")).unwrap(),
        "workspace data\n"
    );
    let seen = t.exec("cat /workspace/keep.txt /data/keep.txt");
    assert_eq!(seen, "workspace data\nvolume data\n");
}

/// Where a [`Proxy`] cuts: every open connection is closed and nothing
/// more is accepted.
#[derive(Clone, Copy)]
enum Cut {
    /// When the client sends a request whose request line matches; that
    /// request never reaches the engine.
    Request(fn(&str) -> bool),
}

/// A unix-socket proxy in front of the engine that cuts every connection
/// at a [`Cut`]: after that its socket is gone, as a dead daemon's is.
struct Proxy {
    path: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    cut: Cut,
    killed: AtomicBool,
    /// Open sockets (both ends of every connection), closed by the cut.
    open: Mutex<Vec<UnixStream>>,
    /// Every request line seen, in order.
    requests: Mutex<Vec<String>>,
    /// What triggered the cut.
    fired: Mutex<Option<String>>,
}

impl Proxy {
    fn start(path: &Path, cut: Cut) -> Proxy {
        let listener = UnixListener::bind(path).unwrap();
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            cut,
            killed: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            fired: Mutex::new(None),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.killed.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(engine)) = (client, UnixStream::connect(engine_socket()))
                else {
                    continue;
                };
                if !s.register(&[&client, &engine]) {
                    break;
                }
                let (c2, e2) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (s1, s2) = (s.clone(), s.clone());
                std::thread::spawn(move || pump(client, engine, &s1, true));
                std::thread::spawn(move || pump(e2, c2, &s2, false));
            }
        });
        Proxy {
            path: path.to_path_buf(),
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn address(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// What the cut fired on, if it did.
    fn fired(&self) -> Option<String> {
        self.shared.fired.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Shared {
    /// Keeps `streams` to close at the cut; false (and closed) after it.
    fn register(&self, streams: &[&UnixStream]) -> bool {
        let mut open = self.open.lock().unwrap();
        let killed = self.killed.load(Ordering::SeqCst);
        for s in streams {
            if killed {
                let _ = s.shutdown(Shutdown::Both);
            } else {
                open.push(s.try_clone().unwrap());
            }
        }
        !killed
    }

    /// Closes every connection and the listening socket.
    fn kill(&self, why: &str) {
        let mut open = self.open.lock().unwrap();
        if self.killed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.fired.lock().unwrap().get_or_insert(why.to_string());
        for s in open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(open);
        // Wake the acceptor (it sees `killed` and drops the listener), then
        // remove the socket: a new connection finds nothing there.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Forwards `from` → `to` until either closes; `request`: the client's
/// direction (request lines are read there), else the engine's answers.
fn pump(mut from: UnixStream, mut to: UnixStream, s: &Shared, request: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    // The unfinished last line of what came before (bounded: bodies).
    let mut carry = String::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let text = carry.clone() + &String::from_utf8_lossy(&buf[..n]);
        let (complete, rest) = text.rsplit_once('\n').unwrap_or(("", &text));
        let rest: String = rest.chars().rev().take(4096).collect();
        carry = rest.chars().rev().collect();
        if request {
            for line in complete.lines().map(str::trim_end) {
                if !line.ends_with(" HTTP/1.1") {
                    continue;
                }
                s.requests.lock().unwrap().push(line.to_string());
                let Cut::Request(hit) = s.cut;
                if hit(line) {
                    return s.kill(line);
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.kill("the test ended");
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// A socket something listens on but never answers (a hung daemon).
struct Silent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn bind(path: &Path) -> Silent {
        let listener = UnixListener::bind(path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                held.extend(c.ok());
            }
        });
        Silent {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `up`, `status` and `build` with `DOCKER_HOST` naming no socket, a
/// socket nobody listens on, and one that never answers: each exits 3 with
/// a message naming the address, in seconds, having created nothing.
#[test]
fn unreachable_daemon_fails_fast_naming_the_address() {
    let t = TestEnv::with("unreach", Opts::default());
    let dead = t.dir.path().join("dead.sock");
    drop(UnixListener::bind(&dead).unwrap()); // the file stays; nobody listens
    let hung = t.dir.path().join("hung.sock");
    let _hung = Silent::bind(&hung);
    let handshake = xtask::docker::HANDSHAKE_TIMEOUT;
    let fast = Duration::from_secs(10);
    let addresses = [
        (PathBuf::from("/nonexistent.sock"), fast),
        (dead, fast),
        (hung, handshake + fast),
    ];
    let mut started = Vec::new();
    for (socket, limit) in &addresses {
        let host = format!("unix://{}", socket.display());
        let mut build = xtask();
        build
            .arg("--spec")
            .arg(repo().join(xtask::spec::SPEC_FILE))
            .arg("build");
        for mut cmd in [t.cmd(&["up"]), t.cmd(&["status"]), build] {
            cmd.env("DOCKER_HOST", &host);
            started.push((socket.clone(), *limit, start(cmd)));
        }
    }
    for (socket, limit, running) in started {
        let ran = running.wait(limit + Duration::from_secs(30));
        assert_eq!(ran.code, Some(3), "{}", ran.text());
        let shown = socket.display().to_string();
        assert!(ran.names(&shown), "does not name {shown}: {}", ran.text());
        assert!(
            ran.names("cannot reach the Docker engine"),
            "{}",
            ran.text()
        );
        assert!(
            ran.took < limit,
            "took {:?} (limit {limit:?}): {}",
            ran.took,
            ran.text()
        );
    }
    assert_eq!(t.containers(), Vec::<String>::new());
}

/// The proxy is faithful until it cuts: `status` through it works; cut
/// at the container listing, `status` exits 3 naming the proxy's address.
#[test]
fn proxy_forwards_and_a_cut_mid_status_is_a_clear_error() {
    let t = TestEnv::with("proxy", Opts::default());
    let is_list = |l: &str| l.starts_with("GET ") && l.contains("/containers/json");
    let never = |_: &str| false;
    let proxy = Proxy::start(&t.dir.path().join("open.sock"), Cut::Request(never));
    let mut cmd = t.cmd(&["status", "--json"]);
    cmd.env("DOCKER_HOST", proxy.address());
    let ran = run(cmd, Duration::from_secs(60));
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    assert!(
        proxy.requests().iter().any(|l| is_list(l)),
        "{:?}",
        proxy.requests()
    );

    let proxy = Proxy::start(&t.dir.path().join("cut.sock"), Cut::Request(is_list));
    let mut cmd = t.cmd(&["status"]);
    cmd.env("DOCKER_HOST", proxy.address());
    let ran = run(cmd, Duration::from_secs(60));
    assert!(proxy.fired().is_some());
    assert_eq!(ran.code, Some(3), "{}", ran.text());
    assert!(ran.names(&proxy.address()), "{}", ran.text());
    assert!(ran.names("lost the connection"), "{}", ran.text());
    assert!(ran.took < Duration::from_secs(10), "{}", ran.text());
}

/// `up` through a [`Proxy`] that cuts at `cut`: exit 3 naming the proxy's
/// address, `after_cut` containers of the environment right after the cut;
/// then `up` against the engine itself succeeds with `action`, leaving
/// exactly one container, and the workspace and volume data are intact.
fn cut_mid_up(tag: &str, cut: Cut, after_cut: usize, action: &str) {
    let t = TestEnv::with(
        tag,
        Opts {
            volume: true,
            ..Opts::default()
        },
    );
    seed_data(&t);
    let proxy = Proxy::start(&t.dir.path().join("proxy.sock"), cut);
    let mut cmd = t.up_cmd();
    cmd.env("DOCKER_HOST", proxy.address());
    let ran = run(cmd, UP_LIMIT);
    let fired = proxy.fired();
    assert!(
        fired.is_some(),
        "the proxy never cut; requests: {:#?}\n{}",
        proxy.requests(),
        ran.text()
    );
    eprintln!("cut at: {fired:?}");
    assert_eq!(ran.code, Some(3), "{}", ran.text());
    assert!(ran.names(&proxy.address()), "{}", ran.text());
    assert!(ran.names("lost the connection"), "{}", ran.text());
    let left = t.containers();
    assert_eq!(left.len(), after_cut, "after the cut: {left:?}");

    let ran = t.up_within_limit();
    assert_eq!(ran.code, Some(0), "rerun: {}", ran.text());
    assert!(
        ran.stdout.contains(&format!("is ready ({action},")),
        "expected `{action}`: {}",
        ran.text()
    );
    t.assert_one_container();
    assert_data_survived(&t);
}

fn is_create(line: &str) -> bool {
    line.starts_with("POST ") && line.contains("/containers/create")
}

fn is_start(line: &str) -> bool {
    line.starts_with("POST ") && line.contains("/containers/") && line.contains("/start")
}

fn is_exec_create(line: &str) -> bool {
    line.starts_with("POST ") && line.contains("/containers/") && line.contains("/exec")
}

/// The create request never reaches the engine: nothing is left, the
/// rerun creates the container.
#[test]
fn cut_before_create_leaves_nothing_and_a_rerun_creates() {
    cut_mid_up("cutcreate", Cut::Request(is_create), 0, "created");
}

/// Created but never started: the rerun starts that container (no
/// second one).
#[test]
fn cut_before_start_leaves_the_container_and_a_rerun_starts_it() {
    cut_mid_up("cutstart", Cut::Request(is_start), 1, "started");
}

/// Started, cut while waiting for readiness (at the SSH probe's exec):
/// the rerun finds it running.
#[test]
fn cut_while_waiting_for_ready_and_a_rerun_finds_it_running() {
    cut_mid_up(
        "cutready",
        Cut::Request(is_exec_create),
        1,
        "already running",
    );
}

/// Removes an image tag (and the layers only it used) on drop.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", &self.0]).output();
    }
}

/// Images (tagged or not) carrying `label`.
fn images_labelled(label: &str) -> Vec<String> {
    lines(docker(&[
        "images",
        "-a",
        "-q",
        "--filter",
        &format!("label={label}"),
    ]))
}

fn image_exists(reference: &str) -> bool {
    try_docker(&["image", "inspect", reference]).is_some()
}

/// `xtask build` of the default environment with `harness`.
fn build_with(harness: &Path) -> Command {
    let mut c = xtask();
    c.arg("--spec")
        .arg(repo().join(xtask::spec::SPEC_FILE))
        .arg("build")
        .arg("--harness")
        .arg(harness);
    c
}

/// A real build of the default environment's image whose only new layer
/// is the harness (a harness file unique to this run; base and stage images
/// are there), its connection cut when the client sends the final image's
/// archive (`POST /images/load`): exit 3 naming the address and the image,
/// no image tagged or carrying the build's inputs label. The rerun builds
/// and tags it; once its tag is removed, no image of either build is left.
#[test]
fn connection_cut_mid_build_tags_nothing_and_a_rerun_builds() {
    let dir = tempfile::tempdir().unwrap();
    let harness = dir.path().join("harness");
    std::fs::write(&harness, format!("#!/bin/sh\n# {}\n", unique("build"))).unwrap();
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&lock_path()).unwrap();
    let plan =
        xtask::build::image::plan(&spec, &lock, spec.env(None).unwrap(), Some(&harness)).unwrap();
    for needed in [&plan.base_image, &plan.venv_tag, &plan.system_tag] {
        assert!(
            image_exists(needed),
            "{needed} missing: run `cargo xtask build` first"
        );
    }
    let _remove = RemoveImage(plan.tag.clone());
    let inputs = format!("{}={}", xtask::build::image::LABEL_INPUTS, plan.inputs);
    let is_load = |l: &str| l.starts_with("POST ") && l.contains("/images/load");
    let proxy = Proxy::start(&dir.path().join("proxy.sock"), Cut::Request(is_load));
    let mut cmd = build_with(&harness);
    cmd.env("DOCKER_HOST", proxy.address());
    let ran = run(cmd, Duration::from_secs(600));
    assert!(
        proxy.fired().is_some(),
        "never cut: {:#?}",
        proxy.requests()
    );
    assert_eq!(ran.code, Some(3), "{}", ran.text());
    assert!(ran.names(&proxy.address()), "{}", ran.text());
    assert!(ran.names(&plan.tag), "names the image: {}", ran.text());
    assert!(
        !image_exists(&plan.tag),
        "{} was tagged after the cut",
        plan.tag
    );
    assert_eq!(
        images_labelled(&inputs),
        Vec::<String>::new(),
        "an untagged finished image"
    );

    let ran = run(build_with(&harness), Duration::from_secs(600));
    assert_eq!(ran.code, Some(0), "rerun: {}", ran.text());
    assert!(
        ran.stdout.contains(&plan.tag) || ran.names(&plan.tag),
        "{}",
        ran.text()
    );
    assert_eq!(images_labelled(&inputs).len(), 1);
    docker(&["rmi", &plan.tag]);
    assert_eq!(images_labelled(&inputs), Vec::<String>::new());
}

/// Waits until a one-shot container of `env` running `harness eval` is up;
/// its id. Fails when `check` ends first.
fn eval_container(env: &str, check: &mut Running) -> String {
    let filters = [
        "label=dev.torchenv.one-shot".to_string(),
        format!("label=dev.torchenv.env={env}"),
        "status=running".to_string(),
    ];
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        assert!(
            !check.finished(),
            "check ended before its eval container ran"
        );
        for id in containers(&filters) {
            // The harness is the entrypoint; its arguments are the command.
            // (A container may end between listing and inspection: the
            // `harness cuda` one is short.)
            let cmd = try_docker(&["inspect", "-f", "{{json .Config.Cmd}}", &id]);
            if cmd.is_some_and(|c| c.starts_with("[\"eval\"")) {
                return id;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no eval container of {env} within 5 minutes");
}

/// An environment whose harness dataset is the fixture photos, and a
/// baselines folder for `check` (empty: nothing from the repository).
fn check_env(tag: &str) -> (TestEnv, PathBuf) {
    let t = TestEnv::with(
        tag,
        Opts {
            extra: format!("    harness: {{ dataset: {} }}\n", fixtures().display()),
            ..Opts::default()
        },
    );
    let baselines = t.dir.path().join("baselines");
    std::fs::create_dir(&baselines).unwrap();
    (t, baselines)
}

/// `check ENV --device cpu` on the test image with `weights`.
fn check_cmd(t: &TestEnv, baselines: &Path, weights: &Path) -> Command {
    t.cmd(&[
        "check",
        &t.name,
        "--device",
        "cpu",
        "--image",
        test_image(),
        "--weights",
        &format!("{MODEL}={}", weights.display()),
        "--baselines",
        baselines.to_str().unwrap(),
    ])
}

/// The one-shot containers of `env`, running or not.
fn one_shots(env: &str) -> Vec<String> {
    containers(&[
        "label=dev.torchenv.one-shot",
        &format!("label=dev.torchenv.env={env}"),
    ])
}

/// `docker kill` of the harness's one-shot container while `check` runs
/// the eval: `check` ends non-zero in bounded time, reports that case as
/// an error (not a pass), and no one-shot container is left.
#[test]
fn container_killed_during_check_fails_the_env_and_leaves_nothing() {
    let (t, baselines) = check_env("kill");
    let mut check = start(check_cmd(&t, &baselines, weights()));
    let killed = eval_container(&t.name, &mut check);
    docker(&["kill", &killed]);
    let ran = check.wait(Duration::from_secs(120));
    assert_ne!(ran.code, Some(0), "{}", ran.text());
    assert_eq!(ran.code, Some(1), "could not run: exit 1; {}", ran.text());
    let case = format!("{} eval {MODEL}: ERROR", t.name);
    assert!(ran.stdout.contains(&case), "no `{case}`: {}", ran.text());
    assert!(
        ran.stdout.contains("killed"),
        "says it was killed: {}",
        ran.text()
    );
    assert!(!ran.stdout.contains(": pass — top-1"), "{}", ran.text());
    assert!(ran.names("the gate could not run"), "{}", ran.text());
    let left = one_shots(&t.name);
    assert_eq!(left, Vec::<String>::new(), "left after killing {killed}");
    // Nothing was accepted as a baseline from the killed run.
    let written: Vec<_> = std::fs::read_dir(&baselines)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(MODEL))
        .collect();
    assert_eq!(written, Vec::<std::ffi::OsString>::new());
}

/// `check` itself asked to stop (SIGTERM: `kill`, `timeout`, a cancelled
/// CI job) while the harness's container runs: it removes that container,
/// starts no other, and ends non-zero saying it was interrupted.
#[test]
fn terminated_check_removes_its_container() {
    let (t, baselines) = check_env("term");
    let mut check = start(check_cmd(&t, &baselines, weights()));
    let running = eval_container(&t.name, &mut check);
    let pid = check.child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let ran = check.wait(Duration::from_secs(60));
    let left = one_shots(&t.name);
    assert_eq!(
        left,
        Vec::<String>::new(),
        "{running} is left: {}",
        ran.text()
    );
    assert_eq!(ran.code, Some(1), "{}", ran.text());
    assert!(ran.names("interrupted by SIGTERM"), "{}", ran.text());
}

/// Two `up`s of one environment started together: both succeed (the second
/// waits for the first and reports its container), exactly one container
/// exists, and each printed a Jupyter URL whose token works and the SSH
/// port.
#[test]
fn racing_ups_leave_one_container_and_both_print_how_to_connect() {
    let t = TestEnv::with("race", Opts::default());
    let both = [start(t.up_cmd()), start(t.up_cmd())];
    let ran: Vec<Ran> = both.into_iter().map(|r| r.wait(UP_LIMIT)).collect();
    let token = t.token();
    let url = format!("http://127.0.0.1:{}/lab?token={token}", t.jupyter);
    let mut actions = Vec::new();
    for r in &ran {
        assert_eq!(r.code, Some(0), "{}", r.text());
        assert!(
            r.stdout.contains(&url),
            "no usable Jupyter URL: {}",
            r.text()
        );
        assert!(
            r.stdout.contains(&format!("Port {}", t.ssh)),
            "no SSH port: {}",
            r.text()
        );
        let action = ["created", "already running", "adopted"]
            .into_iter()
            .find(|a| r.stdout.contains(&format!("({a},")))
            .unwrap_or_else(|| panic!("what did it do? {}", r.text()));
        actions.push(action);
    }
    actions.sort();
    assert_eq!(actions, ["already running", "created"]);
    t.assert_one_container();
    let status = rt().block_on(async {
        xtask::launch::ready::http_status("127.0.0.1", t.jupyter, "/api/status", Some(&token))
            .await
            .unwrap()
    });
    assert_eq!(status, 200);
}

/// Fills the file system of `dir` to the last byte (a file `fill`).
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("fill")).unwrap();
    for chunk in [64 * 1024, 1] {
        let data = vec![0u8; chunk];
        while f.write_all(&data).is_ok() {}
    }
    let df = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    let avail = String::from_utf8_lossy(&df.stdout);
    assert_eq!(avail.lines().last().map(str::trim), Some("0"), "{avail}");
}

/// The workspace on a 1 MiB tmpfs, full to the last byte, with a file in
/// it: `up` still reaches ready (nothing torchenv does needs room in the
/// workspace), says the workspace is full, and the file is intact.
#[test]
fn a_full_workspace_still_comes_up_and_keeps_its_files() {
    let mnt = tempfile::tempdir().unwrap();
    let ws = mnt.path().join("ws");
    let _tmpfs = common::Tmpfs::mount(&ws, "1m");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(ws.join("keep.bin"), &data).unwrap();
    fill(&ws);
    let t = TestEnv::with(
        "full",
        Opts {
            workspace: Some(ws.clone()),
            ..Opts::default()
        },
    );
    let ran = t.up_within_limit();
    assert_eq!(ran.code, Some(0), "{}", ran.text());
    assert!(ran.stdout.contains("is ready (created,"), "{}", ran.text());
    let warned = format!("workspace {} is full", ws.display());
    assert!(ran.names(&warned), "no `{warned}`: {}", ran.text());
    assert_eq!(std::fs::read(ws.join("keep.bin")).unwrap(), data);
    // The container sees the file, and a write fails as the disk says.
    let seen = t.exec("cksum < /workspace/keep.bin");
    let here = Command::new("sh")
        .arg("-c")
        .arg(format!("cksum < {}", ws.join("keep.bin").display()))
        .output()
        .unwrap();
    assert_eq!(seen, String::from_utf8_lossy(&here.stdout));
    let o = run(
        t.cmd(&[
            "exec",
            &t.name,
            "--",
            "sh",
            "-c",
            "head -c 4096 /dev/zero > /workspace/new.txt",
        ]),
        Duration::from_secs(60),
    );
    assert_ne!(o.code, Some(0));
    assert!(o.names("No space left on device"), "{}", o.text());
}

/// `eval` on the test image, CPU, the fixture photos, into `out`.
fn eval(weights: &Path, out: &Path, extra: &[&str]) -> Ran {
    let mut c = xtask();
    c.arg("--spec")
        .arg(repo().join(xtask::spec::SPEC_FILE))
        .args(["eval", "--image", test_image(), "--model", MODEL])
        .args(["--device", "cpu", "--batch-size", "8", "--workers", "2"])
        .arg("--weights")
        .arg(weights)
        .arg("--data")
        .arg(fixtures())
        .arg("--out")
        .arg(out)
        .args(extra);
    run(c, Duration::from_secs(300))
}

/// Weights cut to half their size: `eval` without and with the original
/// sha256 exits 2 naming the file, leaving nothing in the report folder's
/// parent; `check` with them reports the eval as an error naming the file.
#[test]
fn truncated_weights_are_a_clear_error_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(weights()).unwrap();
    let half = dir.path().join("lite0-half.pth");
    std::fs::write(&half, &full[..full.len() / 2]).unwrap();
    let sha = xtask::cache::sha256_file(weights()).unwrap();
    let out = dir.path().join("reports");
    std::fs::create_dir(&out).unwrap();
    let shown = half.display().to_string();
    for extra in [&[][..], &["--sha256", &sha][..]] {
        let ran = eval(&half, &out.join("run"), extra);
        assert_eq!(ran.code, Some(2), "{}", ran.text());
        assert!(ran.names(&shown), "does not name {shown}: {}", ran.text());
        if !extra.is_empty() {
            assert!(ran.names(&sha), "names the expected sha256: {}", ran.text());
        }
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
        assert!(left.is_empty(), "left in {}: {left:?}", out.display());
    }

    let (t, baselines) = check_env("trunc");
    let ran = run(check_cmd(&t, &baselines, &half), Duration::from_secs(300));
    assert_ne!(ran.code, Some(0), "{}", ran.text());
    // The case's line names the file (the harness's error, host path).
    let case = format!(
        "{} eval {MODEL}: ERROR — harness eval exited 2: checkpoint {shown}",
        t.name
    );
    assert!(ran.stdout.contains(&case), "no `{case}`: {}", ran.text());
    assert_eq!(t.containers(), Vec::<String>::new());
}
